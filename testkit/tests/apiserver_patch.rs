//! Patch types, server-side apply, create-on-update, deletecollection.

mod common;

use common::{api_err, raw, server};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"a": "1"}}),
    )
    .unwrap()
}

#[tokio::test]
async fn json_patch_and_its_test_operation() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    api.create(&PostParams::default(), &cm("j", json!({})))
        .await
        .unwrap();
    let p: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/data/a", "value": "2"}]))
            .unwrap();
    let o = api
        .patch("j", &PatchParams::default(), &Patch::Json::<()>(p))
        .await
        .unwrap();
    assert_eq!(o.data.unwrap()["a"], "2");
    let p: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/a", "value": "9"}])).unwrap();
    let (code, _, _) = api_err(
        api.patch("j", &PatchParams::default(), &Patch::Json::<()>(p))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
}

#[tokio::test]
async fn server_side_apply_creates_and_merges_and_needs_a_field_manager() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    let pp = PatchParams::apply("tester");
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}});
    api.patch("ssa", &pp, &Patch::Apply(&applied))
        .await
        .unwrap();
    let more = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"b": "2"}});
    let o = api.patch("ssa", &pp, &Patch::Apply(&more)).await.unwrap();
    assert_eq!(o.data.unwrap().len(), 2);
    // fieldmanager: apply patches without fieldManager are invalid (patch.go).
    let r = raw(
        &srv,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/ssa",
        Some(&srv.admin_token()),
        "application/apply-patch+yaml",
        "{\"data\": {\"c\": \"3\"}}",
    )
    .await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("fieldManager: Required value"));
    let r = raw(
        &srv,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/ssa",
        Some(&srv.admin_token()),
        "text/plain",
        "x",
    )
    .await;
    assert_eq!(r.code, 415);
}

#[tokio::test]
async fn leases_may_be_created_by_put_configmaps_may_not() {
    let srv = server().await;
    let leases: Api<Lease> = Api::namespaced(srv.admin_client(), "default");
    let l: Lease = serde_json::from_value(
        json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}}),
    )
    .unwrap();
    // coordination lease strategy: AllowCreateOnUpdate() is true.
    leases
        .replace("l", &PostParams::default(), &l)
        .await
        .unwrap();
    assert_eq!(
        leases
            .get("l")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("me")
    );
    let cms: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    // configmap strategy: AllowCreateOnUpdate() is false → NotFound.
    assert_eq!(
        api_err(
            cms.replace("nope", &PostParams::default(), &cm("nope", json!({})))
                .await
                .unwrap_err()
        )
        .0,
        404
    );
}

#[tokio::test]
async fn delete_collection_honours_selectors() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    for (n, l) in [("a", "x"), ("b", "y"), ("c", "x")] {
        api.create(&PostParams::default(), &cm(n, json!({"g": l})))
            .await
            .unwrap();
    }
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("g=x"),
    )
    .await
    .unwrap();
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(left, vec!["b"]);
}

#[tokio::test]
async fn delete_preconditions_are_checked() {
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    api.create(&PostParams::default(), &cm("p", json!({})))
        .await
        .unwrap();
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some("1".into()),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    // registry/rest/delete.go BeforeDelete checks preconditions first: a Conflict on the
    // Kind (not the resource) naming both resourceVersions.
    let (code, reason, msg) = api_err(api.delete("p", &dp).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    let rv = api
        .get("p")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    assert_eq!(
        msg,
        format!(
            "Operation cannot be fulfilled on ConfigMap \"p\": the ResourceVersion in the precondition (1) does not match the ResourceVersion in record ({rv}). The object might have been modified"
        )
    );
}

#[tokio::test]
async fn aggregated_discovery_is_served_on_request() {
    let srv = server().await;
    let addr = srv.url().trim_start_matches("http://").to_string();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "GET /apis HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {}\r\nAccept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json\r\n\r\n",
        srv.admin_token()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(
        out.to_lowercase().contains(
            "content-type: application/json;g=apidiscovery.k8s.io;v=v2;as=apigroupdiscoverylist"
        ),
        "{out}"
    );
    let body: serde_json::Value =
        serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["kind"], "APIGroupDiscoveryList");
    let certs = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "certificates.k8s.io")
        .unwrap();
    assert_eq!(certs["versions"][0]["version"], "v1");
}
