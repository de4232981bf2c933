//! A minimal OpenAPI v3 discovery: for every group version, one PATCH operation per kind that
//! declares the `fieldValidation` query parameter. That is what kubectl looks for
//! (resource.queryParamVerifierV3) before trusting the server to validate fields, so
//! `kubectl create/apply` need neither schemas nor `--validate=false`. No schemas are served:
//! kubectl falls back to its compiled-in types (or JSON merge patch) to compute apply patches.

use super::registry::Registry;
use serde_json::{json, Map, Value};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A hash that changes when the served resources change (kubectl caches by it).
fn hash(reg: &Registry, group: &str, version: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for d in reg.in_group_version(group, version) {
        h.update(d.resource.as_bytes());
        h.update(d.kind.as_bytes());
    }
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// `/openapi/v3`: the index of group-version documents.
pub fn index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for (g, vs) in reg.groups() {
        for v in vs {
            let p = gv_path(&g, &v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(reg, &g, &v))}),
            );
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<api/v1 | apis/g/v>`.
pub fn group_version(reg: &Registry, rest: &str) -> Option<Value> {
    let (group, version) = match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => (String::new(), v.to_string()),
        ["apis", g, v] => (g.to_string(), v.to_string()),
        _ => return None,
    };
    let mut paths = Map::new();
    let mut any = false;
    for d in reg.in_group_version(&group, &version) {
        any = true;
        if d.virtual_kind.is_some() {
            continue;
        }
        let base = format!("/{}", gv_path(&group, &version));
        let item = if d.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", d.resource)
        } else {
            format!("{base}/{}/{{name}}", d.resource)
        };
        let gvk = json!({"group": d.group, "version": version, "kind": d.kind});
        let param = |n: &str| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        paths.insert(
            item,
            json!({
                "patch": {
                    "operationId": format!("patch{}", d.kind),
                    "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")],
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk,
                }
            }),
        );
    }
    if !any {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
