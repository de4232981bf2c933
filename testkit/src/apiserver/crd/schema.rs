//! OpenAPI v3 validation of custom resources, as kube-openapi's SchemaValidator does it and
//! apiextensions-apiserver turns its results into field errors
//! (kubeOpenAPIResultToFieldErrors): same checks, messages and field paths.

use super::{formats, gofmt};
use crate::api_status::{FieldError, FieldErrorKind};
use regex::Regex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Validates `v` (found at `path`, "" for the root) against `schema`, appending errors.
pub fn validate(v: &Value, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if v.is_null() {
        validate_null(schema, path, errs);
        return;
    }
    if !type_matches(v, schema, path, errs) {
        return;
    }
    match v {
        Value::String(s) => {
            string(s, schema, path, errs);
            format(s, schema, path, errs);
        }
        Value::Number(_) => number(v, schema, path, errs),
        Value::Array(a) => array(a, schema, path, errs),
        Value::Object(m) => object(m, schema, path, errs),
        Value::Bool(_) | Value::Null => {}
    }
    enumeration(v, schema, path, errs);
}

/// The JSON type kube-openapi infers for a decoded value (Go decodes integral literals as
/// int64 and the rest as float64).
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The declared types: `type`, or integer-or-string for x-kubernetes-int-or-string.
fn declared_types(schema: &Value) -> Vec<&str> {
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return vec!["integer", "string"];
    }
    schema
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .into_iter()
        .collect()
}

fn type_error(path: &str, expected: &str, actual: &str) -> FieldError {
    FieldError::new(
        FieldErrorKind::TypeInvalid,
        path,
        Some(json!(actual)),
        format!("{path} in body must be of type {expected}: \"{actual}\""),
    )
}

fn validate_null(schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let types = declared_types(schema);
    if !types.is_empty() && schema.get("nullable") != Some(&Value::Bool(true)) {
        errs.push(type_error(path, &types.join(","), "null"));
    }
    enumeration(&Value::Null, schema, path, errs);
}

fn type_matches(v: &Value, schema: &Value, path: &str, errs: &mut Vec<FieldError>) -> bool {
    let types = declared_types(schema);
    if types.is_empty() {
        return true;
    }
    let actual = json_type(v);
    let float_int = actual == "number"
        && v.as_f64().is_some_and(|f| f.fract() == 0.0)
        && types.contains(&"integer");
    let int_float = actual == "integer" && types.contains(&"number");
    if types.contains(&actual) || float_int || int_float {
        return true;
    }
    errs.push(type_error(path, &types.join(","), actual));
    false
}

fn int_of(schema: &Value, key: &str) -> Option<i64> {
    schema
        .get(key)
        .and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)))
}

fn regex_for(pattern: &str) -> Result<Regex, regex::Error> {
    static CACHE: OnceLock<Mutex<HashMap<String, Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(re) = map.get(pattern) {
        return Ok(re.clone());
    }
    let re = Regex::new(pattern)?;
    map.insert(pattern.to_string(), re.clone());
    Ok(re)
}

/// stringValidator: the first failing check only, lengths in runes.
fn string(s: &str, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let runes = s.chars().count() as i64;
    if let Some(max) = int_of(schema, "maxLength").filter(|m| runes > *m) {
        errs.push(FieldError::new(
            FieldErrorKind::TooLong,
            path,
            None,
            format!(
                "may not be more than {max} {}",
                if max == 1 { "byte" } else { "bytes" }
            ),
        ));
        return;
    }
    if let Some(min) = int_of(schema, "minLength").filter(|m| runes < *m) {
        errs.push(FieldError::invalid(
            path,
            json!(s),
            format!("{path} in body should be at least {min} chars long"),
        ));
        return;
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        let detail = match regex_for(pattern) {
            Ok(re) if re.is_match(s) => return,
            Ok(_) => format!("{path} in body should match '{pattern}'"),
            Err(e) => {
                format!("{path} in body should match '{pattern}, but pattern is invalid: {e}'")
            }
        };
        errs.push(FieldError::invalid(path, json!(s), detail));
    }
}

/// formatValidator: only the formats apiextensions keeps (see `formats`).
fn format(s: &str, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(f) = schema.get("format").and_then(Value::as_str) else {
        return;
    };
    if formats::check(f, s) == Some(false) {
        errs.push(FieldError::new(
            FieldErrorKind::TypeInvalid,
            path,
            Some(json!(s)),
            format!("{path} in body must be of type {f}: {s:?}"),
        ));
    }
}

/// A bad number as Go prints it: a float64 holding an integral value prints without a
/// fraction (2.0 prints as 2), which serde_json would not do.
fn go_number(v: &Value) -> Value {
    match v.as_f64() {
        Some(f) if v.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => json!(f as i64),
        _ => v.clone(),
    }
}

