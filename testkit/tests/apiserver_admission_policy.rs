//! The chart's ValidatingAdmissionPolicy, loaded from charts/podcert-signer/rendered/, enforced
//! by the emulator: the signer's service account writes only its own ClusterTrustBundles.

mod common;

use common::api_err;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use podcert_testkit::apiserver::TestServer;
use podcert_testkit::rules::UserInfo;
use serde_json::json;

const RBAC: &str = include_str!("../../charts/podcert-signer/rendered/rbac.yaml");
const RBAC_CRD: &str = include_str!("../../charts/podcert-signer/rendered/rbac-crd.yaml");
const POLICY: &str = "podcert-signer-cluster-trust-bundles";

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

fn bundle(name: &str, signer: Option<&str>) -> DynamicObject {
    let mut spec = json!({"trustBundle": ca_pem()});
    if let Some(s) = signer {
        spec["signerName"] = json!(s);
    }
    serde_json::from_value(json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "ClusterTrustBundle",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

fn signer() -> UserInfo {
    UserInfo::service_account("podcert-system", "podcert-signer")
}

async fn server_with(rbac: &str) -> TestServer {
    let srv = common::server().await;
    srv.load_yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: podcert-system}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n",
    )
    .unwrap();
    srv.load_yaml(rbac).unwrap();
    srv
}

