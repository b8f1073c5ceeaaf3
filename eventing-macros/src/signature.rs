//! The shape of a handler impl, checked the same way by `#[event_listener]`,
//! `#[request_handler]` and `#[recurring]`: the trait's one type argument, and the parts
//! of the handler method that rustc's own errors explain poorly (`async`, the receiver,
//! the number of parameters). Types are left to rustc, which points at them.

use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ImplItem, ItemImpl, PathArguments, Type};

use crate::args::Errors;

/// The handler method one attribute checks.
pub(crate) struct Method {
    /// Its name: `on`, `run`.
    pub(crate) name: &'static str,
    /// How many parameters follow `&self`.
    pub(crate) parameters: usize,
    /// What they are, for the message: "the event and the context".
    pub(crate) takes: &'static str,
    /// The whole signature, shown in every message.
    pub(crate) signature: &'static str,
}

/// Checks `async`, the receiver and the parameter count of `method` in `imp`. A missing
/// `async` is reported, then added, so rustc does not also say "is not a future".
pub(crate) fn check_method(imp: &mut ItemImpl, method: &Method, errors: &mut Errors) {
    let Method { name, parameters, takes, signature } = method;
    for item in &mut imp.items {
        let ImplItem::Fn(function) = item else { continue };
        let sig = &mut function.sig;
        if sig.ident != name {
            continue;
        }
        // Without `async`, the method may still return a future (`impl Future<..> + Send`, a
        // boxed one...): only nothing or a `Result` is surely a forgotten `async`.
        let forgot_async = match &sig.output {
            syn::ReturnType::Default => true,
            syn::ReturnType::Type(_, ty) => type_ident(ty).is_some_and(|ident| ident == "Result"),
        };
        if sig.asyncness.is_none() && forgot_async {
            errors.push(syn::Error::new(sig.fn_token.span, format!("`{name}` must be an `async fn`: `{signature}`")));
            sig.asyncness = Some(syn::Token![async](sig.fn_token.span));
        }
        let not_ref_self = format!("`{name}` takes `&self`: `{signature}`");
        match sig.inputs.first() {
            Some(FnArg::Receiver(receiver)) if matches!(receiver.kind, syn::ReceiverKind::Reference(_, _, None)) => {}
            Some(first) => errors.push(syn::Error::new(first.span(), not_ref_self)),
            None => errors.push(syn::Error::new(sig.paren_token.span.join(), not_ref_self)),
        }
        if sig.inputs.len() != parameters + 1 {
            errors.push(syn::Error::new(sig.paren_token.span.join(), format!("`{name}` takes {takes}: `{signature}`")));
        }
    }
}

/// The `X` of `impl <trait_name><X> for T`. `wrong` is the message when the impl is not of
/// that trait (or its argument is not a type), `unnamed` when it has no single argument.
pub(crate) fn trait_argument<'a>(
    imp: &'a ItemImpl,
    trait_name: &str,
    wrong: &str,
    unnamed: &str,
) -> syn::Result<&'a Type> {
    let wrong = |span| syn::Error::new(span, wrong);
    let Some((path, _)) = &imp.trait_ else {
        return Err(wrong(imp.self_ty.span()));
    };
    let Some(last) = path.segments.last().filter(|segment| segment.ident == trait_name) else {
        return Err(wrong(path.span()));
    };
    match &last.arguments {
        PathArguments::AngleBracketed(generic) if generic.args.len() == 1 => match &generic.args[0] {
            GenericArgument::Type(argument) => Ok(argument),
            other => Err(wrong(other.span())),
        },
        other => {
            Err(syn::Error::new(if matches!(other, PathArguments::None) { last.span() } else { other.span() }, unnamed))
        }
    }
}

/// The last identifier of a path type (`SendWelcomeMail` in `crate::mail::SendWelcomeMail`).
pub(crate) fn type_ident(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last().map(|segment| segment.ident.to_string()),
        _ => None,
    }
}
