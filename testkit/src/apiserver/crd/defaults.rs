//! Schema defaulting (structuraldefaulting.Default): applied on create and update after
//! pruning, and to stored objects on read, so clients see what a real cluster shows.

use super::prune::child_schema;
use serde_json::Value;

fn non_nullable_null(v: &Value, schema: &Value) -> bool {
    v.is_null() && schema.get("nullable") != Some(&Value::Bool(true))
}

/// Fills in `default`s for missing (or non-nullable null) fields of every object present,
/// then defaults inside them, defaults included.
pub fn apply(v: &mut Value, schema: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, prop) in props {
                    let Some(default) = prop.get("default") else {
                        continue;
                    };
                    let missing = m.get(k).is_none_or(|cur| non_nullable_null(cur, prop));
                    if missing {
                        m.insert(k.clone(), default.clone());
                    }
                }
            }
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in m.iter_mut() {
                let declared = schema.get("properties").and_then(|p| p.get(k));
                if declared.is_none() {
                    if let Some(a) = additional {
                        if let Some(d) = a.get("default").filter(|_| non_nullable_null(child, a)) {
                            *child = d.clone();
                        }
                    }
                }
                if let Some(sub) = child_schema(schema, k) {
                    apply(child, sub);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for child in a {
                    if let Some(d) = items
                        .get("default")
                        .filter(|_| non_nullable_null(child, items))
                    {
                        *child = d.clone();
                    }
                    apply(child, items);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::apply;
    use serde_json::json;

    #[test]
    fn defaults_fill_missing_fields_and_recurse_into_defaults() {
        let schema = json!({"type": "object", "properties": {
            "n": {"type": "integer", "default": 3},
            "s": {"type": "string", "default": "x", "nullable": true},
            "o": {"type": "object", "default": {}, "properties": {"in": {"type": "boolean", "default": true}}},
            "absent": {"type": "object", "properties": {"in": {"type": "boolean", "default": true}}}}});
        let mut v = json!({"n": null, "s": null});
        apply(&mut v, &schema);
        assert_eq!(v, json!({"n": 3, "s": null, "o": {"in": true}}));
    }
}