fn bound_error(v: &Value, path: &str, detail: String) -> FieldError {
    FieldError::invalid(path, go_number(v), detail)
}

/// numberValidator: multipleOf, minimum and maximum. An integer value is compared with the
/// bound truncated to an integer (MinimumNativeType/MaximumNativeType), as upstream does.
fn number(v: &Value, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let is_int = !v.is_f64();
    let x = v.as_f64().unwrap_or(0.0);
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    let shown = |b: f64| {
        if is_int {
            (b as i64).to_string()
        } else {
            gofmt::float(b)
        }
    };
    let cmp_bound = |b: f64| if is_int { (b as i64) as f64 } else { b };
    if let Some(m) = bound("multipleOf").filter(|m| *m > 0.0) {
        // MultipleOfInt truncates the factor for integers; MultipleOf divides floats.
        let off = if is_int {
            let f = m as i64;
            f != 0 && v.as_i64().is_some_and(|i| i % f != 0)
        } else {
            let q = if m < 1.0 { 1.0 / m * x } else { x / m };
            q.fract() != 0.0
        };
        if off {
            errs.push(bound_error(
                v,
                path,
                format!("{path} in body should be a multiple of {}", gofmt::float(m)),
            ));
        }
    }
    if let Some(min) = bound("minimum") {
        let exclusive = schema.get("exclusiveMinimum") == Some(&Value::Bool(true));
        let b = cmp_bound(min);
        if (exclusive && x <= b) || (!exclusive && x < b) {
            let op = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errs.push(bound_error(
                v,
                path,
                format!("{path} in body should be {op} {}", shown(min)),
            ));
        }
    }
    if let Some(max) = bound("maximum") {
        let exclusive = schema.get("exclusiveMaximum") == Some(&Value::Bool(true));
        let b = cmp_bound(max);
        if (exclusive && x >= b) || (!exclusive && x > b) {
            let op = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            errs.push(bound_error(
                v,
                path,
                format!("{path} in body should be {op} {}", shown(max)),
            ));
        }
    }
}

fn item_path(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Where a property sits: `spec.ca` (the root has no name).
pub fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// schemaSliceValidator: items, then minItems and maxItems.
fn array(a: &[Value], schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(items) = schema.get("items") {
        for (i, child) in a.iter().enumerate() {
            validate(child, items, &item_path(path, i), errs);
        }
    }
    let n = a.len() as i64;
    if let Some(min) = int_of(schema, "minItems").filter(|m| n < *m) {
        errs.push(FieldError::invalid(
            path,
            json!(n),
            format!("{path} in body should have at least {min} items"),
        ));
    }
    if let Some(max) = int_of(schema, "maxItems").filter(|m| n > *m) {
        errs.push(too_many(path, n, max));
    }
}

/// field.TooMany, as MaxItems and MaxProperties failures are reported.
fn too_many(path: &str, actual: i64, max: i64) -> FieldError {
    FieldError::new(
        FieldErrorKind::TooMany,
        path,
        Some(json!(actual)),
        format!(
            "must have at most {max} {}",
            if max == 1 { "item" } else { "items" }
        ),
    )
}

/// objectValidator: property counts (which stop the object's checks), properties, typed map
/// values, then `required`.
fn object(
    m: &serde_json::Map<String, Value>,
    schema: &Value,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let n = m.len() as i64;
    if let Some(min) = int_of(schema, "minProperties").filter(|x| n < *x) {
        errs.push(FieldError::invalid(
            path,
            json!(n),
            format!("{path} in body should have at least {min} properties"),
        ));
        return;
    }
    if let Some(max) = int_of(schema, "maxProperties").filter(|x| n > *x) {
        errs.push(too_many(path, n, max));
        return;
    }
    let props = schema.get("properties").and_then(Value::as_object);
    if let Some(props) = props {
        for (k, sub) in props {
            if let Some(child) = m.get(k) {
                validate(child, sub, &child_path(path, k), errs);
            }
        }
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        for (k, child) in m {
            if props.is_none_or(|p| !p.contains_key(k)) {
                validate(child, additional, &child_path(path, k), errs);
            }
        }
    }
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !m.contains_key(r) {
            errs.push(FieldError::required(child_path(path, r), ""));
        }
    }
}

