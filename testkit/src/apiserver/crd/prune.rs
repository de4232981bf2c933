//! Structural pruning (structuralpruning.Prune and
//! structuraldefaulting.PruneNonNullableNullsWithoutDefaults): what the decoder drops before
//! defaulting and validation ever see the object.

use serde_json::{Map, Value};

/// Fields every object keeps whatever its schema says.
const ROOT_KEPT: [&str; 3] = ["apiVersion", "kind", "metadata"];

fn preserves_unknown(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
}

/// The schema of `key` inside an object node: a declared property or typed map values.
pub fn child_schema<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

/// Drops fields the schema does not declare, at the root (keeping apiVersion, kind and
/// metadata) and below.
pub fn unknown_fields(obj: &mut Value, schema: &Value) {
    let Some(m) = obj.as_object_mut() else {
        return;
    };
    for (k, v) in m.iter_mut() {
        if ROOT_KEPT.contains(&k.as_str()) {
            continue;
        }
        if let Some(sub) = schema.get("properties").and_then(|p| p.get(k)) {
            nested(v, sub);
        }
    }
    if !preserves_unknown(schema) {
        let props = schema.get("properties").and_then(Value::as_object);
        m.retain(|k, _| {
            ROOT_KEPT.contains(&k.as_str()) || props.is_some_and(|p| p.contains_key(k))
        });
    }
}

fn nested(v: &mut Value, schema: &Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if let Some(sub) = child_schema(schema, k) {
                    nested(child, sub);
                }
            }
            let open = preserves_unknown(schema)
                || schema
                    .get("additionalProperties")
                    .is_some_and(|a| a.is_object() || *a == Value::Bool(true));
            if !open {
                let props = schema.get("properties").and_then(Value::as_object);
                m.retain(|k, _| props.is_some_and(|p| p.contains_key(k)));
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for child in a {
                    nested(child, items);
                }
            }
        }
        _ => {}
    }
}

/// A `null` where the schema allows neither null nor a default is dropped, as if the field
/// had been omitted (a null with a default is replaced by the default later).
pub fn non_nullable_nulls(v: &mut Value, schema: &Value) {
    match v {
        Value::Object(m) => prune_map(m, schema),
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for child in a {
                    non_nullable_nulls(child, items);
                }
            }
        }
        _ => {}
    }
}

fn prune_map(m: &mut Map<String, Value>, schema: &Value) {
    m.retain(|k, v| {
        let Some(sub) = child_schema(schema, k) else {
            return true;
        };
        let nullable = sub.get("nullable") == Some(&Value::Bool(true));
        !(v.is_null() && !nullable && sub.get("default").is_none())
    });
    for (k, v) in m.iter_mut() {
        if let Some(sub) = child_schema(schema, k) {
            non_nullable_nulls(v, sub);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nulls_are_dropped_only_when_neither_nullable_nor_defaulted() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "string"},
            "b": {"type": "string", "nullable": true},
            "c": {"type": "string", "default": "x"},
            "m": {"type": "object", "additionalProperties": {"type": "string"}}}});
        let mut v = json!({"a": null, "b": null, "c": null, "m": {"k": null}});
        non_nullable_nulls(&mut v, &schema);
        assert_eq!(v, json!({"b": null, "c": null, "m": {}}));
    }
}
