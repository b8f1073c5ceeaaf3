//! Procedural macros of `eventing`: `#[event]` and `#[event_listener]`.
//!
//! Depend on `eventing` and use them as `eventing::event` and `eventing::event_listener`;
//! the generated code refers only to `::eventing::__private`.
#![warn(missing_docs)]

mod args;
mod event;
mod listener;
mod names;

use proc_macro::TokenStream;

/// Makes a serde struct or enum an event: implements `eventing::Event` and registers it.
/// Keys: `name = "..."` (default: the type name in snake case), `durable`.
#[proc_macro_attribute]
pub fn event(args: TokenStream, item: TokenStream) -> TokenStream {
    event::expand(args.into(), item.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Registers an `impl Listener<E> for T`. Keys: `name = "..."` (default: the type name in
/// snake case), `per_process`, `concurrency = N`, `prefetch = N`.
#[proc_macro_attribute]
pub fn event_listener(args: TokenStream, item: TokenStream) -> TokenStream {
    listener::expand(args.into(), item.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}
