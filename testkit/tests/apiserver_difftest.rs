//! Behaviours the differential test (conformance/difftest) found the emulator lacking, each
//! as a real kube-apiserver 1.37.2 answered it.

mod common;

use common::{raw, server, Raw};
use podcert_testkit::apiserver::TestServer;
use serde_json::{json, Value};

async fn call(srv: &TestServer, method: &str, path: &str, ct: &str, body: Value) -> Raw {
    let b = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    raw(srv, method, path, Some(&srv.admin_token()), ct, &b).await
}

const CM: &str = "/api/v1/namespaces/default/configmaps";
const SECRETS: &str = "/api/v1/namespaces/default/secrets";
const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";

fn causes(r: &Raw) -> Vec<String> {
    let v = r.json();
    let mut out: Vec<String> = v["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["field"].as_str().unwrap_or("").to_string())
        .collect();
    out.sort();
    out
}

fn reason(r: &Raw) -> String {
    r.json()["reason"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn configmaps_are_decoded_and_validated() {
    let srv = server().await;
    let bad_key = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "k"}, "data": {"a b": "1"}});
    let r = call(&srv, "POST", CM, JSON, bad_key).await;
    assert_eq!((r.code, causes(&r)), (422, vec!["data[a b]".to_string()]));
    let mistyped = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t"}, "data": {"a": 1}});
    let r = call(&srv, "POST", CM, JSON, mistyped).await;
    assert_eq!((r.code, reason(&r).as_str()), (400, "BadRequest"));
    let r = raw(
        &srv,
        "POST",
        CM,
        Some(&srv.admin_token()),
        "text/plain",
        "x",
    )
    .await;
    assert_eq!((r.code, reason(&r).as_str()), (415, "UnsupportedMediaType"));
}

#[tokio::test]
async fn secrets_merge_string_data_default_the_type_and_freeze_when_immutable() {
    let srv = server().await;
    let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}, "data": {"d": "aGk="}});
    let r = call(&srv, "POST", SECRETS, JSON, s).await;
    assert_eq!(r.code, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(v["data"], json!({"d": "aGk=", "k": "dg=="}));
    assert_eq!(v["type"], "Opaque");
    assert!(v.get("stringData").is_none());

    let bad = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}, "data": {"d": "!!notbase64"}});
    assert_eq!(call(&srv, "POST", SECRETS, JSON, bad).await.code, 400);
    let tls = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "aGk="}});
    let r = call(&srv, "POST", SECRETS, JSON, tls).await;
    assert_eq!(
        (r.code, causes(&r)),
        (422, vec!["data[tls.key]".to_string()])
    );

    let one = format!("{SECRETS}/s");
    let r = call(&srv, "PATCH", &one, MERGE, json!({"type": "Other"})).await;
    assert_eq!((r.code, causes(&r)), (422, vec!["type".to_string()]));
    assert_eq!(
        call(&srv, "PATCH", &one, MERGE, json!({"immutable": true}))
            .await
            .code,
        200
    );
    let r = call(&srv, "PATCH", &one, MERGE, json!({"data": {"d": "aG8="}})).await;
    assert_eq!((r.code, causes(&r)), (422, vec!["data".to_string()]));
}

#[tokio::test]
async fn events_v1_need_an_event_time_and_a_known_type() {
    let srv = server().await;
    let path = "/apis/events.k8s.io/v1/namespaces/default/events";
    let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
        "reportingController": "x.dev/c", "reportingInstance": "i", "action": "A", "reason": "R", "type": "Bad"});
    let r = call(&srv, "POST", path, JSON, ev).await;
    // In "default" an Event may leave regarding.namespace empty.
    assert_eq!(
        (r.code, causes(&r)),
        (422, vec!["eventTime".to_string(), "type".to_string()])
    );
}

#[tokio::test]
async fn a_patch_leaving_a_mistyped_field_is_invalid_on_patch() {
    let srv = server().await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"}});
    assert_eq!(call(&srv, "POST", CM, JSON, cm).await.code, 201);
    let r = call(
        &srv,
        "PATCH",
        &format!("{CM}/p"),
        MERGE,
        json!({"metadata": {"labels": {"x": true}}}),
    )
    .await;
    assert_eq!((r.code, causes(&r)), (422, vec!["patch".to_string()]));
}

#[tokio::test]
async fn list_and_watch_option_errors() {
    let srv = server().await;
    let r = call(
        &srv,
        "GET",
        &format!("{CM}?labelSelector=a%3D%3D%3Db"),
        "",
        Value::Null,
    )
    .await;
    assert_eq!(r.code, 400);
    let r = call(
        &srv,
        "GET",
        &format!("{CM}?resourceVersionMatch=Exact"),
        "",
        Value::Null,
    )
    .await;
    assert_eq!(
        (r.code, causes(&r)),
        (422, vec!["resourceVersionMatch".to_string()])
    );
    let r = call(
        &srv,
        "GET",
        &format!("{CM}?fieldSelector=data.a%3D1"),
        "",
        Value::Null,
    )
    .await;
    assert_eq!(
        r.json()["message"],
        "\"data.a\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    );
    // storage.ParseResourceVersion's error is no APIStatus: 500 without a reason.
    let r = call(
        &srv,
        "GET",
        &format!("{CM}?watch=true&resourceVersion=abc"),
        "",
        Value::Null,
    )
    .await;
    assert_eq!((r.code, r.json().get("reason").is_none()), (500, true));
}

#[tokio::test]
async fn an_immediate_delete_answers_a_status_except_for_pods_and_namespaces() {
    let srv = server().await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}});
    assert_eq!(call(&srv, "POST", CM, JSON, cm).await.code, 201);
    let r = call(&srv, "DELETE", &format!("{CM}/d"), "", Value::Null).await;
    let v = r.json();
    assert_eq!(
        (r.code, v["kind"].as_str(), v["status"].as_str()),
        (200, Some("Status"), Some("Success"))
    );
    assert_eq!(v["details"]["kind"], "configmaps");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}});
    assert_eq!(
        call(&srv, "POST", "/api/v1/namespaces", JSON, ns)
            .await
            .code,
        201
    );
    let r = call(&srv, "DELETE", "/api/v1/namespaces/gone", "", Value::Null).await;
    assert_eq!(r.json()["kind"], "Namespace");
}
