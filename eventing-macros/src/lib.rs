//! Procedural macros of `eventing`: `#[event]`, `#[event_listener]` and `#[interceptor]`.
//!
//! Depend on `eventing` and use them as `eventing::event` and `eventing::event_listener`;
//! the generated code refers only to `::eventing::__private`.
#![warn(missing_docs)]

mod args;
mod event;
mod interceptor;
mod listener;
mod names;
mod recurring;
mod request;
mod signature;

use proc_macro::TokenStream;

/// Makes a serde struct or enum an event: implements `eventing::Event` and registers it.
/// Keys: `name = "..."` (default: the type name in snake case), `durable`.
/// A type that also derives `schemars::JsonSchema` registers its JSON Schema for
/// `eventing::asyncapi` when eventing's `schemars` feature is on; nothing is asked of others.
#[proc_macro_attribute]
pub fn event(args: TokenStream, item: TokenStream) -> TokenStream {
    with_item_on_error(event::expand, args, item)
}

/// Registers an `impl Listener<E> for T`. Keys: `name = "..."` (default: the type name in
/// snake case), `per_process`, `concurrency = N`, `prefetch = N`, and the retry policy:
/// `max_attempts = N`, `retry_delay_ms = N`, `backoff = "fixed" | "exponential"`.
#[proc_macro_attribute]
pub fn event_listener(args: TokenStream, item: TokenStream) -> TokenStream {
    with_item_on_error(listener::expand, args, item)
}

/// Registers an `impl Interceptor for T`, built at start like a listener (`Default` or
/// `FromState`). Key: `order = N` (default 0; lower runs outer, on both sides).
#[proc_macro_attribute]
pub fn interceptor(args: TokenStream, item: TokenStream) -> TokenStream {
    with_item_on_error(interceptor::expand, args, item)
}

/// Registers an `impl Recurring for T`: work that runs once per period per service.
/// Keys: `every = "5s"` (humantime) or `cron = "0 */5 * * * *"` (with seconds, UTC), and
/// `name = "..."` (default: the type name in snake case).
#[proc_macro_attribute]
pub fn recurring(args: TokenStream, item: TokenStream) -> TokenStream {
    with_item_on_error(recurring::expand, args, item)
}

/// Expands; on error, keeps the item as written next to the errors, so the rest of the
/// crate still sees the type and one mistake does not cascade into many.
fn with_item_on_error(
    expand: fn(proc_macro2::TokenStream, proc_macro2::TokenStream) -> syn::Result<proc_macro2::TokenStream>,
    args: TokenStream,
    item: TokenStream,
) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match expand(args.into(), item.clone()) {
        Ok(expanded) => expanded.into(),
        Err(error) => {
            let mut output = item;
            output.extend(error.into_compile_error());
            output.into()
        }
    }
}

/// Makes a serde struct or enum a request: implements `eventing::Request` and registers it.
/// Keys: `name = "..."` (default: the type name in snake case), `reply = Type` (default `()`).
/// The request's and the reply's JSON Schemas are registered as for `#[event]`.
#[proc_macro_attribute]
pub fn request(args: TokenStream, item: TokenStream) -> TokenStream {
    with_item_on_error(request::expand_request, args, item)
}

/// Registers an `impl RequestHandler<R> for T`, built at start like a listener. Key:
/// `concurrency = N`. (`per_process` is an error: each request is handled once.)
#[proc_macro_attribute]
pub fn request_handler(args: TokenStream, item: TokenStream) -> TokenStream {
    with_item_on_error(request::expand_handler, args, item)
}
