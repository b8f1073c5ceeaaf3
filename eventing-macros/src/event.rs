//! `#[event]`: implements `Event` and registers the type.

use heck::ToSnakeCase;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Item};

use crate::args::{self, Errors, Keys};
use crate::names;

const KEYS: Keys = Keys { attribute: "event", flags: &["durable"], strings: &["name"], integers: &[], signed: &[] };

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let args = args::parse(args, &KEYS, &mut errors);
    let item: Item = syn::parse2(item)?;
    let (ident, generics) = match &item {
        Item::Struct(item) => (&item.ident, &item.generics),
        Item::Enum(item) => (&item.ident, &item.generics),
        other => {
            return Err(errors.fail(syn::Error::new(
                item_span(other),
                "#[event] goes on a struct or an enum that derives `Serialize` and `Deserialize`",
            )));
        }
    };
    if !generics.params.is_empty() {
        return Err(errors.fail(syn::Error::new(
            generics.span(),
            "an #[event] type cannot be generic: each event needs one name on the wire; \
             declare one concrete type per event",
        )));
    }
    let name = match args.string("name") {
        Some(lit) => {
            if let Err(reason) = names::check_event_name(&lit.value()) {
                errors.push(syn::Error::new(lit.span(), reason));
            }
            lit.value()
        }
        None => default_name(ident),
    };
    let durable = args.flag("durable");
    // Spanned at the type's name, where `Event`'s supertraits would report a missing
    // derive: this comes first and says what to derive.
    let derives_serde = quote_spanned! {ident.span()=>
        impl ::eventing::__private::EventJson for #ident {}
    };
    let event = quote! {
        #item

        #derives_serde

        impl ::eventing::Event for #ident {
            const NAME: &'static str = #name;
            const DURABLE: bool = #durable;
        }
    };
    // After a mistake in the attribute the type is still an event, unregistered: its
    // listeners compile, and the only errors are the attribute's.
    if let Err(error) = errors.finish() {
        let error = error.into_compile_error();
        return Ok(quote! { #event #error });
    }
    let schema = schema_fn(&quote!(#ident));
    Ok(quote! {
        #event

        ::eventing::__private::inventory::submit! {
            ::eventing::__private::EventDescriptor::new::<#ident>().with_schema(#schema)
        }
    })
}

/// A block that evaluates to the schema function of payload type `ty`: its JSON Schema
/// where it derives `schemars::JsonSchema` (and eventing's `schemars` feature is on), else
/// why not. Autoref specialisation picks between the two, so no bound is asked of `ty`.
pub(crate) fn schema_fn(ty: &TokenStream) -> TokenStream {
    quote! {{
        fn schema() -> ::eventing::__private::SchemaResult {
            #[allow(unused_imports)]
            use ::eventing::__private::{WithSchema as _, WithoutSchema as _};
            (&::eventing::__private::SchemaProbe::<#ty>::default()).schema()()
        }
        schema
    }}
}

fn default_name(ident: &Ident) -> String {
    ident.to_string().trim_start_matches("r#").to_snake_case()
}

/// The span of an item's keyword-and-name head, for "wrong item" errors.
pub(crate) fn item_span(item: &Item) -> proc_macro2::Span {
    match item {
        Item::Fn(item) => item.sig.fn_token.span,
        Item::Union(item) => item.union_token.span,
        Item::Impl(item) => item.impl_token.span,
        Item::Trait(item) => item.trait_token.span,
        Item::Mod(item) => item.mod_token.span,
        Item::Type(item) => item.type_token.span,
        Item::Struct(item) => item.struct_token.span,
        Item::Enum(item) => item.enum_token.span,
        other => other.span(),
    }
}
