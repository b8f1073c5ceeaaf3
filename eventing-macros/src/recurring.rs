//! `#[recurring]`: registers an `impl Recurring for T`.

use std::str::FromStr;

use heck::ToSnakeCase;
use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Item, PathArguments};

use crate::args::{self, Errors, Keys};
use crate::event::item_span;
use crate::names;
use crate::signature::{self, Method, type_ident};

const KEYS: Keys =
    Keys { attribute: "recurring", flags: &[], strings: &["name", "every", "cron"], integers: &[], signed: &[] };

const RUN: Method = Method {
    name: "run",
    parameters: 1,
    takes: "the context only",
    signature: "async fn run(&self, ctx: &eventing::Context) -> Result<(), eventing::HandlerError>",
};

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let args = args::parse(args, &KEYS, &mut errors);
    let item: Item = syn::parse2(item)?;
    let wrong_item = "#[recurring] goes on an `impl eventing::Recurring for T` block";
    let Item::Impl(mut imp) = item else {
        return Err(errors.fail(syn::Error::new(item_span(&item), wrong_item)));
    };
    match &imp.trait_ {
        Some((path, _))
            if path
                .segments
                .last()
                .is_some_and(|last| last.ident == "Recurring" && matches!(last.arguments, PathArguments::None)) => {}
        Some((path, _)) => errors.push(syn::Error::new(path.span(), wrong_item)),
        None => errors.push(syn::Error::new(imp.self_ty.span(), wrong_item)),
    }
    if !imp.generics.params.is_empty() {
        errors.push(syn::Error::new(
            imp.generics.span(),
            "registered recurring work cannot be generic: #[recurring] needs one concrete type to build at start",
        ));
    }
    signature::check_method(&mut imp, &RUN, &mut errors);
    let name = match args.string("name") {
        Some(lit) => {
            if let Err(reason) = names::check_word(&lit.value()) {
                errors.push(syn::Error::new(lit.span(), reason));
            }
            lit.value()
        }
        None => match type_ident(&imp.self_ty) {
            Some(ident) => ident.trim_start_matches("r#").to_snake_case(),
            None => {
                errors.push(syn::Error::new(
                    imp.self_ty.span(),
                    "cannot derive a name from this type; give one with #[recurring(name = \"...\", every = \"...\")]",
                ));
                String::new()
            }
        },
    };
    let (every, cron) = match (args.string("every"), args.string("cron")) {
        (Some(_), Some(cron)) => {
            errors.push(syn::Error::new(cron.span(), "give `every` or `cron`, not both"));
            (String::new(), String::new())
        }
        (None, None) => {
            errors.push(syn::Error::new(
                proc_macro2::Span::call_site(),
                "say when it runs: #[recurring(every = \"5s\")] or #[recurring(cron = \"0 */5 * * * *\")]",
            ));
            (String::new(), String::new())
        }
        (Some(every), None) => {
            match humantime::parse_duration(&every.value()) {
                Ok(period) if period.as_millis() >= 1 => {}
                Ok(_) => errors.push(syn::Error::new(every.span(), "the period must be at least 1ms")),
                Err(error) => errors.push(syn::Error::new(
                    every.span(),
                    format!(
                        "`{}` is not a duration ({error}); write e.g. \"5s\", \"1m 30s\", \"250ms\"",
                        every.value()
                    ),
                )),
            }
            (every.value(), String::new())
        }
        (None, Some(cron)) => {
            if let Err(error) = cron::Schedule::from_str(&cron.value()) {
                errors.push(syn::Error::new(
                    cron.span(),
                    format!(
                        "`{}` is not a cron expression ({error}); it has seconds: \"sec min hour day month weekday\", \
                         e.g. \"0 */5 * * * *\"",
                        cron.value()
                    ),
                ));
            }
            (String::new(), cron.value())
        }
    };
    if let Err(error) = errors.finish() {
        let error = error.into_compile_error();
        return Ok(quote! { #imp #error });
    }
    let self_ty = &imp.self_ty;
    Ok(quote! {
        #imp

        ::eventing::__private::inventory::submit! {
            ::eventing::__private::RecurringDescriptor::new::<#self_ty>(
                ::eventing::__private::RecurringAttributes {
                    name: #name,
                    crate_name: ::core::env!("CARGO_PKG_NAME"),
                    every: #every,
                    cron: #cron,
                }
            )
        }
    })
}
