//! `#[request]` (implements `Request` and registers the type) and `#[request_handler]`
//! (registers an `impl RequestHandler<R> for T`).

use heck::ToSnakeCase;
use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Item, LitStr, Type};

use crate::args::{self, Errors, Keys};
use crate::event::{item_span, schema_fn};
use crate::names;
use crate::signature::{self, Method, type_ident};

const HANDLER_KEYS: Keys = Keys {
    attribute: "request_handler",
    flags: &["per_process"],
    strings: &[],
    integers: &["concurrency"],
    signed: &[],
};

const ON: Method = Method {
    name: "on",
    parameters: 2,
    takes: "the request and the context",
    signature: "async fn on(&self, request: R, ctx: &eventing::Context) -> Result<R::Reply, eventing::HandlerError>",
};

/// `name = "..."` and `reply = Type`, each at most once.
#[derive(Default)]
struct RequestArgs {
    name: Option<LitStr>,
    reply: Option<Type>,
}

fn parse_request_args(args: TokenStream, errors: &mut Errors) -> RequestArgs {
    let mut parsed = RequestArgs::default();
    let parser = syn::meta::parser(|meta| {
        let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
        let result = match key.as_str() {
            "name" if parsed.name.is_some() => Err(meta.error("duplicate `name` in #[request]")),
            "reply" if parsed.reply.is_some() => Err(meta.error("duplicate `reply` in #[request]")),
            "name" => meta
                .value()
                .and_then(|value| value.parse::<LitStr>())
                .map(|lit| parsed.name = Some(lit))
                .map_err(|error| syn::Error::new(error.span(), "`name` takes a string: `name = \"math.add\"`")),
            "reply" => meta
                .value()
                .and_then(|value| value.parse::<Type>())
                .map(|ty| parsed.reply = Some(ty))
                .map_err(|error| syn::Error::new(error.span(), "`reply` takes a type: `reply = Sum`")),
            _ => Err(meta.error("unknown key in #[request]; expected `name = \"...\"`, `reply = Type`")),
        };
        if let Err(error) = result {
            errors.push(error);
            if meta.input.peek(syn::Token![=]) {
                let _ = meta.input.parse::<syn::Token![=]>();
                let _ = meta.input.parse::<syn::Expr>();
            }
        }
        Ok(())
    });
    if let Err(error) = parser.parse2(args) {
        errors.push(error);
    }
    parsed
}

pub(crate) fn expand_request(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let args = parse_request_args(args, &mut errors);
    let item: Item = syn::parse2(item)?;
    let (ident, generics) = match &item {
        Item::Struct(item) => (&item.ident, &item.generics),
        Item::Enum(item) => (&item.ident, &item.generics),
        other => {
            return Err(errors.fail(syn::Error::new(
                item_span(other),
                "#[request] goes on a struct or an enum that derives `Serialize` and `Deserialize`",
            )));
        }
    };
    if !generics.params.is_empty() {
        return Err(errors.fail(syn::Error::new(
            generics.span(),
            "a #[request] type cannot be generic: each request needs one name on the wire",
        )));
    }
    let name = match &args.name {
        Some(lit) => {
            if let Err(reason) = names::check_event_name(&lit.value()) {
                errors.push(syn::Error::new(lit.span(), reason.replace("event", "request")));
            }
            lit.value()
        }
        None => ident.to_string().trim_start_matches("r#").to_snake_case(),
    };
    let reply = args.reply.as_ref().map_or_else(|| quote!(()), ToTokens::to_token_stream);
    let derives_serde = quote_spanned! {ident.span()=>
        impl ::eventing::__private::RequestJson for #ident {}
    };
    // Spanned at the reply type, so a reply without serde is reported where it is named.
    let reply_check = args.reply.as_ref().map(|ty| {
        quote_spanned! {ty.span()=>
            const _: () = ::eventing::__private::assert_reply::<#ty>();
        }
    });
    let request = quote! {
        #item

        #derives_serde

        #reply_check

        impl ::eventing::Request for #ident {
            const NAME: &'static str = #name;
            type Reply = #reply;
        }
    };
    if let Err(error) = errors.finish() {
        let error = error.into_compile_error();
        return Ok(quote! { #request #error });
    }
    let schema = schema_fn(&quote!(#ident));
    // The reply type as written, not `<R as Request>::Reply`: a request type without serde
    // would otherwise fail `Request`'s bounds once more, here.
    let reply_schema = schema_fn(&reply);
    Ok(quote! {
        #request

        ::eventing::__private::inventory::submit! {
            ::eventing::__private::RequestDescriptor::new::<#ident>().with_schemas(#schema, #reply_schema)
        }
    })
}

pub(crate) fn expand_handler(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let args = args::parse(args, &HANDLER_KEYS, &mut errors);
    let item: Item = syn::parse2(item)?;
    let Item::Impl(mut imp) = item else {
        return Err(errors.fail(syn::Error::new(
            item_span(&item),
            "#[request_handler] goes on an `impl eventing::RequestHandler<R> for T` block",
        )));
    };
    if args.flag("per_process") {
        errors.push(syn::Error::new(
            proc_macro2::Span::call_site(),
            "`per_process` makes no sense for a request handler: each request is handled once, by whichever \
             process takes it from the shared queue `request.<name>`; remove `per_process`",
        ));
    }
    let request = signature::trait_argument(
        &imp,
        "RequestHandler",
        "#[request_handler] goes on an `impl eventing::RequestHandler<R> for T` block, where R is a #[request] type",
        "name the request: `RequestHandler<R>` with one #[request] type",
    )
    .cloned();
    if !imp.generics.params.is_empty() {
        errors.push(syn::Error::new(
            imp.generics.span(),
            "a registered request handler cannot be generic: #[request_handler] needs one concrete type",
        ));
    }
    signature::check_method(&mut imp, &ON, &mut errors);
    let request = match request {
        Ok(request) => request,
        Err(error) => return Err(errors.fail(error)),
    };
    if let Err(error) = errors.finish() {
        let error = error.into_compile_error();
        return Ok(quote! { #imp #error });
    }
    let self_ty = &imp.self_ty;
    let name = type_ident(self_ty).map(|ident| ident.trim_start_matches("r#").to_snake_case()).unwrap_or_default();
    let concurrency = args.integer("concurrency").map_or(quote!(0), |lit| lit.to_token_stream());
    Ok(quote! {
        #imp

        ::eventing::__private::inventory::submit! {
            ::eventing::__private::RequestHandlerDescriptor::new::<#self_ty, #request>(
                #name,
                ::core::env!("CARGO_PKG_NAME"),
                #concurrency,
            )
        }
    })
}
