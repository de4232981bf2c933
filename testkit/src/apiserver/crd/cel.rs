//! `x-kubernetes-validations`: CEL rules evaluated with kube-cel (the evaluator behind
//! kube::core::cel), reported as apiextensions-apiserver's CEL validator reports them.

use crate::api_status::{FieldError, FieldErrorKind};
use kube_cel::{CompiledSchema, ErrorKind};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Compiled rules by schema text: compiling is the expensive part and schemas rarely change.
fn compiled(schema: &Value) -> Option<Arc<CompiledSchema>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<CompiledSchema>>>> = OnceLock::new();
    let key = schema.to_string();
    if !key.contains("\"x-kubernetes-validations\"") {
        return None;
    }
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    // CRDs come and go in tests; a small bound keeps stale schemas from piling up.
    if cache.len() > 64 {
        cache.clear();
    }
    Some(
        cache
            .entry(key)
            .or_insert_with(|| Arc::new(kube_cel::compile_schema(schema)))
            .clone(),
    )
}

/// Kinds of schema error after which upstream does not run CEL rules (hasBlockingErr).
fn blocks_cel(e: &FieldError) -> bool {
    matches!(
        e.kind,
        FieldErrorKind::NotSupported
            | FieldErrorKind::Required
            | FieldErrorKind::TooLong
            | FieldErrorKind::TooMany
            | FieldErrorKind::TypeInvalid
    )
}

/// The error upstream adds instead of evaluating rules on an object already invalid.
fn not_checked() -> FieldError {
    FieldError::invalid(
        "<nil>",
        Value::Null,
        "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
    )
}

/// Evaluates every rule of `schema` against `obj` (and `old` for transition rules), unless
/// `errs` already holds a blocking schema error.
pub fn check(schema: &Value, obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    if errs.iter().any(blocks_cel) {
        errs.push(not_checked());
        return;
    }
    let Some(rules) = compiled(schema) else {
        return;
    };
    let (obj, old) = (without_nulls(obj), old.map(without_nulls));
    let Err(failures) = kube_cel::validate_compiled(&rules, &obj, old.as_ref()) else {
        return;
    };
    for f in failures.iter() {
        // An empty path is the root, which field.Path prints as <nil>.
        let path = if f.field_path.is_empty() {
            "<nil>".to_string()
        } else {
            f.field_path.clone()
        };
        let ty = type_at(schema, &f.field_path).unwrap_or("object");
        let detail = match f.kind {
            ErrorKind::ValidationFailure => f.message.clone(),
            _ => format!("{}: {}", f.rule.trim(), f.message),
        };
        let err = match f.reason.as_deref() {
            Some("FieldValueForbidden") => FieldError::forbidden(path, detail),
            Some("FieldValueRequired") => FieldError::required(path, detail),
            Some("FieldValueDuplicate") => {
                FieldError::new(FieldErrorKind::Duplicate, path, Some(json!(ty)), "")
            }
            // Upstream (schema/cel/validation.go) reports a failed rule with the value it
            // saw, omitted for objects and arrays; other failures carry the schema type.
            _ if f.kind != ErrorKind::ValidationFailure => {
                FieldError::invalid(path, json!(ty), detail)
            }
            _ if ty == "object" || ty == "array" => FieldError::invalid_omitted(path, detail),
            _ => FieldError::invalid(
                path,
                value_at(&obj, &f.field_path)
                    .cloned()
                    .unwrap_or(Value::Null),
                detail,
            ),
        };
        errs.push(err);
    }
}

/// Upstream evaluates rules on non-null values only; kube-cel would run them on `null` (and
/// fail `size(self)`), so null fields are removed from the copy the rules see.
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| (k.clone(), without_nulls(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// The schema type at a dotted path with `[i]` indexes (the value upstream reports).
/// The value at a field path such as `spec.keyTypes[0]` (the paths `type_at` reads).
fn value_at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = obj;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !name.is_empty() {
            node = node.get(name)?;
        }
        for idx in rest.split(['[', ']']).filter(|i| !i.is_empty()) {
            node = node.get(idx.parse::<usize>().ok()?)?;
        }
    }
    Some(node)
}

fn type_at<'a>(schema: &'a Value, path: &str) -> Option<&'a str> {
    let mut node = schema;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, indexes) = match part.find('[') {
            Some(i) => (&part[..i], part[i..].matches('[').count()),
            None => (part, 0),
        };
        if !name.is_empty() {
            node = node
                .get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))?;
        }
        for _ in 0..indexes {
            node = node.get("items")?;
        }
    }
    node.get("type").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(schema: Value, obj: Value) -> Vec<String> {
        let mut errs = Vec::new();
        check(&schema, &obj, None, &mut errs);
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn failed_rules_report_the_schema_type_and_message() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "a": {"type": "string"}, "b": {"type": "string"},
            "l": {"type": "array", "items": {"type": "string"},
                  "x-kubernetes-validations": [{"rule": "size(self) > 0"}]}},
            "x-kubernetes-validations": [
                {"rule": "has(self.a) != has(self.b)", "message": "exactly one of a or b"},
                {"rule": "!has(self.a) || self.a != 'x'", "message": "no x", "reason": "FieldValueForbidden"}]}}});
        assert_eq!(
            run(
                schema.clone(),
                json!({"spec": {"a": "x", "b": "y", "l": []}})
            ),
            [
                "spec: Invalid value: exactly one of a or b",
                "spec: Forbidden: no x",
                "spec.l: Invalid value: failed rule: size(self) > 0"
            ]
        );
        assert!(run(schema.clone(), json!({"spec": {"a": "z", "l": ["q"]}})).is_empty());
        let dynamic = json!({"type": "object", "properties": {"l": {"type": "array", "items": {"type": "string"},
            "x-kubernetes-validations": [{"rule": "size(self) < 2", "messageExpression": "'got ' + string(size(self))"}]}}});
        assert_eq!(
            run(dynamic, json!({"l": ["a", "b"]})),
            ["l: Invalid value: got 2"]
        );
        // Rules do not run on null values.
        assert!(run(schema, json!({"spec": {"a": "z", "l": null}})).is_empty());
    }

    #[test]
    fn blocking_schema_errors_skip_rules() {
        let mut errs = vec![FieldError::required("spec.a", "")];
        check(&json!({"type": "object"}), &json!({}), None, &mut errs);
        assert_eq!(
            errs[1].message(),
            "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"
        );
    }
}
