//! `#[interceptor]`: registers an `impl Interceptor for T`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{ImplItem, Item, PathArguments};

use crate::args::{self, Errors, Keys};
use crate::event::item_span;

const KEYS: Keys = Keys { attribute: "interceptor", flags: &[], strings: &[], integers: &[], signed: &["order"] };

const HANDLE: &str = "async fn handle(&self, envelope: &eventing::Envelope, next: eventing::Next<'_>) -> Result<(), eventing::HandlerError>";
const SEND: &str = "fn send(&self, envelope: &mut eventing::Envelope)";

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let args = args::parse(args, &KEYS, &mut errors);
    let item: Item = syn::parse2(item)?;
    let wrong_item = "#[interceptor] goes on an `impl eventing::Interceptor for T` block";
    let Item::Impl(imp) = item else {
        return Err(errors.fail(syn::Error::new(item_span(&item), wrong_item)));
    };
    match &imp.trait_ {
        Some((path, _))
            if path
                .segments
                .last()
                .is_some_and(|last| last.ident == "Interceptor" && matches!(last.arguments, PathArguments::None)) => {}
        Some((path, _)) => errors.push(syn::Error::new(path.span(), wrong_item)),
        None => errors.push(syn::Error::new(imp.self_ty.span(), wrong_item)),
    }
    if !imp.generics.params.is_empty() {
        errors.push(syn::Error::new(
            imp.generics.span(),
            "a registered interceptor cannot be generic: #[interceptor] needs one concrete type to build at start",
        ));
    }
    for item in &imp.items {
        let ImplItem::Fn(function) = item else { continue };
        let sig = &function.sig;
        if sig.ident == "handle" && sig.asyncness.is_none() && matches!(sig.output, syn::ReturnType::Default) {
            errors.push(syn::Error::new(sig.fn_token.span, format!("`handle` must be an async fn: `{HANDLE}`")));
        }
        if sig.ident == "send" && sig.asyncness.is_some() {
            errors.push(syn::Error::new(
                sig.asyncness.span(),
                format!("`send` runs before the message leaves and cannot await: `{SEND}`"),
            ));
        }
    }
    errors.finish()?;
    let order = args.signed("order").unwrap_or(0);
    let self_ty = &imp.self_ty;
    Ok(quote! {
        #imp

        ::eventing::__private::inventory::submit! {
            ::eventing::__private::InterceptorDescriptor::new::<#self_ty>(#order)
        }
    })
}
