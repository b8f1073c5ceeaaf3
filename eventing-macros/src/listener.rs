//! `#[event_listener]`: registers an `impl Listener<E> for T`.

use heck::ToSnakeCase;
use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ImplItem, Item, ItemImpl, PathArguments, Type};

use crate::args::{self, Errors, Keys};
use crate::event::item_span;
use crate::names;

const KEYS: Keys = Keys {
    attribute: "event_listener",
    flags: &["per_process"],
    strings: &["name", "backoff", "pattern"],
    integers: &["concurrency", "prefetch", "max_attempts", "retry_delay_ms"],
    signed: &[],
};

const SIGNATURE: &str = "async fn on(&self, event: E, ctx: &eventing::Context) -> Result<(), eventing::HandlerError>";

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let args = args::parse(args, &KEYS, &mut errors);
    let item: Item = syn::parse2(item)?;
    let Item::Impl(mut imp) = item else {
        return Err(errors.fail(syn::Error::new(
            item_span(&item),
            "#[event_listener] goes on an `impl eventing::Listener<E> for T` block",
        )));
    };
    let event = listened_event(&imp).cloned();
    if !imp.generics.params.is_empty() {
        errors.push(syn::Error::new(
            imp.generics.span(),
            "a registered listener cannot be generic: #[event_listener] needs one concrete type to build at start",
        ));
    }
    check_on(&mut imp, &mut errors);
    let self_ty = &imp.self_ty;
    let name = match args.string("name") {
        Some(lit) => {
            if let Err(reason) = names::check_word(&lit.value()) {
                errors.push(syn::Error::new(lit.span(), reason));
            }
            lit.value()
        }
        None => match type_ident(self_ty) {
            Some(ident) => ident.trim_start_matches("r#").to_snake_case(),
            None => {
                errors.push(syn::Error::new(
                    self_ty.span(),
                    "cannot derive a listener name from this type; give one with #[event_listener(name = \"...\")]",
                ));
                String::new()
            }
        },
    };
    let event = match event {
        Ok(event) => event,
        Err(error) => return Err(errors.fail(error)),
    };
    let raw = is_raw_event(&event);
    match (raw, args.string("pattern")) {
        (true, Some(lit)) => {
            if let Err(reason) = names::check_pattern(&lit.value()) {
                errors.push(syn::Error::new(lit.span(), reason));
            }
        }
        (true, None) => errors.push(syn::Error::new(
            event.span(),
            "a `Listener<RawEvent>` takes the events of a pattern: add `#[event_listener(pattern = \"billing.#\")]` \
             (`*` one word, `#` zero or more; `#` alone is every event)",
        )),
        (false, Some(lit)) => errors.push(syn::Error::new(
            lit.span(),
            "`pattern` is only for `impl Listener<eventing::RawEvent>`: a typed listener takes its event's name; \
             to take a family of events, implement `Listener<RawEvent>` and decode with `event.decode()`",
        )),
        (false, None) => {}
    }
    if let Some(lit) = args.string("backoff") {
        if !matches!(lit.value().as_str(), "fixed" | "exponential") {
            errors.push(syn::Error::new(lit.span(), "`backoff` is \"fixed\" or \"exponential\""));
        }
    }
    // After a mistake the impl is still emitted, unregistered (with `async` put back on
    // `on` where it was missing), so that rustc adds no errors of its own about it.
    if let Err(error) = errors.finish() {
        let error = error.into_compile_error();
        return Ok(quote! { #imp #error });
    }
    let per_process = args.flag("per_process");
    let max_attempts = args.integer("max_attempts").map_or(quote!(0), |lit| lit.to_token_stream());
    let retry_delay_ms = args.integer("retry_delay_ms").map_or(quote!(0), |lit| lit.to_token_stream());
    let backoff = args.string("backoff").map_or_else(String::new, syn::LitStr::value);
    let concurrency = args.integer("concurrency").map_or(quote!(0), |lit| lit.to_token_stream());
    let prefetch = args.integer("prefetch").map_or(quote!(0), |lit| lit.to_token_stream());
    let pattern = args.string("pattern").map_or_else(String::new, syn::LitStr::value);
    Ok(quote! {
        #imp

        ::eventing::__private::inventory::submit! {
            ::eventing::__private::ListenerDescriptor::new::<#self_ty, #event>(
                ::eventing::__private::ListenerAttributes {
                    name: #name,
                    per_process: #per_process,
                    crate_name: ::core::env!("CARGO_PKG_NAME"),
                    concurrency: #concurrency,
                    prefetch: #prefetch,
                    max_attempts: #max_attempts,
                    retry_delay_ms: #retry_delay_ms,
                    backoff: #backoff,
                    pattern: #pattern,
                }
            )
        }
    })
}