/// Numbers compare by value across integer and float forms, as Go's converting DeepEqual.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// basicCommonValidator: `enum`, reported as Unsupported value with the allowed values.
fn enumeration(v: &Value, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(allowed) = schema
        .get("enum")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        return;
    };
    if allowed.iter().any(|a| same(v, a)) {
        return;
    }
    let shown: Vec<String> = allowed
        .iter()
        .map(|a| match a {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    let refs: Vec<&str> = shown.iter().map(String::as_str).collect();
    errs.push(FieldError::not_supported(path, go_number(v), &refs));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(v: Value, schema: Value) -> Vec<String> {
        let mut errs = Vec::new();
        validate(&v, &schema, "spec.x", &mut errs);
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn types_follow_kube_openapi() {
        let s = json!({"type": "string"});
        assert_eq!(
            messages(json!(1), s.clone()),
            ["spec.x: Invalid value: \"integer\": spec.x in body must be of type string: \"integer\""]
        );
        assert_eq!(
            messages(Value::Null, s),
            ["spec.x: Invalid value: \"null\": spec.x in body must be of type string: \"null\""]
        );
        assert!(messages(json!(2), json!({"type": "number"})).is_empty());
        assert!(messages(json!(2.0), json!({"type": "integer"})).is_empty());
        assert_eq!(
            messages(json!(2.5), json!({"type": "integer"})),
            ["spec.x: Invalid value: \"number\": spec.x in body must be of type integer: \"number\""]
        );
        assert!(messages(Value::Null, json!({"type": "string", "nullable": true})).is_empty());
        assert!(messages(json!("a"), json!({"x-kubernetes-int-or-string": true})).is_empty());
    }

    #[test]
    fn bounds_print_like_go() {
        let s = json!({"type": "number", "minimum": 0.05, "maximum": 0.95});
        assert_eq!(
            messages(json!(2.0), s.clone()),
            ["spec.x: Invalid value: 2: spec.x in body should be less than or equal to 0.95"]
        );
        // An integer is compared with the truncated bound, as MaximumNativeType does.
        assert_eq!(
            messages(json!(1), s.clone()),
            ["spec.x: Invalid value: 1: spec.x in body should be less than or equal to 0"]
        );
        assert_eq!(
            messages(json!(0.01), s),
            ["spec.x: Invalid value: 0.01: spec.x in body should be greater than or equal to 0.05"]
        );
        let ex = json!({"type": "integer", "minimum": 1, "exclusiveMinimum": true, "maximum": 5, "exclusiveMaximum": true});
        assert_eq!(
            messages(json!(5), ex.clone()),
            ["spec.x: Invalid value: 5: spec.x in body should be less than 5"]
        );
        assert_eq!(
            messages(json!(1), ex),
            ["spec.x: Invalid value: 1: spec.x in body should be greater than 1"]
        );
        assert_eq!(
            messages(json!(7), json!({"type": "integer", "multipleOf": 2})),
            ["spec.x: Invalid value: 7: spec.x in body should be a multiple of 2"]
        );
    }

    #[test]
    fn strings_check_lengths_in_runes_then_pattern() {
        let s = json!({"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^[a-zé]+$"});
        assert!(messages(json!("éé"), s.clone()).is_empty());
        assert_eq!(
            messages(json!("abcd"), s.clone()),
            ["spec.x: Too long: may not be more than 3 bytes"]
        );
        assert_eq!(
            messages(json!("a"), s.clone()),
            ["spec.x: Invalid value: \"a\": spec.x in body should be at least 2 chars long"]
        );
        assert_eq!(
            messages(json!("A1"), s),
            ["spec.x: Invalid value: \"A1\": spec.x in body should match '^[a-zé]+$'"]
        );
        assert_eq!(
            messages(json!("soon"), json!({"type": "string", "format": "date-time"})),
            ["spec.x: Invalid value: \"soon\": spec.x in body must be of type date-time: \"soon\""]
        );
    }

    #[test]
    fn arrays_objects_and_enums() {
        let a = json!({"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string", "enum": ["A", "B"]}});
        assert_eq!(
            messages(json!([]), a.clone()),
            ["spec.x: Invalid value: 0: spec.x in body should have at least 1 items"]
        );
        assert_eq!(
            messages(json!(["A", "B", "A"]), a.clone()),
            ["spec.x: Too many: 3: must have at most 2 items"]
        );
        assert_eq!(
            messages(json!(["C"]), a),
            ["spec.x[0]: Unsupported value: \"C\": supported values: \"A\", \"B\""]
        );
        let o = json!({"type": "object", "maxProperties": 1, "required": ["r"],
                       "additionalProperties": {"type": "integer"}});
        assert_eq!(
            messages(json!({"a": 1, "b": 2}), o.clone()),
            ["spec.x: Too many: 2: must have at most 1 item"]
        );
        assert_eq!(
            messages(json!({"a": "s"}), o),
            [
                "spec.x.a: Invalid value: \"string\": spec.x.a in body must be of type integer: \"string\"",
                "spec.x.r: Required value"
            ]
        );
        let min = json!({"type": "object", "minProperties": 1});
        assert_eq!(
            messages(json!({}), min),
            ["spec.x: Invalid value: 0: spec.x in body should have at least 1 properties"]
        );
    }
}
