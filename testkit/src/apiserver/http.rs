//! HTTP routing: authentication, impersonation, authorization, fault injection, and the
//! dispatch of each request to discovery, the registry operations or a watch.

use super::admission::{self, authorize};
use super::auth;
use super::discovery;
use super::openapi;
use super::ops::{self, Ctx, ListOpts, Sub};
use super::patch::{self, PatchType};
use super::registry::{ResourceDef, Virtual};
use super::selectors::{FieldSelector, LabelSelector};
use super::store::lock;
use super::table;
use super::watch::{self, WatchParams};
use super::Shared;
use crate::api_status::{ApiError, FieldError};
use crate::rules::{Attributes, UserInfo};
use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const MAX_BODY: usize = 64 * 1024 * 1024;

pub fn json_response(code: u16, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(Body::from(body))
        .unwrap_or_default()
}

pub fn error_response(e: &ApiError) -> Response {
    let mut r = json_response(e.code, &e.to_status());
    if let Some(s) = e.retry_after_seconds {
        if let Ok(v) = s.to_string().parse() {
            r.headers_mut().insert("retry-after", v);
        }
    }
    r
}

fn not_found_path() -> ApiError {
    ApiError {
        code: 404,
        reason: "NotFound".into(),
        message: "the server could not find the requested resource".into(),
        details: Some(json!({})),
        retry_after_seconds: None,
    }
}

/// A request for a resource: `/api/v1/...` or `/apis/<g>/<v>/...`.
#[derive(Debug, Clone)]
struct ResourcePath {
    group: String,
    version: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
    sub: Option<String>,
}

enum Route {
    Health,
    Version,
    Api,
    Apis,
    Group(String),
    GroupVersion(String, String),
    OpenApiV3Index,
    OpenApiV3(String),
    OpenApiOther,
    Resource(ResourcePath),
    NotFound,
}

fn parse_resource(group: &str, version: &str, rest: &[&str]) -> Route {
    let (namespace, rest) = if rest.first() == Some(&"namespaces")
        && rest.len() >= 3
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"))
    {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    if rest.is_empty() || rest.len() > 3 || rest.iter().any(|s| s.is_empty()) {
        return Route::NotFound;
    }
    Route::Resource(ResourcePath {
        group: group.into(),
        version: version.into(),
        namespace,
        resource: rest[0].into(),
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    })
}

fn route(path: &str) -> Route {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["healthz"] | ["livez"] | ["readyz"] => Route::Health,
        ["version"] => Route::Version,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3(rest.join("/")),
        ["openapi", ..] => Route::OpenApiOther,
        ["api"] => Route::Api,
        ["api", v] => Route::GroupVersion(String::new(), v.to_string()),
        ["api", v, rest @ ..] => parse_resource("", v, rest),
        ["apis"] => Route::Apis,
        ["apis", g] => Route::Group(g.to_string()),
        ["apis", g, v] => Route::GroupVersion(g.to_string(), v.to_string()),
        ["apis", g, v, rest @ ..] => parse_resource(g, v, rest),
        _ => Route::NotFound,
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The single entry point of the server.
pub async fn handle(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let r = route(parts.uri.path());
    if let Route::Health = r {
        return (StatusCode::OK, "ok").into_response();
    }
    let user = match auth::authenticate(&sh.tokens, &parts.headers) {
        Ok(u) => u,
        Err(e) => return error_response(&e),
    };
    let user = {
        let st = lock(&sh.state);
        match auth::impersonate(&st, user, &parts.headers) {
            Ok(u) => u,
            Err(e) => return error_response(&e),
        }
    };
    let accept = header(&parts.headers, "accept").to_string();
    match r {
        Route::Health => (StatusCode::OK, "ok").into_response(),
        Route::Version => json_response(200, &discovery::version(sh.version)),
        Route::OpenApiV3Index => json_response(200, &openapi::index(&lock(&sh.state).registry)),
        Route::OpenApiV3(rest) => match openapi::group_version(&lock(&sh.state).registry, &rest) {
            Some(v) => json_response(200, &v),
            None => error_response(&not_found_path()),
        },
        Route::OpenApiOther => error_response(&not_found_path()),
        Route::Api => {
            let st = lock(&sh.state);
            match discovery::wants_aggregated(&accept) {
                Some(dv) => aggregated_response(&discovery::aggregated(&st.registry, true, dv), dv),
                None => json_response(200, &discovery::api_versions(&sh.addr.to_string())),
            }
        }
        Route::Apis => {
            let st = lock(&sh.state);
            match discovery::wants_aggregated(&accept) {
                Some(dv) => {
                    aggregated_response(&discovery::aggregated(&st.registry, false, dv), dv)
                }
                None => json_response(200, &discovery::api_group_list(&st.registry)),
            }
        }
        Route::Group(g) => match discovery::api_group(&lock(&sh.state).registry, &g) {
            Some(v) => json_response(200, &v),
            None => error_response(&not_found_path()),
        },
        Route::GroupVersion(g, v) => {
            match discovery::api_resource_list(&lock(&sh.state).registry, &g, &v) {
                Some(v) => json_response(200, &v),
                None => error_response(&not_found_path()),
            }
        }
        Route::NotFound => error_response(&not_found_path()),
        Route::Resource(rp) => {
            let body = match to_bytes(body, MAX_BODY).await {
                Ok(b) => b,
                Err(e) => {
                    return error_response(&ApiError::bad_request(format!(
                        "error reading the request body: {e}"
                    )))
                }
            };
            let query: HashMap<String, String> = Query::try_from_uri(&parts.uri)
                .map(|q| q.0)
                .unwrap_or_default();
            match resource_request(
                sh,
                user,
                parts.method,
                &parts.headers,
                &accept,
                query,
                body,
                rp,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => error_response(&e),
            }
        }
    }
}

fn aggregated_response(v: &Value, dv: &str) -> Response {
    let mut r = json_response(200, v);
    let ct = format!("application/json;g=apidiscovery.k8s.io;v={dv};as=APIGroupDiscoveryList");
    if let Ok(h) = ct.parse() {
        r.headers_mut().insert("content-type", h);
    }
    r
}

fn truthy(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "1" || v == "true")
}

fn list_opts(q: &HashMap<String, String>) -> Result<ListOpts, ApiError> {
    Ok(ListOpts {
        label: LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?,
        field: FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))?,
        limit: q.get("limit").and_then(|l| l.parse().ok()),
        cont: q.get("continue").cloned(),
    })
}

