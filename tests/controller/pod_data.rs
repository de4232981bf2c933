//! Issue 18: policies that read the request's pod (labels in the SPIFFE ID, DNS names from the
//! Services that select the pod), end to end: `podcert-signer run --crd-signers` under the
//! chart's CRD-mode RBAC (crdSigners.podData: get pods, list/watch services), against the
//! emulator serving Pods and Services. The forgeries: a Service of another namespace, a
//! Service whose selector the pod matches only in part, a request whose podUID is not the
//! pod's, a label template on a pod without the label; and a pod created before its Service.

use std::path::Path;
use std::time::Duration;

use crate::fixtures::e2e::*;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DynamicObject, PostParams};
use podcert_k8s::crd::PodCertificateSigner;
use podcert_testkit::apiserver::{KubeVersion, ServerConfig, TestServer};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
const SIGNER_NAME: &str = "podcert.dev/svc";

fn repo_file(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const SIGNER_OBJECT: &str = r#"
apiVersion: podcert.dev/v1alpha1
kind: PodCertificateSigner
metadata: {name: svc}
spec:
  signerName: podcert.dev/svc
  trustDomain: svc.example.org
  spiffeID: "ns/{namespace}/app/{pod.labels.app}"
  dnsNames:
    fromServices: {required: true, wait: 40s}
  ca: {secret: {name: team-ca, bootstrap: true}}
"#;

async fn create<T>(api: &Api<T>, yaml: &str) -> T
where
    T: Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let obj: T = serde_saphyr::from_str(yaml).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("creating {yaml}: {e}"))
}

async fn pod(server: &TestServer, ns: &str, name: &str, labels: &str) -> String {
    let api: Api<Pod> = Api::namespaced(server.admin_client(), ns);
    let p = create(
        &api,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {labels}}}\n\
             spec: {{containers: [{{name: app, image: registry.example/app:1}}]}}\n"
        ),
    )
    .await;
    p.metadata.uid.unwrap()
}

async fn service(server: &TestServer, ns: &str, name: &str, selector: &str) {
    let api: Api<Service> = Api::namespaced(server.admin_client(), ns);
    create(
        &api,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n\
             spec: {{selector: {selector}, ports: [{{port: 443}}]}}\n"
        ),
    )
    .await;
}

/// A Go-built request (a stub CSR: unlike a proof of possession it does not sign the pod UID,
/// so the UID can be set) for pod `ns`/`pod_name` with `pod_uid`, and user annotations.
async fn request(
    server: &TestServer,
    name: &str,
    ns: &str,
    pod_name: &str,
    pod_uid: &str,
    annotations: Value,
) -> String {
    let v = vectors()
        .into_iter()
        .find(|v| v["name"] == "ED25519-stub-v1")
        .unwrap();
    let mut obj = v["object"].clone();
    obj["spec"]["signerName"] = json!(SIGNER_NAME);
    obj["spec"]["serviceAccountName"] = json!("default");
    obj["spec"]["podName"] = json!(pod_name);
    obj["spec"]["podUID"] = json!(pod_uid);
    if !annotations.is_null() {
        obj["spec"]["unverifiedUserAnnotations"] = annotations;
    }
    create_request(server, obj, ns, name).await
}

