//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), the subset of
//! strategic merge patch kubectl sends, and server-side apply (simplified to a merge of the
//! applied configuration; managedFields and conflicts between managers are not tracked).

use crate::api_status::ApiError;
use serde_json::{Map, Value};

/// The patch types of the `Content-Type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let ct = ct.split(';').next().unwrap_or("").trim();
        match ct {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// The 415 kube-apiserver answers for an unknown patch content type.
pub fn unsupported_media_type(ct: &str) -> ApiError {
    ApiError {
        code: 415,
        reason: "UnsupportedMediaType".into(),
        message: format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {ct})"
        ),
        details: None,
        retry_after_seconds: None,
    }
}

/// Merge keys of the lists strategic merge patch merges (from the Go struct tags of the
/// types we serve); every other list is replaced.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "secrets" => "name",
        "conditions" => "type",
        "volumeMounts" | "volumeDevices" => "mountPath",
        "ports" => "containerPort",
        "ownerReferences" => "uid",
        "addresses" => "type",
        "taints" => "key",
        "hostAliases" => "ip",
        _ => return None,
    })
}

/// Primitive lists with patchStrategy "merge" (union).
fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

pub fn apply_merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

pub fn apply_json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let p: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    json_patch::patch(target, &p).map_err(|e| ApiError {
        code: 422,
        reason: "Invalid".into(),
        message: format!("the server rejected our request due to an error in our request: {e}"),
        details: None,
        retry_after_seconds: None,
    })
}

/// Strategic merge patch: maps merge, `null` deletes, lists with a known merge key merge by
/// that key, other lists are replaced; `$patch`, `$retainKeys`, `$setElementOrder/` and
/// `$deleteFromPrimitiveList/` directives are honoured.
pub fn apply_strategic(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => merge_map(t, p, false),
        _ => *target = strip_directives(patch),
    }
}

/// Server-side apply, simplified: the applied configuration is merged like a strategic patch
/// (without deletions: fields the manager stopped applying are kept).
pub fn apply_ssa(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied.as_object()) {
        (Some(t), Some(p)) => merge_map(t, p, true),
        _ => *target = applied.clone(),
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn merge_map(t: &mut Map<String, Value>, p: &Map<String, Value>, apply: bool) {
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        *t = strip_directives(&Value::Object(p.clone()))
            .as_object()
            .cloned()
            .unwrap_or_default();
        return;
    }
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, pv) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(del)) = (t.get_mut(field), pv) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            if !apply {
                t.remove(k);
            }
            continue;
        }
        match (t.get_mut(k), pv) {
            (Some(Value::Object(tm)), Value::Object(pm)) => merge_map(tm, pm, apply),
            (Some(Value::Array(tl)), Value::Array(pl)) => {
                if let Some(key) = merge_key(k) {
                    merge_list(tl, pl, key, apply);
                } else if is_set_list(k) {
                    for x in pl {
                        if !tl.contains(x) {
                            tl.push(x.clone());
                        }
                    }
                } else {
                    *tl = pl.iter().map(strip_directives).collect();
                }
            }
            _ => {
                t.insert(k.clone(), strip_directives(pv));
            }
        }
    }
}

fn merge_list(tl: &mut Vec<Value>, pl: &[Value], key: &str, apply: bool) {
    for pe in pl {
        let Some(pk) = pe.get(key).cloned() else {
            tl.push(strip_directives(pe));
            continue;
        };
        let pos = tl.iter().position(|te| te.get(key) == Some(&pk));
        let delete = pe.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                tl.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => match (tl[i].as_object_mut(), pe.as_object()) {
                (Some(tm), Some(pm)) => merge_map(tm, pm, apply),
                _ => tl[i] = strip_directives(pe),
            },
            (None, false) => tl.push(strip_directives(pe)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name_and_replaces_other_lists() {
        let mut t = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}],
                                     "args": ["1", "2"]}});
        let p = json!({"spec": {"containers": [{"name": "b", "image": "z"}], "args": ["3"],
                                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}]}});
        apply_strategic(&mut t, &p);
        assert_eq!(t["spec"]["containers"][0]["image"], "x");
        assert_eq!(t["spec"]["containers"][1]["image"], "z");
        assert_eq!(t["spec"]["args"], json!(["3"]));
    }

    #[test]
    fn strategic_deletes_with_null_and_patch_delete() {
        let mut t = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
                           "status": {"conditions": [{"type": "Ready"}, {"type": "Issued"}]}});
        apply_strategic(
            &mut t,
            &json!({"metadata": {"labels": {"a": null}},
                    "status": {"conditions": [{"type": "Ready", "$patch": "delete"}]}}),
        );
        assert_eq!(
            t,
            json!({"metadata": {"labels": {"b": "2"}}, "status": {"conditions": [{"type": "Issued"}]}})
        );
    }
}