/// Decodes a JSON or YAML request body, or protobuf for the kinds kubectl's typed commands
/// send (protobuf.rs); other protobuf and CBOR bodies are refused with 415.
fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    let ct = header(headers, "content-type");
    if ct.contains("protobuf") {
        return super::protobuf::decode(body, ct);
    }
    if !(ct.is_empty() || ct.contains("json") || ct.contains("yaml")) {
        // e.g. text/plain or CBOR: the negotiated serializers are JSON, YAML and protobuf.
        return Err(ApiError {
            code: 415,
            reason: "UnsupportedMediaType".into(),
            message: "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf".into(),
            details: None,
            retry_after_seconds: None,
        });
    }
    if ct.contains("yaml") {
        return serde_saphyr::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding the request body: {e}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding the request body: {e}")))
}

#[allow(clippy::too_many_arguments)]
async fn resource_request(
    sh: Arc<Shared>,
    user: UserInfo,
    method: Method,
    headers: &HeaderMap,
    accept: &str,
    q: HashMap<String, String>,
    body: Bytes,
    rp: ResourcePath,
) -> Result<Response, ApiError> {
    let def = lock(&sh.state)
        .registry
        .find_served(&rp.group, &rp.version, &rp.resource)
        .cloned()
        .ok_or_else(not_found_path)?;
    let sub = match rp.sub.as_deref() {
        None => Sub::Main,
        Some("status") if def.has_status => Sub::Status,
        Some(_) => return Err(not_found_path()),
    };
    if (!def.namespaced && rp.namespace.is_some())
        || (def.namespaced && rp.namespace.is_none() && rp.name.is_some())
    {
        return Err(not_found_path());
    }
    let ns = rp.namespace.clone().unwrap_or_default();
    let name = rp.name.clone().unwrap_or_default();
    let watching = truthy(&q, "watch");
    let verb = match (&method, rp.name.is_some()) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if watching => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => {
            return Err(ApiError::method_not_supported(
                &def.group,
                &def.resource,
                method.as_str(),
            ))
        }
    };
    if def.virtual_kind.is_some() && verb != "create" {
        return Err(ApiError::method_not_supported(
            &def.group,
            &def.resource,
            verb,
        ));
    }
    let attrs = Attributes {
        verb: verb.into(),
        api_group: def.group.clone(),
        resource: def.resource.clone(),
        subresource: rp.sub.clone().unwrap_or_default(),
        namespace: ns.clone(),
        name: name.clone(),
        path: None,
    };
    admission::require(&lock(&sh.state), &user, &attrs)?;
    let write = matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    );
    let d = sh.faults.decide(write, &def.group, &def.resource, &name);
    if !d.wait.is_zero() {
        tokio::time::sleep(d.wait).await;
    }
    if let Some(e) = d.error {
        return Err(e);
    }
    // ValidateCreateOptions & co.: dryRun may only be "All". The emulator serves it on create;
    // the other writes refuse it rather than write for real.
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") if verb == "create" => true,
        Some("All") if write => {
            return Err(ApiError {
                code: 501,
                reason: "NotImplemented".into(),
                message: format!(
                    "the API server emulator serves dryRun on create only, not on {verb}"
                ),
                details: None,
                retry_after_seconds: None,
            })
        }
        Some(other) => {
            let kind = match verb {
                "update" => "UpdateOptions",
                "patch" => "PatchOptions",
                "delete" | "deletecollection" => "DeleteOptions",
                _ => "CreateOptions",
            };
            return Err(ApiError::invalid(
                "meta.k8s.io",
                kind,
                "",
                &[FieldError::not_supported(
                    "dryRun",
                    json!([other]),
                    &["All"],
                )],
            ));
        }
    };
    let version = rp.version.clone();
    let table_inc = table::wants_table(accept).then(|| {
        q.get("includeObject")
            .cloned()
            .unwrap_or_else(|| "Metadata".into())
    });
    let ctx_now = sh.now();
    let ctx = Ctx {
        user: &user,
        now: ctx_now,
    };
    let out = |obj: &Value| super::convert::to_external(&def, obj, &version);
    match verb {
        "watch" => {
            let opts = list_opts(&q)?;
            let p = WatchParams {
                resource_version: q.get("resourceVersion").cloned(),
                bookmarks: truthy(&q, "allowWatchBookmarks"),
                timeout: q
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse().ok())
                    .map(Duration::from_secs),
                send_initial_events: q.get("sendInitialEvents").map(|v| v == "true" || v == "1"),
                rv_match: q.get("resourceVersionMatch").cloned(),
                table: table_inc,
            };
            watch::serve(
                sh.clone(),
                def.clone(),
                version,
                rp.namespace.clone(),
                opts,
                p,
            )
        }
        "list" => {
            let opts = list_opts(&q)?;
            // ValidateListOptions: a match needs a resourceVersion to match.
            if q.get("resourceVersionMatch").is_some_and(|m| !m.is_empty())
                && q.get("resourceVersion").is_none_or(|v| v.is_empty())
            {
                return Err(ApiError::invalid(
                    "meta.k8s.io",
                    "ListOptions",
                    "",
                    &[FieldError::forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden unless resourceVersion is provided",
                    )],
                ));
            }
            let st = lock(&sh.state);
            let r = ops::list(&st, &def, rp.namespace.as_deref(), &opts)?;
            let mut meta = json!({"resourceVersion": r.rv.to_string()});
            if let Some(c) = r.cont {
                meta["continue"] = json!(c);
            }
            if let Some(n) = r.remaining {
                meta["remainingItemCount"] = json!(n);
            }
            let items: Vec<Value> = r.items.iter().map(&out).collect();
            if let Some(inc) = table_inc {
                return Ok(json_response(
                    200,
                    &table::table(&def, &items, meta, &inc, ctx_now),
                ));
            }
            let items: Vec<Value> = items
                .into_iter()
                .map(|mut o| {
                    // Built-in lists carry no per-item apiVersion/kind on the wire.
                    if !def.custom {
                        if let Some(m) = o.as_object_mut() {
                            m.remove("apiVersion");
                            m.remove("kind");
                        }
                    }
                    o
                })
                .collect();
            Ok(json_response(
                200,
                &json!({"kind": format!("{}List", def.kind), "apiVersion": def.group_version(&version), "metadata": meta, "items": items}),
            ))
        }
        "get" => {
            let st = lock(&sh.state);
            let obj = st
                .get_obj(&def.group, &def.resource, &ns, &name)
                .ok_or_else(|| ApiError::not_found(&def.group, &def.resource, &name))?;
            let o = out(obj);
            if let Some(inc) = table_inc {
                let meta = json!({"resourceVersion": super::meta::rv_of(obj)});
                return Ok(json_response(
                    200,
                    &table::table(&def, &[o], meta, &inc, ctx_now),
                ));
            }
            Ok(json_response(200, &o))
        }
        "create" => {
            let body = parse_body(headers, &body)?;
            if let Some(v) = def.virtual_kind {
                return Ok(json_response(
                    201,
                    &access_review(&sh, &user, v, body, &def, &version),
                ));
            }
            let mut st = lock(&sh.state);
            let o = ops::create_with(&mut st, &ctx, &def, &version, &ns, body, dry_run)?;
            Ok(json_response(201, &out(&o)))
        }
        "update" => {
            let body = parse_body(headers, &body)?;
            let mut st = lock(&sh.state);
            let (o, created) = ops::update(
                &mut st, &ctx, &def, &version, &ns, &name, body, sub, "update",
            )?;
            Ok(json_response(if created { 201 } else { 200 }, &out(&o)))
        }
        "patch" => {
            let ct = header(headers, "content-type");
            let ptype = PatchType::from_content_type(ct)
                .ok_or_else(|| patch::unsupported_media_type(ct))?;
            let mut st = lock(&sh.state);
            let fm = q.get("fieldManager").map(String::as_str);
            let (o, created) = ops::patch(
                &mut st, &ctx, &def, &version, &ns, &name, ptype, &body, sub, fm,
            )?;
            Ok(json_response(if created { 201 } else { 200 }, &out(&o)))
        }
        "delete" => {
            let mut opts = parse_body(headers, &body)?;
            if let Some(p) = q.get("propagationPolicy") {
                opts["propagationPolicy"] = json!(p);
            }
            let mut st = lock(&sh.state);
            let o = ops::delete(&mut st, &ctx, &def, &ns, &name, &opts)?;
            let gone = st.get_obj(&def.group, &def.resource, &ns, &name).is_none();
            // store.go finalizeDelete: an object deleted at once is answered with a Status,
            // except by the stores with ReturnDeletedObject (here pods, namespaces,
            // serviceaccounts, services); one waiting for finalizers is answered with itself.
            let returns_object = def.group.is_empty()
                && matches!(
                    def.resource.as_str(),
                    "pods" | "namespaces" | "serviceaccounts" | "services"
                );
            if gone && !returns_object {
                let mut details =
                    json!({"name": name, "kind": def.resource, "uid": super::meta::uid_of(&o)});
                if !def.group.is_empty() {
                    details["group"] = json!(def.group);
                }
                let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Success", "details": details});
                return Ok(json_response(200, &status));
            }
            Ok(json_response(200, &out(&o)))
        }
        "deletecollection" => {
            let opts = list_opts(&q)?;
            let del = parse_body(headers, &body)?;
            let mut st = lock(&sh.state);
            let r = ops::list(
                &st,
                &def,
                rp.namespace.as_deref(),
                &ListOpts {
                    limit: None,
                    cont: None,
                    ..opts
                },
            )?;
            let mut items = Vec::new();
            for o in r.items {
                let (ons, oname) = (
                    super::meta::namespace_of(&o).to_string(),
                    super::meta::name_of(&o).to_string(),
                );
                if let Ok(d) = ops::delete(&mut st, &ctx, &def, &ons, &oname, &del) {
                    items.push(out(&d));
                }
            }
            let rv = st.rv;
            Ok(json_response(
                200,
                &json!({"kind": format!("{}List", def.kind), "apiVersion": def.group_version(&version),
                        "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
            ))
        }
        _ => Err(ApiError::method_not_supported(
            &def.group,
            &def.resource,
            verb,
        )),
    }
}

