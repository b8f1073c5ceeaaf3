//! The JSON Schema of a payload type, captured by `#[event]` and `#[request]` where the type
//! derives `schemars::JsonSchema` and eventing's `schemars` feature is on, and a text that
//! says why not everywhere else (for [`asyncapi`](crate::asyncapi)).
//!
//! The macros cannot see a type's derives, so the generated code asks with autoref
//! specialisation: `(&SchemaProbe::<T>::default()).schema()` finds [`WithSchema::schema`] when
//! `T: JsonSchema` (that impl exists only with the feature) and otherwise falls back to
//! [`WithoutSchema::schema`], one reference further away. Both compile on stable and
//! neither asks anything of a type that does not derive `JsonSchema`.

use std::any::type_name;
use std::marker::PhantomData;

/// A payload's JSON Schema, or why there is none.
pub type SchemaResult = Result<serde_json::Value, String>;

/// What the macros register: the payload's schema function.
pub type SchemaFn = fn() -> SchemaResult;

/// Asks, through method resolution, whether `T` has a JSON Schema.
pub struct SchemaProbe<T: ?Sized>(PhantomData<fn() -> T>);

impl<T: ?Sized> std::fmt::Debug for SchemaProbe<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SchemaProbe<{}>", type_name::<T>())
    }
}

impl<T: ?Sized> Default for SchemaProbe<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

/// Found first: `T`'s schema (only with the `schemars` feature, for `T: JsonSchema`).
pub trait WithSchema {
    /// The schema function of the probed type.
    fn schema(&self) -> SchemaFn;
}

/// Found when [`WithSchema`] is not implemented: the reason there is no schema.
pub trait WithoutSchema {
    /// A schema function that says why there is none.
    fn schema(&self) -> SchemaFn;
}

#[cfg(feature = "schemars")]
impl<T: schemars::JsonSchema + ?Sized> WithSchema for SchemaProbe<T> {
    fn schema(&self) -> SchemaFn {
        json_schema::<T>
    }
}

impl<T: ?Sized> WithoutSchema for &SchemaProbe<T> {
    fn schema(&self) -> SchemaFn {
        unavailable::<T>
    }
}

/// `T`'s schema as JSON Schema draft 07 (what AsyncAPI's default schema format extends),
/// its subschemas under `definitions`.
#[cfg(feature = "schemars")]
fn json_schema<T: schemars::JsonSchema + ?Sized>() -> SchemaResult {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    Ok(generator.into_root_schema_for::<T>().to_value())
}

/// Why `T` has no schema.
pub(crate) fn unavailable<T: ?Sized>() -> SchemaResult {
    let rust_type = type_name::<T>();
    Err(if cfg!(feature = "schemars") {
        format!("schema not available: `{rust_type}` does not derive `schemars::JsonSchema`")
    } else {
        format!(
            "schema not available for `{rust_type}`: derive `schemars::JsonSchema` and enable eventing's `schemars` feature"
        )
    })
}

#[cfg(test)]
mod tests {
    #[allow(unused_imports)] // `WithSchema` has no impl without the feature
    use super::{SchemaProbe, WithSchema as _, WithoutSchema as _};

    struct Plain;

    #[test]
    fn a_type_without_the_derive_says_what_to_do() {
        let reason = (&SchemaProbe::<Plain>::default()).schema()().expect_err("no schema without the derive");
        assert!(reason.contains("schema not available"), "{reason}");
        assert!(reason.contains("schema::tests::Plain"), "{reason}");
        assert!(reason.contains("derive `schemars::JsonSchema`"), "{reason}");
        assert_eq!(reason.contains("enable eventing's `schemars` feature"), !cfg!(feature = "schemars"), "{reason}");
    }
}
