//! meta.k8s.io/v1 Table rendering for `kubectl get` (Accept: ...;as=Table).

use super::meta::{human_duration, name_of, parse_timestamp};
use super::registry::ResourceDef;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// Whether the Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .any(|p| p.contains("as=Table") && p.contains("g=meta.k8s.io"))
}

fn col(name: &str, ty: &str, priority: u8) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
}

fn str_at(o: &Value, p: &str) -> String {
    match o.pointer(p) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn or_none(s: String) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

fn age(o: &Value, now: OffsetDateTime) -> String {
    match o
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_timestamp)
    {
        Some(t) => human_duration((now - t).whole_seconds()),
        None => "<unknown>".into(),
    }
}

fn count(o: &Value, p: &str) -> usize {
    match o.pointer(p) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// Column definitions and cells per resource (a subset of pkg/printers/internalversion).
fn columns(def: &ResourceDef) -> Vec<Value> {
    match (def.group.as_str(), def.resource.as_str()) {
        ("", "pods") => vec![
            col("Name", "string", 0),
            col("Ready", "string", 0),
            col("Status", "string", 0),
            col("Restarts", "string", 0),
            col("Age", "string", 0),
            col("IP", "string", 1),
            col("Node", "string", 1),
        ],
        ("", "namespaces") => vec![
            col("Name", "string", 0),
            col("Status", "string", 0),
            col("Age", "string", 0),
        ],
        ("", "nodes") => vec![
            col("Name", "string", 0),
            col("Status", "string", 0),
            col("Roles", "string", 0),
            col("Age", "string", 0),
            col("Version", "string", 0),
        ],
        ("", "configmaps") => vec![
            col("Name", "string", 0),
            col("Data", "integer", 0),
            col("Age", "string", 0),
        ],
        ("", "secrets") => vec![
            col("Name", "string", 0),
            col("Type", "string", 0),
            col("Data", "integer", 0),
            col("Age", "string", 0),
        ],
        ("", "serviceaccounts") => vec![
            col("Name", "string", 0),
            col("Secrets", "integer", 0),
            col("Age", "string", 0),
        ],
        ("coordination.k8s.io", "leases") => vec![
            col("Name", "string", 0),
            col("Holder", "string", 0),
            col("Age", "string", 0),
        ],
        ("certificates.k8s.io", "podcertificaterequests") => vec![
            col("Name", "string", 0),
            col("Signer", "string", 0),
            col("Pod", "string", 0),
            col("Node", "string", 0),
            col("State", "string", 0),
            col("Age", "string", 0),
        ],
        ("certificates.k8s.io", "clustertrustbundles") => {
            vec![
                col("Name", "string", 0),
                col("SignerName", "string", 0),
                col("Age", "string", 0),
            ]
        }
        _ => vec![col("Name", "string", 0), col("Age", "string", 0)],
    }
}

fn pcr_state(o: &Value) -> String {
    let conds = o.pointer("/status/conditions").and_then(Value::as_array);
    conds
        .into_iter()
        .flatten()
        .find(|c| c.get("status").and_then(Value::as_str) == Some("True"))
        .and_then(|c| c.get("type").and_then(Value::as_str))
        .unwrap_or("Pending")
        .to_string()
}

fn cells(def: &ResourceDef, o: &Value, now: OffsetDateTime) -> Vec<Value> {
    let name = json!(name_of(o));
    let a = json!(age(o, now));
    match (def.group.as_str(), def.resource.as_str()) {
        ("", "pods") => {
            let total = count(o, "/spec/containers");
            let ready = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map(|s| {
                    s.iter()
                        .filter(|c| c.get("ready") == Some(&json!(true)))
                        .count()
                })
                .unwrap_or(0);
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(str_at(o, "/status/phase")),
                json!("0"),
                a,
                json!(or_none(str_at(o, "/status/podIP"))),
                json!(or_none(str_at(o, "/spec/nodeName"))),
            ]
        }
        ("", "namespaces") => vec![name, json!(str_at(o, "/status/phase")), a],
        ("", "nodes") => {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c.get("type") == Some(&json!("Ready"))))
                .map(|c| c.get("status") == Some(&json!("True")));
            let status = match ready {
                Some(true) => "Ready",
                _ => "NotReady",
            };
            vec![
                name,
                json!(status),
                json!("<none>"),
                a,
                json!(str_at(o, "/status/nodeInfo/kubeletVersion")),
            ]
        }
        ("", "configmaps") => vec![name, json!(count(o, "/data") + count(o, "/binaryData")), a],
        ("", "secrets") => vec![name, json!(str_at(o, "/type")), json!(count(o, "/data")), a],
        ("", "serviceaccounts") => vec![name, json!(count(o, "/secrets")), a],
        ("coordination.k8s.io", "leases") => {
            vec![name, json!(str_at(o, "/spec/holderIdentity")), a]
        }
        ("certificates.k8s.io", "podcertificaterequests") => vec![
            name,
            json!(str_at(o, "/spec/signerName")),
            json!(str_at(o, "/spec/podName")),
            json!(str_at(o, "/spec/nodeName")),
            json!(pcr_state(o)),
            a,
        ],
        ("certificates.k8s.io", "clustertrustbundles") => {
            vec![name, json!(or_none(str_at(o, "/spec/signerName"))), a]
        }
        _ => vec![name, a],
    }
}

/// `includeObject`: None, Metadata (default) or Object.
fn row_object(o: &Value, include: &str) -> Value {
    match include {
        "None" => Value::Null,
        "Object" => o.clone(),
        _ => {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))})
        }
    }
}

/// A Table of `objects` (already in the served version).
pub fn table(
    def: &ResourceDef,
    objects: &[Value],
    list_meta: Value,
    include: &str,
    now: OffsetDateTime,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut r = json!({"cells": cells(def, o, now)});
            let obj = row_object(o, include);
            if !obj.is_null() {
                r["object"] = obj;
            }
            r
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns(def),
        "rows": rows,
    })
}
