//! ClusterTrustBundles through HTTP: names after the signer, and the `attest` check.

mod common;

use common::api_err;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use podcert_testkit::rules::UserInfo;
use serde_json::json;

fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.self_signed(&key).unwrap().pem()
}

fn ctbs(client: kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("certificates.k8s.io", "v1", "ClusterTrustBundle"),
        "clustertrustbundles",
    );
    Api::all_with(client, &ar)
}

fn bundle(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "ClusterTrustBundle",
        "metadata": {"name": name},
        "spec": {"signerName": "example.com/spiffe", "trustBundle": ca_pem()}
    }))
    .unwrap()
}

#[tokio::test]
async fn bundles_need_attest_and_signer_prefixed_names() {
    let srv = common::server().await;
    let publisher = UserInfo::service_account("sys", "signer");
    srv.load_yaml(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: ctb-writer}
rules: [{apiGroups: [certificates.k8s.io], resources: [clustertrustbundles], verbs: [create, get, update]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ctb-writer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ctb-writer}
subjects: [{kind: ServiceAccount, name: signer, namespace: sys}]
"#,
    )
    .unwrap();
    let api = ctbs(srv.client_for(&publisher));
    // plugin/pkg/admission/certificates/ctbattest: no `attest` on the signer → 403.
    let (code, reason, msg) = api_err(
        api.create(&PostParams::default(), &bundle("example.com:spiffe:a"))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (403, "Forbidden"), "{msg}");
    assert!(
        msg.contains("not permitted to attest for signerName \"example.com/spiffe\""),
        "{msg}"
    );

    srv.load_yaml(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: attest}
rules: [{apiGroups: [certificates.k8s.io], resources: [signers], resourceNames: [example.com/spiffe], verbs: [attest]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: attest}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: attest}
subjects: [{kind: ServiceAccount, name: signer, namespace: sys}]
"#,
    )
    .unwrap();
    let mut made = api
        .create(&PostParams::default(), &bundle("example.com:spiffe:a"))
        .await
        .unwrap();
    // clustertrustbundle strategy: AllowUnconditionalUpdate() is false.
    made.metadata.resource_version = None;
    let (code, _, msg) = api_err(
        api.replace("example.com:spiffe:a", &PostParams::default(), &made)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422, "{msg}");
    // ValidateClusterTrustBundle: the name must start with the signer name, '/' → ':'.
    let (code, _, msg) = api_err(
        api.create(&PostParams::default(), &bundle("other"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422, "{msg}");
    assert!(
        msg.contains("must be named with prefix example.com:spiffe:"),
        "{msg}"
    );
}