/// RBAC wider than the chart's (as a hand-written or older role might be): the policy alone
/// must then hold the line.
fn widen_rbac(srv: &TestServer) {
    srv.load_yaml(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: wide}
rules:
  - {apiGroups: [certificates.k8s.io], resources: [clustertrustbundles], verbs: [create, get, update, delete]}
  - {apiGroups: [certificates.k8s.io], resources: [signers], resourceNames: [other.example/*], verbs: [attest]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: wide}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: wide}
subjects: [{kind: ServiceAccount, name: podcert-signer, namespace: podcert-system}]
"#,
    )
    .unwrap();
}

/// Asserts kube-apiserver's answer for this policy's denial (reason Forbidden).
fn assert_denied(e: kube::Error, name: &str, what: &str) {
    let (code, reason, msg) = api_err(e);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"), "{msg}");
    let want = format!(
        "clustertrustbundles.certificates.k8s.io \"{name}\" is forbidden: ValidatingAdmissionPolicy \
         '{POLICY}' with binding '{POLICY}' denied request: the signer may only {what} \
         ClusterTrustBundles whose spec.signerName is podcert.dev/*"
    );
    assert_eq!(msg, want);
}

async fn replace_bundle(
    api: &Api<DynamicObject>,
    name: &str,
) -> Result<DynamicObject, kube::Error> {
    let mut obj = api.get(name).await?;
    obj.data["spec"]["trustBundle"] = json!(ca_pem());
    api.replace(name, &PostParams::default(), &obj).await
}

#[tokio::test]
async fn crd_mode_signer_writes_only_bundles_under_its_domains() {
    let srv = server_with(RBAC_CRD).await;
    let as_signer = ctbs(srv.client_for(&signer()));
    let as_admin = ctbs(srv.admin_client());
    let pp = PostParams::default();

    // Its own signer names: created and updated.
    as_signer
        .create(
            &pp,
            &bundle("podcert.dev:team-a:live", Some("podcert.dev/team-a")),
        )
        .await
        .unwrap();
    replace_bundle(&as_signer, "podcert.dev:team-a:live")
        .await
        .unwrap();

    // No signerName: no `attest` check applies and RBAC allows create, so only the policy stops it.
    let e = as_signer
        .create(&pp, &bundle("roots", None))
        .await
        .unwrap_err();
    assert_denied(e, "roots", "write");

    // An admin's bundle without signerName: the admin is unaffected, the signer cannot rewrite it
    // (CRD-mode RBAC allows get/update on every bundle).
    as_admin.create(&pp, &bundle("roots", None)).await.unwrap();
    replace_bundle(&as_admin, "roots").await.unwrap();
    let e = replace_bundle(&as_signer, "roots").await.unwrap_err();
    assert_denied(e, "roots", "write");

    // With RBAC wider than the chart's, another signer's bundle and deletes are still refused.
    widen_rbac(&srv);
    as_admin
        .create(
            &pp,
            &bundle("other.example:x:live", Some("other.example/x")),
        )
        .await
        .unwrap();
    let e = as_signer
        .create(
            &pp,
            &bundle("other.example:y:live", Some("other.example/y")),
        )
        .await
        .unwrap_err();
    assert_denied(e, "other.example:y:live", "write");
    let e = replace_bundle(&as_signer, "other.example:x:live")
        .await
        .unwrap_err();
    assert_denied(e, "other.example:x:live", "write");
    let e = as_signer
        .delete("roots", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_denied(e, "roots", "change");
    as_signer
        .delete("podcert.dev:team-a:live", &DeleteParams::default())
        .await
        .unwrap();
    // The admin still deletes anything.
    as_admin
        .delete("roots", &DeleteParams::default())
        .await
        .unwrap();
    as_admin
        .delete("other.example:x:live", &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn flag_mode_create_is_limited_by_the_policy() {
    let srv = server_with(RBAC).await;
    let as_signer = ctbs(srv.client_for(&signer()));
    let pp = PostParams::default();
    as_signer
        .create(
            &pp,
            &bundle("podcert.dev:spiffe:live", Some("podcert.dev/spiffe")),
        )
        .await
        .unwrap();
    replace_bundle(&as_signer, "podcert.dev:spiffe:live")
        .await
        .unwrap();
    // RBAC cannot limit create by name: the policy refuses a bundle without signerName.
    let (code, reason, msg) = api_err(
        as_signer
            .create(&pp, &bundle("roots", None))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (403, "Forbidden"), "{msg}");
    assert!(
        msg.ends_with("denied request: the signer may only write ClusterTrustBundles whose spec.signerName is podcert.dev/spiffe"),
        "{msg}"
    );
    // A signer name under the same domain is not the flag signer's own.
    srv.load_yaml(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: wide}
rules: [{apiGroups: [certificates.k8s.io], resources: [signers], resourceNames: [podcert.dev/*], verbs: [attest]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: wide}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: wide}
subjects: [{kind: ServiceAccount, name: podcert-signer, namespace: podcert-system}]
"#,
    )
    .unwrap();
    let (code, _, msg) = api_err(
        as_signer
            .create(
                &pp,
                &bundle("podcert.dev:other:live", Some("podcert.dev/other")),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403, "{msg}");
    assert!(
        msg.contains(&format!("ValidatingAdmissionPolicy '{POLICY}'")),
        "{msg}"
    );
}

#[tokio::test]
async fn policies_are_served_and_default_to_invalid() {
    let srv = server_with("").await;
    // A policy with no reason answers 422 Invalid with "failed expression"; matchConditions
    // leave other users alone.
    srv.load_yaml(
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: no-team-b}
spec:
  matchConstraints:
    resourceRules: [{apiGroups: [""], apiVersions: [v1], resources: [configmaps], operations: [CREATE]}]
  matchConditions: [{name: not-admin, expression: "request.userInfo.username != 'admin'"}]
  validations: [{expression: "object.metadata.name != 'team-b'"}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: no-team-b}
spec: {policyName: no-team-b, validationActions: [Deny]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cm}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [create]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: cm}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cm}
subjects: [{kind: User, name: alice}]
"#,
    )
    .unwrap();
    let alice = UserInfo {
        username: "alice".into(),
        uid: String::new(),
        groups: vec!["system:authenticated".into()],
    };
    let cm = |name: &str| -> k8s_openapi::api::core::v1::ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
    };
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(srv.client_for(&alice), "team-a");
    let (code, reason, msg) = api_err(
        api.create(&PostParams::default(), &cm("team-b"))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"), "{msg}");
    assert_eq!(
        msg,
        "configmaps \"team-b\" is forbidden: ValidatingAdmissionPolicy 'no-team-b' with binding \
         'no-team-b' denied request: failed expression: object.metadata.name != 'team-b'"
    );
    api.create(&PostParams::default(), &cm("team-c"))
        .await
        .unwrap();
    let admin: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(srv.admin_client(), "team-a");
    admin
        .create(&PostParams::default(), &cm("team-b"))
        .await
        .unwrap();

    // A policy whose CEL does not parse is refused when it is written.
    let err = srv
        .load_yaml(
            r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: broken}
spec:
  matchConstraints:
    resourceRules: [{apiGroups: [""], apiVersions: [v1], resources: [configmaps], operations: [CREATE]}]
  validations: [{expression: "object.metadata.name !="}]
"#,
        )
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("spec.validations[0].expression: Invalid value"),
        "{err:#}"
    );
}

#[test]
fn the_rendered_files_carry_the_policy_and_its_binding() {
    for file in [RBAC, RBAC_CRD] {
        assert!(file.contains("kind: ValidatingAdmissionPolicy\n"));
        assert!(file.contains(&format!("policyName: {POLICY}")));
        assert!(file.contains(
            "request.userInfo.username == 'system:serviceaccount:podcert-system:podcert-signer'"
        ));
    }
}
