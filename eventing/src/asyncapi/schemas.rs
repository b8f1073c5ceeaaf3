//! Payload schemas in the document: each payload's JSON Schema (draft 07, from `schemars`)
//! with its subschemas moved from its own `definitions` to the document's
//! `components.schemas`, where `$ref`s can reach them, or a schema that says why there is
//! none.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::schema::SchemaResult;

/// Where a payload's subschemas go in the document.
const COMPONENTS_SCHEMAS: &str = "#/components/schemas/";

/// What `schemars` names a root schema's subschemas' place (draft 07).
const DEFINITIONS: &str = "#/definitions/";

/// The document's `components.schemas`, filled as payloads are placed.
#[derive(Default)]
pub(super) struct Schemas {
    pub(super) components: BTreeMap<String, Value>,
}

impl Schemas {
    /// A payload's schema for a message: its JSON Schema with references into
    /// `components.schemas`, or, when there is none, a schema that accepts any JSON and
    /// says why.
    pub(super) fn payload(&mut self, schema: SchemaResult) -> Value {
        match schema {
            Ok(schema) => self.place(schema),
            Err(reason) => json!({ "description": reason }),
        }
    }

    /// Moves `schema`'s definitions into the components; a name taken by a different
    /// schema (two Rust types of the same name) gets a suffix, and references follow.
    fn place(&mut self, mut schema: Value) -> Value {
        let definitions = match schema.as_object_mut() {
            Some(object) => {
                object.remove("$schema");
                object.remove("definitions")
            }
            None => None,
        };
        let Some(Value::Object(definitions)) = definitions else { return schema };
        let mut renamed: BTreeMap<String, String> = BTreeMap::new();
        for (name, definition) in &definitions {
            let base = component_name(name);
            let mut id = base.clone();
            let mut n = 1;
            while self
                .components
                .get(&id)
                .is_some_and(|placed| *placed != rewrite(definition.clone(), &BTreeMap::new()))
            {
                n += 1;
                id = format!("{base}_{n}");
            }
            renamed.insert(name.clone(), id);
        }
        for (name, definition) in definitions {
            if let Some(id) = renamed.get(&name) {
                self.components.insert(id.clone(), rewrite(definition, &renamed));
            }
        }
        rewrite(schema, &renamed)
    }
}

/// A components key (`^[\w\d.\-_]+$`) for a schemars definition name such as `Wrapper<u8>`.
fn component_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect()
}

/// `schema` with every `$ref` to `#/definitions/<name>` pointing at `#/components/schemas/<id>`.
fn rewrite(schema: Value, renamed: &BTreeMap<String, String>) -> Value {
    match schema {
        Value::Object(object) => Value::Object(
            object
                .into_iter()
                .map(|(key, value)| match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => {
                        let target = match target.strip_prefix(DEFINITIONS) {
                            Some(name) => {
                                let name = unescape_pointer(name);
                                let id = renamed.get(&name).cloned().unwrap_or_else(|| component_name(&name));
                                format!("{COMPONENTS_SCHEMAS}{id}")
                            }
                            None => target,
                        };
                        (key, Value::String(target))
                    }
                    (_, value) => (key, rewrite(value, renamed)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|item| rewrite(item, renamed)).collect()),
        other => other,
    }
}

/// A JSON pointer segment as the name it stands for (`~1` is `/`, `~0` is `~`).
fn unescape_pointer(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Schemas;

    #[test]
    fn definitions_move_to_the_components_and_references_follow() {
        let mut schemas = Schemas::default();
        let order = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": { "line": { "$ref": "#/definitions/Line" } },
            "definitions": { "Line": { "type": "object", "properties": { "sku": { "type": "string" } } } }
        });
        let placed = schemas.payload(Ok(order));
        assert_eq!(placed["properties"]["line"]["$ref"], "#/components/schemas/Line");
        assert!(placed.get("$schema").is_none() && placed.get("definitions").is_none(), "{placed}");
        assert_eq!(schemas.components["Line"]["properties"]["sku"]["type"], "string");

        // Another `Line`, of another module: kept apart.
        let other = json!({
            "type": "object",
            "properties": { "line": { "$ref": "#/definitions/Line" } },
            "definitions": { "Line": { "type": "integer" } }
        });
        let placed = schemas.payload(Ok(other));
        assert_eq!(placed["properties"]["line"]["$ref"], "#/components/schemas/Line_2");
        assert_eq!(schemas.components["Line_2"]["type"], "integer");
        assert_eq!(schemas.components["Line"]["type"], "object", "the first `Line` stays");
    }

    #[test]
    fn a_missing_schema_says_why() {
        let placed = Schemas::default().payload(Err("schema not available: derive it".into()));
        assert_eq!(placed, json!({ "description": "schema not available: derive it" }));
    }
}
