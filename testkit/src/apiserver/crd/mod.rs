//! CustomResourceDefinitions: turning a CRD into a served resource, and the structural-schema
//! handling of custom resources (pruning, defaulting, OpenAPI validation and CEL rules).

mod cel;
mod defaults;
mod formats;
mod gofmt;
mod prune;
mod schema;

use super::registry::{version_priority, Conversion, ResourceDef};
use crate::api_status::FieldError;
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

/// Which part of a custom resource a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// The main resource: everything but `status` when `/status` exists.
    Main,
    /// The `/status` subresource: only `status` is validated.
    Status,
}

/// The schema of the object's version (or of the first served version).
fn schema_of<'a>(def: &'a ResourceDef, obj: &Value) -> Option<&'a Value> {
    let version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or("");
    def.schema_for(version)
        .or_else(|| def.crd_schemas.first().map(|(_, s)| s))
}

/// The part of the schema and object a write is validated against: upstream validates spec
/// (and everything else) on main writes and only status on status writes, ratcheting the
/// part the write cannot change.
fn scoped(schema: &Value, obj: &Value, write: Write, has_status: bool) -> (Value, Value) {
    match write {
        Write::Status => {
            let status_schema = schema
                .pointer("/properties/status")
                .cloned()
                .unwrap_or(json!({}));
            let view = match obj.get("status") {
                Some(st) => json!({ "status": st }),
                None => json!({}),
            };
            (
                json!({"type": "object", "properties": {"status": status_schema}}),
                view,
            )
        }
        Write::Main if has_status => {
            let mut s = schema.clone();
            if let Some(p) = s.get_mut("properties").and_then(Value::as_object_mut) {
                p.remove("status");
            }
            let mut view = obj.clone();
            if let Some(m) = view.as_object_mut() {
                m.remove("status");
            }
            (s, view)
        }
        Write::Main => (schema.clone(), obj.clone()),
    }
}

/// Admits a custom resource write as apiextensions-apiserver does: prunes unknown fields and
/// non-nullable nulls, applies schema defaults, then validates the written part against the
/// OpenAPI schema and its CEL rules (`old` feeds transition rules on updates).
pub fn validate_custom(
    def: &ResourceDef,
    obj: &mut Value,
    old: Option<&Value>,
    write: Write,
) -> Result<(), Vec<FieldError>> {
    let Some(schema) = schema_of(def, obj) else {
        return Ok(());
    };
    prune::unknown_fields(obj, schema);
    prune::non_nullable_nulls(obj, schema);
    defaults::apply(obj, schema);
    let (scope, view) = scoped(schema, obj, write, def.has_status);
    let old_view = old.map(|o| scoped(schema, o, write, def.has_status).1);
    let mut errs = Vec::new();
    schema::validate(&view, &scope, "", &mut errs);
    cel::check(&scope, &view, old_view.as_ref(), &mut errs);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// Applies schema defaults to a stored object as it is read, as the real apiserver does when
/// decoding from etcd (so defaults added to a CRD show on objects written before).
pub fn default_stored(def: &ResourceDef, version: &str, obj: &mut Value) {
    if let Some(schema) = def.schema_for(version) {
        defaults::apply(obj, schema);
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
        validate_custom(&def, &mut o, None, Write::Main).unwrap();
        assert_eq!(o["spec"], json!({"size": 1}));
        assert!(o.get("junk").is_none());
        let mut bad = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}});
        let errs = validate_custom(&def, &mut bad, None, Write::Main).unwrap_err();
        assert_eq!(errs[0].field, "spec.size");
    }
}