fn message(obj: &Value) -> String {
    obj["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_names_and_pod_labels_are_read_from_the_cluster_and_checked() {
    let server = TestServer::start(ServerConfig {
        version: KubeVersion::V1_37,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    prepare(&server, &["team-a", "team-b"]);
    server
        .load_yaml(&repo_file("crds/podcertificatesigner.yaml"))
        .unwrap();
    server
        .load_yaml(&repo_file("charts/podcert-signer/rendered/rbac-crd.yaml"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let signer = spawn_run(
        &server,
        dir.path(),
        "signer-0",
        &[
            "--crd-signers",
            "--signer-domain",
            "podcert.dev",
            "--namespace",
            SIGNER_NS,
            "--leader-election=false",
        ],
    );
    signer.wait_ready(WAIT).await;
    let obj: PodCertificateSigner = serde_saphyr::from_str(SIGNER_OBJECT).unwrap();
    Api::<PodCertificateSigner>::all(server.admin_client())
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();

    service(&server, "team-a", "web", "{app: web}").await;
    service(&server, "team-a", "web-canary", "{app: web, track: canary}").await;
    // Another namespace's Service selecting the same labels.
    service(&server, "team-b", "web", "{app: web}").await;
    let web = pod(&server, "team-a", "web-0", "{app: web}").await;

    // Issued: the ID from the pod's label, the names of team-a/web only (web-canary's selector
    // has a key the pod lacks; team-b/web is another namespace's).
    let v = request(&server, "r1", "team-a", "web-0", &web, Value::Null).await;
    let r1 = wait_terminal(&server, &v, "team-a", "r1", WAIT).await;
    assert_eq!(
        condition(&r1),
        ("Issued".into(), "Issued".into()),
        "{}\n{}",
        message(&r1),
        signer.logs()
    );
    assert_eq!(
        sans(&r1),
        (
            vec!["spiffe://svc.example.org/ns/team-a/app/web".to_string()],
            vec![
                "web.team-a.svc".to_string(),
                "web.team-a.svc.cluster.local".to_string()
            ]
        )
    );

    // A request whose podUID is not the pod's: its pod is gone; never issued.
    let v = request(
        &server,
        "r2",
        "team-a",
        "web-0",
        "0b6f3c4e-0000-4d2a-9b1e-000000000bad",
        Value::Null,
    )
    .await;
    let r2 = wait_terminal(&server, &v, "team-a", "r2", WAIT).await;
    assert_eq!(condition(&r2), ("Denied".into(), "PodUIDMismatch".into()));

    // Naming a Service whose selector the pod matches only in part.
    let v = request(
        &server,
        "r3",
        "team-a",
        "web-0",
        &web,
        json!({"podcert.dev/services": "web-canary"}),
    )
    .await;
    let r3 = wait_terminal(&server, &v, "team-a", "r3", WAIT).await;
    assert_eq!(
        condition(&r3),
        ("Denied".into(), "ServiceDoesNotSelectPod".into())
    );

    // A pod without the label the SPIFFE ID uses: denied naming it, without waiting for a
    // Service (no Service selects it either).
    let bare = pod(&server, "team-a", "bare-0", "{tier: batch}").await;
    let v = request(&server, "r4", "team-a", "bare-0", &bare, Value::Null).await;
    let r4 = wait_terminal(&server, &v, "team-a", "r4", WAIT).await;
    assert_eq!(condition(&r4), ("Denied".into(), "MissingPodLabel".into()));
    assert!(message(&r4).contains("\"app\""), "{}", message(&r4));

    // A pod created before its Service: pending (not denied) until the Service exists.
    let late = pod(&server, "team-a", "late-0", "{app: late}").await;
    let v = request(&server, "r5", "team-a", "late-0", &late, Value::Null).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let api: Api<DynamicObject> =
        Api::namespaced_with(server.admin_client(), "team-a", &pcr_resource(&v));
    let pending = serde_json::to_value(api.get("r5").await.unwrap()).unwrap();
    assert!(
        pending["status"]["conditions"].is_null(),
        "decided before its Service existed: {pending}"
    );
    service(&server, "team-a", "late", "{app: late}").await;
    let r5 = wait_terminal(&server, &v, "team-a", "r5", WAIT).await;
    assert_eq!(
        condition(&r5),
        ("Issued".into(), "Issued".into()),
        "{}",
        message(&r5)
    );
    assert_eq!(
        sans(&r5).1,
        vec!["late.team-a.svc", "late.team-a.svc.cluster.local"]
    );
}