/// Whether `E` is written as `RawEvent` (any path ending in it). A type alias of it is
/// caught at start instead.
fn is_raw_event(event: &Type) -> bool {
    matches!(event, Type::Path(path) if path.qself.is_none()
        && path.path.segments.last().is_some_and(|last| last.ident == "RawEvent"))
}

/// The `E` of `impl Listener<E> for T`.
fn listened_event(imp: &ItemImpl) -> syn::Result<&Type> {
    let wrong = |span| {
        syn::Error::new(
            span,
            "#[event_listener] goes on an `impl eventing::Listener<E> for T` block, where E is an #[event] type",
        )
    };
    let Some((path, _)) = &imp.trait_ else {
        return Err(wrong(imp.self_ty.span()));
    };
    let Some(last) = path.segments.last().filter(|segment| segment.ident == "Listener") else {
        return Err(wrong(path.span()));
    };
    match &last.arguments {
        PathArguments::AngleBracketed(generic) if generic.args.len() == 1 => match &generic.args[0] {
            GenericArgument::Type(event) => Ok(event),
            other => Err(wrong(other.span())),
        },
        other => Err(syn::Error::new(
            if matches!(other, PathArguments::None) { last.span() } else { other.span() },
            "name the event: `Listener<E>` with one #[event] type",
        )),
    }
}

/// Checks the parts of `on` that rustc's own errors explain poorly: `async`, the receiver
/// and the number of parameters. Types are left to rustc, which points at them. A missing
/// `async` is reported, then added, so rustc does not also say "is not a future".
fn check_on(imp: &mut ItemImpl, errors: &mut Errors) {
    for item in &mut imp.items {
        let ImplItem::Fn(function) = item else { continue };
        let sig = &mut function.sig;
        if sig.ident != "on" {
            continue;
        }
        // Without `async`, `on` may still return a future (`impl Future<..> + Send`, a boxed
        // one...): only nothing or a `Result` is surely a forgotten `async`.
        let forgot_async = match &sig.output {
            syn::ReturnType::Default => true,
            syn::ReturnType::Type(_, ty) => type_ident(ty).is_some_and(|ident| ident == "Result"),
        };
        if sig.asyncness.is_none() && forgot_async {
            errors.push(syn::Error::new(sig.fn_token.span, format!("`on` must be an `async fn`: `{SIGNATURE}`")));
            sig.asyncness = Some(syn::Token![async](sig.fn_token.span));
        }
        match sig.inputs.first() {
            Some(FnArg::Receiver(receiver)) if matches!(receiver.kind, syn::ReceiverKind::Reference(_, _, None)) => {}
            Some(first) => errors.push(syn::Error::new(first.span(), format!("`on` takes `&self`: `{SIGNATURE}`"))),
            None => {
                errors.push(syn::Error::new(sig.paren_token.span.join(), format!("`on` takes `&self`: `{SIGNATURE}`")))
            }
        }
        if sig.inputs.len() != 3 {
            errors.push(syn::Error::new(
                sig.paren_token.span.join(),
                format!("`on` takes the event and the context: `{SIGNATURE}`"),
            ));
        }
    }
}

/// The last identifier of a path type (`SendWelcomeMail` in `crate::mail::SendWelcomeMail`).
fn type_ident(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last().map(|segment| segment.ident.to_string()),
        _ => None,
    }
}
