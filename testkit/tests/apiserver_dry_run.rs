//! `dryRun=All` on create and the `ClusterTrustBundleProjection` gate, as kube-apiserver
//! answers them (what `podcert-signer check` relies on).

mod common;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, PostParams};
use podcert_testkit::apiserver::{ServerConfig, TestServer};
use serde_json::json;

fn bundle_pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "probe"},
        "spec": {
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
            "volumes": [{"name": "b", "projected": {"sources": [
                {"clusterTrustBundle": {"signerName": "podcert.dev/spiffe", "path": "ca.crt",
                                        "labelSelector": {"matchLabels": {"podcert.dev/trust-bundle": "live"}}}}
            ]}}]
        }
    }))
    .unwrap()
}

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..Default::default()
    }
}

async fn server(projection: bool) -> TestServer {
    TestServer::start(ServerConfig {
        cluster_trust_bundle_projection: projection,
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn dry_run_create_returns_the_object_and_stores_nothing() {
    let srv = server(true).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin_client(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "a"}, "data": {"k": "v"}})).unwrap();
    let writes = srv.store().writes().len();
    let out = api.create(&dry_run(), &cm).await.unwrap();
    assert_eq!(out.data.unwrap()["k"], "v");
    assert!(out.metadata.uid.is_some() && out.metadata.creation_timestamp.is_some());
    assert_eq!(out.metadata.resource_version, None);
    assert!(api.get_opt("a").await.unwrap().is_none());
    assert_eq!(srv.store().writes().len(), writes);
    // A name clash is still reported.
    api.create(&PostParams::default(), &cm).await.unwrap();
    let err = api.create(&dry_run(), &cm).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 409),
        "{err}"
    );
}

#[tokio::test]
async fn dry_run_values_other_than_all_are_refused() {
    let srv = server(true).await;
    let token = srv.admin_token();
    let r = common::raw(
        &srv,
        "POST",
        "/api/v1/namespaces/default/configmaps?dryRun=Some",
        Some(&token),
        "application/json",
        r#"{"metadata":{"name":"a"}}"#,
    )
    .await;
    assert_eq!(r.code, 422, "{}", r.body);
    let message = r.json()["message"].as_str().unwrap_or("").to_string();
    assert!(srv
        .store()
        .get("", "configmaps", Some("default"), "a")
        .is_none());
    assert!(
        message.contains("CreateOptions") && message.contains("dryRun"),
        "{message}"
    );
}

#[tokio::test]
async fn cluster_trust_bundle_source_kept_with_the_gate_on() {
    let srv = server(true).await;
    let api: Api<Pod> = Api::namespaced(srv.admin_client(), "default");
    let out = api.create(&dry_run(), &bundle_pod()).await.unwrap();
    let v = serde_json::to_value(out).unwrap();
    let src = &v["spec"]["volumes"][0]["projected"]["sources"][0];
    assert_eq!(
        src["clusterTrustBundle"]["signerName"],
        "podcert.dev/spiffe"
    );
}

#[tokio::test]
async fn cluster_trust_bundle_source_dropped_with_the_gate_off() {
    let srv = server(false).await;
    let api: Api<Pod> = Api::namespaced(srv.admin_client(), "default");
    let out = api.create(&dry_run(), &bundle_pod()).await.unwrap();
    let v = serde_json::to_value(out).unwrap();
    assert_eq!(v["spec"]["volumes"][0]["projected"]["sources"], json!([{}]));
    // A real create drops it too.
    let stored = api
        .create(&PostParams::default(), &bundle_pod())
        .await
        .unwrap();
    let v = serde_json::to_value(stored).unwrap();
    assert_eq!(v["spec"]["volumes"][0]["projected"]["sources"], json!([{}]));
}
