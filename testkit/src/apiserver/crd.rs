//! CustomResourceDefinitions: turning a CRD into a served resource, and the structural-schema
//! handling of custom resources (pruning of unknown fields and `required`; types, formats and
//! CEL rules are not enforced).

use super::registry::{version_priority, Conversion, ResourceDef};
use crate::status::FieldError;
use serde_json::{json, Value};

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The parts of CRD validation the server relies on (ValidateCustomResourceDefinition).
pub fn validate(crd: &Value) -> Result<(), Vec<FieldError>> {
    let mut errs = Vec::new();
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    }
    if s(crd, "/spec/names/kind").is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    let name = super::meta::name_of(crd);
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match s(crd, "/spec/scope") {
        "Namespaced" | "Cluster" => {}
        other => errs.push(FieldError::not_supported(
            "spec.scope",
            json!(other),
            &["Cluster", "Namespaced"],
        )),
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            json!([]),
            "must have exactly one version marked as storage version",
        ));
    } else if versions
        .iter()
        .filter(|v| v.get("storage") == Some(&json!(true)))
        .count()
        != 1
    {
        errs.push(FieldError::invalid(
            "spec.versions",
            Value::Array(versions.clone()),
            "must have exactly one version marked as storage version",
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// The resource a CRD defines (its served versions, preferred first).
pub fn resource_def(crd: &Value) -> Option<ResourceDef> {
    let versions = crd.pointer("/spec/versions")?.as_array()?;
    let mut served: Vec<&Value> = versions
        .iter()
        .filter(|v| v.get("served") == Some(&json!(true)))
        .collect();
    if served.is_empty() {
        return None;
    }
    served.sort_by_key(|v| std::cmp::Reverse(version_priority(s(v, "/name"))));
    let strs = |p: &str| -> Vec<String> {
        crd.pointer(p)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let kind = s(crd, "/spec/names/kind").to_string();
    let singular = match s(crd, "/spec/names/singular") {
        "" => kind.to_lowercase(),
        x => x.to_string(),
    };
    Some(ResourceDef {
        group: s(crd, "/spec/group").into(),
        versions: served.iter().map(|v| s(v, "/name").to_string()).collect(),
        resource: s(crd, "/spec/names/plural").into(),
        singular,
        kind,
        namespaced: s(crd, "/spec/scope") == "Namespaced",
        short_names: strs("/spec/names/shortNames"),
        categories: strs("/spec/names/categories"),
        // Every served version of a CRD has the same subresources in practice; take any.
        has_status: served
            .iter()
            .any(|v| v.pointer("/subresources/status").is_some()),
        conversion: Conversion::None,
        allow_create_on_update: false,
        allow_unconditional_update: false,
        virtual_kind: None,
        crd_schemas: served
            .iter()
            .filter_map(|v| {
                Some((
                    s(v, "/name").to_string(),
                    v.pointer("/schema/openAPIV3Schema")?.clone(),
                ))
            })
            .collect(),
        custom: true,
    })
}

/// The status the apiextensions controllers would set: names accepted, established.
pub fn status(crd: &Value, now: &str) -> Value {
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|v| v.get("storage") == Some(&json!(true)))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(json!({})),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "storedVersions": stored,
    })
}

/// Prunes unknown fields and checks `required` against the schema of the object's version.
pub fn validate_custom(def: &ResourceDef, obj: &mut Value) -> Result<(), Vec<FieldError>> {
    let version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or("")
        .to_string();
    let Some(schema) = def
        .schema_for(&version)
        .or_else(|| def.crd_schemas.first().map(|(_, s)| s))
    else {
        return Ok(());
    };
    let mut errs = Vec::new();
    if let Some(m) = obj.as_object_mut() {
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, v) in m.iter_mut() {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(sub) = props.and_then(|p| p.get(k)) {
                walk(v, sub, k, &mut errs);
            }
        }
        if schema.get("x-kubernetes-preserve-unknown-fields") != Some(&json!(true)) {
            m.retain(|k, _| {
                matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                    || props.is_some_and(|p| p.contains_key(k))
            });
        }
        check_required(schema, m, "", &mut errs);
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

fn check_required(
    schema: &Value,
    m: &serde_json::Map<String, Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !m.contains_key(r) {
            let p = if path.is_empty() {
                r.to_string()
            } else {
                format!("{path}.{r}")
            };
            errs.push(FieldError::required(p, ""));
        }
    }
}

fn walk(v: &mut Value, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in m.iter_mut() {
                if let Some(sub) = props.and_then(|p| p.get(k)).or(additional) {
                    walk(child, sub, &format!("{path}.{k}"), errs);
                }
            }
            let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
            if !preserve
                && additional.is_none()
                && schema.get("additionalProperties") != Some(&json!(true))
            {
                m.retain(|k, _| props.is_some_and(|p| p.contains_key(k)));
            }
            check_required(schema, m, path, errs);
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, child) in a.iter_mut().enumerate() {
                    walk(child, items, &format!("{path}[{i}]"), errs);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({"metadata": {"name": "widgets.example.com"},
               "spec": {"group": "example.com", "scope": "Namespaced",
                        "names": {"plural": "widgets", "kind": "Widget"},
                        "versions": [{"name": "v1", "served": true, "storage": true,
                                      "subresources": {"status": {}},
                                      "schema": {"openAPIV3Schema": {"type": "object", "required": ["spec"],
                                         "properties": {"spec": {"type": "object", "required": ["size"],
                                             "properties": {"size": {"type": "integer"}}},
                                                         "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}})
    }

    #[test]
    fn custom_resources_are_pruned_and_required_fields_checked() {
        let def = resource_def(&crd()).unwrap();
        let mut o = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                           "spec": {"size": 1, "colour": "red"}, "junk": 1});
        validate_custom(&def, &mut o).unwrap();
        assert_eq!(o["spec"], json!({"size": 1}));
        assert!(o.get("junk").is_none());
        let mut bad = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}});
        let errs = validate_custom(&def, &mut bad).unwrap_err();
        assert_eq!(errs[0].field, "spec.size");
    }
}
