//! PodCertificateRequests and ClusterTrustBundles through HTTP: the rules of `rules::*` wired
//! at the right points (creates, status writes, conversion between served versions).

mod common;

use common::{api_err, raw};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use podcert_testkit::apiserver::{KubeVersion, ServerConfig, TestServer};
use podcert_testkit::rules::UserInfo;
use serde_json::{json, Value};

fn vectors() -> Vec<Value> {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/kubelet-vectors/vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn vector(name: &str) -> Value {
    vectors().into_iter().find(|v| v["name"] == name).unwrap()
}

/// The vector's object as a kubelet would POST it: no server-set metadata, and
/// `generateName: req-` (the vectors' names carry upper-case key types, which are no valid
/// object names).
fn body(v: &Value) -> Value {
    let mut o = v["object"].clone();
    let m = o["metadata"].as_object_mut().unwrap();
    for k in ["resourceVersion", "uid", "creationTimestamp", "name"] {
        m.remove(k);
    }
    m.insert("generateName".into(), json!("req-"));
    o
}

fn pcr_api(srv: &TestServer, client: kube::Client, version: &str) -> Api<DynamicObject> {
    pcr_api_in(srv, client, version, "team-1")
}

fn pcr_api_in(
    srv: &TestServer,
    client: kube::Client,
    version: &str,
    ns: &str,
) -> Api<DynamicObject> {
    srv.load_yaml(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
    ))
    .unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("certificates.k8s.io", version, "PodCertificateRequest"),
        "podcertificaterequests",
    );
    Api::namespaced_with(client, ns, &ar)
}

async fn start(version: KubeVersion) -> TestServer {
    let srv = TestServer::start(ServerConfig {
        version,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    srv.load_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-1\n")
        .unwrap();
    srv
}

fn dynamic(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn vectors_are_accepted_or_refused_on_create_as_expected() {
    let new = start(KubeVersion::V1_37).await;
    let old = start(KubeVersion::V1_34).await;
    for v in vectors() {
        let b = body(&v);
        let version = b["apiVersion"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let srv = if version == "v1alpha1" { &old } else { &new };
        let ns = b["metadata"]["namespace"].as_str().unwrap().to_string();
        let api = pcr_api_in(srv, srv.admin_client(), &version, &ns);
        let res = api.create(&PostParams::default(), &dynamic(b)).await;
        match v["expect"].as_str().unwrap() {
            "Rejected" => {
                // pkg/apis/certificates/validation ValidatePodCertificateRequestCreate → 422
                // (or the decoder's 400 for bytes that are not even base64/DER).
                let (code, _, msg) = api_err(res.expect_err(v["name"].as_str().unwrap()));
                assert!(code == 422 || code == 400, "{}: {code} {msg}", v["name"]);
            }
            _ => {
                let made = res.unwrap_or_else(|e| panic!("{}: {e}", v["name"]));
                assert!(made.metadata.uid.is_some());
            }
        }
    }
}

#[tokio::test]
async fn invalid_pcr_create_is_422_with_causes() {
    let srv = start(KubeVersion::V1_37).await;
    let mut b = body(&vector("ED25519-stub-v1"));
    b["spec"]["maxExpirationSeconds"] = json!(60);
    let r = raw(
        &srv,
        "POST",
        "/apis/certificates.k8s.io/v1/namespaces/team-1/podcertificaterequests",
        Some(&srv.admin_token()),
        "application/json",
        &b.to_string(),
    )
    .await;
    // ValidatePodCertificateRequestCreate: maxExpirationSeconds below the 1 h minimum.
    assert_eq!(r.code, 422, "{}", r.body);
    let s = r.json();
    assert_eq!(s["reason"], "Invalid");
    assert_eq!(s["details"]["kind"], "PodCertificateRequest");
    assert_eq!(s["details"]["group"], "certificates.k8s.io");
    assert_eq!(
        s["details"]["causes"][0]["field"],
        "spec.maxExpirationSeconds"
    );
}

#[tokio::test]
async fn one_stored_object_is_served_in_every_enabled_version() {
    let srv = start(KubeVersion::V1_37).await;
    let v1 = pcr_api(&srv, srv.admin_client(), "v1");
    let made = v1
        .create(
            &PostParams::default(),
            &dynamic(body(&vector("ED25519-stub-v1"))),
        )
        .await
        .unwrap();
    let name = made.metadata.name.unwrap();
    let beta = pcr_api(&srv, srv.admin_client(), "v1beta1")
        .get(&name)
        .await
        .unwrap();
    assert_eq!(
        beta.types.unwrap().api_version,
        "certificates.k8s.io/v1beta1"
    );
    assert_eq!(beta.metadata.uid, made.metadata.uid);
    // 1.37 serves no v1alpha1.
    let alpha = pcr_api(&srv, srv.admin_client(), "v1alpha1");
    assert_eq!(api_err(alpha.get(&name).await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn pcr_update_requires_a_resource_version() {
    let srv = start(KubeVersion::V1_37).await;
    let api = pcr_api(&srv, srv.admin_client(), "v1");
    let mut made = api
        .create(
            &PostParams::default(),
            &dynamic(body(&vector("ED25519-stub-v1"))),
        )
        .await
        .unwrap();
    let name = made.metadata.name.clone().unwrap();
    made.metadata.resource_version = None;
    // podcertificaterequest strategy: AllowUnconditionalUpdate() is false, so store.go Update
    // answers "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update".
    let (code, _, msg) = api_err(
        api.replace(&name, &PostParams::default(), &made)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
    assert!(
        msg.ends_with(
            "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
        ),
        "{msg}"
    );
}

fn denied_status() -> Value {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let ts = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    json!({"conditions": [{"type": "Denied", "status": "True", "reason": "Refused", "message": "no", "lastTransitionTime": ts}]})
}

#[tokio::test]
async fn status_write_needs_sign_permission() {
    let srv = start(KubeVersion::V1_37).await;
    let api = pcr_api(&srv, srv.admin_client(), "v1");
    let made = api
        .create(
            &PostParams::default(),
            &dynamic(body(&vector("ED25519-stub-v1"))),
        )
        .await
        .unwrap();
    let name = made.metadata.name.unwrap();
    let signer = UserInfo::service_account("signer-ns", "signer");
    // The signer may update PCR status, but has no `sign` on its signer name yet.
    srv.load_yaml(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pcr-status}
rules:
- apiGroups: [certificates.k8s.io]
  resources: [podcertificaterequests, podcertificaterequests/status]
  verbs: [get, list, watch, update, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: pcr-status}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pcr-status}
subjects: [{kind: ServiceAccount, name: signer, namespace: signer-ns}]
"#,
    )
    .unwrap();
    let as_signer = pcr_api(&srv, srv.client_for(&signer), "v1");
    let patch = Patch::Merge(json!({"status": denied_status()}));
    // strategy.go StatusStrategy.ValidateUpdate: no `sign` → a Forbidden field error (422).
    let (code, reason, msg) = api_err(
        as_signer
            .patch_status(&name, &PatchParams::default(), &patch)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        msg.contains("is not permitted to \"sign\" for signer \"acceptance.podcert.test/spiffe\""),
        "{msg}"
    );
    assert_eq!(
        srv.store().count_writes(
            "certificates.k8s.io",
            "podcertificaterequests",
            Some("status"),
            "team-1",
            &name
        ),
        0
    );

    srv.load_yaml(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: signer}
rules:
- apiGroups: [certificates.k8s.io]
  resources: [signers]
  resourceNames: [acceptance.podcert.test/spiffe]
  verbs: [sign]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: signer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: signer}
subjects: [{kind: ServiceAccount, name: signer, namespace: signer-ns}]
"#,
    )
    .unwrap();
    let done = as_signer
        .patch_status(&name, &PatchParams::default(), &patch)
        .await
        .unwrap();
    assert_eq!(done.data["status"]["conditions"][0]["type"], "Denied");
    assert_eq!(
        srv.store().count_writes(
            "certificates.k8s.io",
            "podcertificaterequests",
            Some("status"),
            "team-1",
            &name
        ),
        1
    );
}

#[tokio::test]
async fn main_resource_writes_ignore_status() {
    let srv = start(KubeVersion::V1_37).await;
    let api = pcr_api(&srv, srv.admin_client(), "v1");
    let made = api
        .create(
            &PostParams::default(),
            &dynamic(body(&vector("ED25519-stub-v1"))),
        )
        .await
        .unwrap();
    let name = made.metadata.name.unwrap();
    let patched = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}, "status": denied_status()})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["a"], "b");
    assert!(
        patched.data["status"].get("conditions").is_none(),
        "{}",
        patched.data["status"]
    );
}

