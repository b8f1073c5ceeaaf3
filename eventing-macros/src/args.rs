//! Attribute arguments: `key = value` pairs and bare flags, every mistake reported at once.

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{LitInt, LitStr};

/// Collects errors so one build reports all of them.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// All errors so far plus `error`, for a mistake after which expansion cannot go on.
    pub(crate) fn fail(self, error: syn::Error) -> syn::Error {
        match self.0 {
            Some(mut first) => {
                first.combine(error);
                first
            }
            None => error,
        }
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// The keys an attribute accepts.
pub(crate) struct Keys {
    pub(crate) attribute: &'static str,
    pub(crate) flags: &'static [&'static str],
    pub(crate) strings: &'static [&'static str],
    pub(crate) integers: &'static [&'static str],
    /// Keys that take any `i32`, negative too.
    pub(crate) signed: &'static [&'static str],
}

/// One parsed value.
pub(crate) enum Value {
    Flag,
    Str(LitStr),
    Int(LitInt),
    Signed(i32),
}

/// Parsed arguments, in order, without duplicates.
#[derive(Default)]
pub(crate) struct Args {
    values: Vec<(String, Value)>,
}

impl Args {
    pub(crate) fn flag(&self, key: &str) -> bool {
        self.values.iter().any(|(name, value)| name == key && matches!(value, Value::Flag))
    }

    pub(crate) fn string(&self, key: &str) -> Option<&LitStr> {
        self.values.iter().find_map(|(name, value)| match value {
            Value::Str(lit) if name == key => Some(lit),
            _ => None,
        })
    }

    pub(crate) fn signed(&self, key: &str) -> Option<i32> {
        self.values.iter().find_map(|(name, value)| match value {
            Value::Signed(number) if name == key => Some(*number),
            _ => None,
        })
    }

    pub(crate) fn integer(&self, key: &str) -> Option<&LitInt> {
        self.values.iter().find_map(|(name, value)| match value {
            Value::Int(lit) if name == key => Some(lit),
            _ => None,
        })
    }
}

/// Parses `args` against `keys`, adding every unknown, duplicated or malformed key to `errors`.
pub(crate) fn parse(args: TokenStream, keys: &Keys, errors: &mut Errors) -> Args {
    let mut parsed = Args::default();
    let parser = syn::meta::parser(|meta| {
        if let Err(error) = parse_one(&meta, keys, &mut parsed) {
            errors.push(error);
            skip_value(&meta);
        }
        Ok(())
    });
    if let Err(error) = parser.parse2(args) {
        errors.push(error);
    }
    parsed
}

fn parse_one(meta: &ParseNestedMeta<'_>, keys: &Keys, parsed: &mut Args) -> syn::Result<()> {
    let Some(ident) = meta.path.get_ident() else {
        return Err(meta.error(unknown(keys)));
    };
    let key = ident.to_string();
    if parsed.values.iter().any(|(name, _)| *name == key) {
        return Err(syn::Error::new(ident.span(), format!("duplicate `{key}` in #[{}]", keys.attribute)));
    }
    let value = if keys.flags.contains(&key.as_str()) {
        if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
            return Err(meta.error(format!("`{key}` takes no value: write `#[{}({key})]`", keys.attribute)));
        }
        Value::Flag
    } else if keys.strings.contains(&key.as_str()) {
        Value::Str(
            meta.value()?
                .parse::<LitStr>()
                .map_err(|error| syn::Error::new(error.span(), format!("`{key}` takes a string: `{key} = \"...\"`")))?,
        )
    } else if keys.integers.contains(&key.as_str()) {
        let lit = meta
            .value()?
            .parse::<LitInt>()
            .map_err(|error| syn::Error::new(error.span(), format!("`{key}` takes a number: `{key} = 4`")))?;
        match lit.base10_parse::<u16>() {
            Ok(n) if n >= 1 => Value::Int(lit),
            _ => return Err(syn::Error::new(lit.span(), format!("`{key}` must be between 1 and 65535"))),
        }
    } else if keys.signed.contains(&key.as_str()) {
        let expr = meta.value()?.parse::<syn::Expr>()?;
        let number = match &expr {
            syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Int(lit), .. }) => lit.base10_parse::<i32>().ok(),
            syn::Expr::Unary(syn::ExprUnary { op: syn::UnOp::Neg(_), expr: inner, .. }) => match &**inner {
                syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Int(lit), .. }) => {
                    lit.base10_parse::<i32>().ok().and_then(i32::checked_neg)
                }
                _ => None,
            },
            _ => None,
        };
        match number {
            Some(number) => Value::Signed(number),
            None => return Err(syn::Error::new_spanned(expr, format!("`{key}` takes a whole number: `{key} = -10`"))),
        }
    } else {
        return Err(syn::Error::new(ident.span(), unknown(keys)));
    };
    parsed.values.push((key, value));
    Ok(())
}

/// After a bad key, consume `= value` so parsing can go on with the next key.
fn skip_value(meta: &ParseNestedMeta<'_>) {
    if meta.input.peek(syn::Token![=]) {
        let _ = meta.input.parse::<syn::Token![=]>();
        let _ = meta.input.parse::<syn::Expr>();
    } else if meta.input.peek(syn::token::Paren) {
        let _ = meta.input.parse::<proc_macro2::Group>();
    }
}

fn unknown(keys: &Keys) -> String {
    let all: Vec<String> = keys
        .flags
        .iter()
        .map(|flag| format!("`{flag}`"))
        .chain(keys.strings.iter().map(|key| format!("`{key} = \"...\"`")))
        .chain(keys.integers.iter().chain(keys.signed).map(|key| format!("`{key} = N`")))
        .collect();
    format!("unknown key in #[{}]; expected {}", keys.attribute, all.join(", "))
}