/// SelfSubjectAccessReview / SubjectAccessReview, answered by the RBAC authorizer.
fn access_review(
    sh: &Shared,
    user: &UserInfo,
    kind: Virtual,
    mut body: Value,
    def: &ResourceDef,
    version: &str,
) -> Value {
    let subject = match kind {
        Virtual::SelfSubjectAccessReview => user.clone(),
        Virtual::SubjectAccessReview => UserInfo {
            username: body
                .pointer("/spec/user")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            uid: body
                .pointer("/spec/uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            groups: body
                .pointer("/spec/groups")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
        },
    };
    let s = |p: &str| {
        body.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let allowed = if body.pointer("/spec/nonResourceAttributes").is_some() {
        true
    } else {
        let attrs = Attributes {
            verb: s("/spec/resourceAttributes/verb"),
            api_group: s("/spec/resourceAttributes/group"),
            resource: s("/spec/resourceAttributes/resource"),
            subresource: s("/spec/resourceAttributes/subresource"),
            namespace: s("/spec/resourceAttributes/namespace"),
            name: s("/spec/resourceAttributes/name"),
            path: None,
        };
        authorize(&lock(&sh.state), &subject, &attrs)
    };
    body["apiVersion"] = json!(def.group_version(version));
    body["kind"] = json!(def.kind);
    if body.get("metadata").is_none() {
        body["metadata"] = json!({});
    }
    body["status"] = if allowed {
        json!({"allowed": true})
    } else {
        json!({"allowed": false})
    };
    body
}