#[tokio::test]
async fn cleaner_deletes_old_requests() {
    let srv = TestServer::start(ServerConfig {
        cleaner_interval: std::time::Duration::from_millis(50),
        cleaner_max_age: std::time::Duration::from_secs(60),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    srv.load_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-1\n")
        .unwrap();
    let api = pcr_api(&srv, srv.admin_client(), "v1");
    let made = api
        .create(
            &PostParams::default(),
            &dynamic(body(&vector("ED25519-stub-v1"))),
        )
        .await
        .unwrap();
    let name = made.metadata.name.unwrap();
    // Two minutes later by the server clock, the request is past its one-minute max age.
    srv.set_clock_offset(time::Duration::minutes(2));
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while srv
            .store()
            .get(
                "certificates.k8s.io",
                "podcertificaterequests",
                Some("team-1"),
                &name,
            )
            .is_some()
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the cleaner deleted the request");
}

#[tokio::test]
async fn pod_deletion_collects_its_requests() {
    let srv = start(KubeVersion::V1_37).await;
    srv.load_yaml("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa-1\n  namespace: team-1\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-1\n  namespace: team-1\nspec:\n  serviceAccountName: sa-1\n  containers: [{name: c, image: i}]\n").unwrap();
    let pod = srv
        .store()
        .get("", "pods", Some("team-1"), "pod-1")
        .unwrap();
    let mut b = body(&vector("ED25519-stub-v1"));
    b["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Pod", "name": "pod-1", "uid": pod["metadata"]["uid"], "controller": true}]);
    let api = pcr_api(&srv, srv.admin_client(), "v1");
    let made = api
        .create(&PostParams::default(), &dynamic(b))
        .await
        .unwrap();
    let name = made.metadata.name.unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(srv.admin_client(), "team-1");
    pods.delete("pod-1", &Default::default()).await.unwrap();
    assert_eq!(api_err(api.get(&name).await.unwrap_err()).0, 404);
}
