//! `#[event_listener]`: registers an `impl Listener<E> for T`.

use heck::ToSnakeCase;
use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::spanned::Spanned;
use syn::{Item, Type};

use crate::args::{self, Errors, Keys};
use crate::event::item_span;
use crate::names;
use crate::signature::{self, Method, type_ident};

const KEYS: Keys = Keys {
    attribute: "event_listener",
    flags: &["per_process"],
    strings: &["name", "backoff", "pattern"],
    integers: &["concurrency", "prefetch", "max_attempts", "retry_delay_ms"],
    signed: &[],
};

const ON: Method = Method {
    name: "on",
    parameters: 2,
    takes: "the event and the context",
    signature: "async fn on(&self, event: E, ctx: &eventing::Context) -> Result<(), eventing::HandlerError>",
};

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
    let event = signature::trait_argument(
        &imp,
        "Listener",
        "#[event_listener] goes on an `impl eventing::Listener<E> for T` block, where E is an #[event] type",
        "name the event: `Listener<E>` with one #[event] type",
    )
    .cloned();
    if !imp.generics.params.is_empty() {
        errors.push(syn::Error::new(
            imp.generics.span(),
            "a registered listener cannot be generic: #[event_listener] needs one concrete type to build at start",
        ));
    }
    signature::check_method(&mut imp, &ON, &mut errors);
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
