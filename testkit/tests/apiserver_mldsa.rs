//! Kubernetes 1.38's ML-DSA key types through HTTP, as kube-apiserver 1.38.0-beta.0 and 1.37.2
//! refuse or accept them (read from their sources): pods ask for `MLDSA44/65/87` only on 1.38
//! with the `PodCertificateMLDSA` gate (ValidatePodSpec); a request carrying an ML-DSA key in
//! its stub CSR is valid on 1.38 whatever the gate (validateStubPKCS10Request does not look at
//! it) and unknown to 1.37 (Go 1.26's x509 parses no ML-DSA key).

mod common;

use common::raw;
use podcert_testkit::apiserver::{KubeVersion, ServerConfig, TestServer};
use serde_json::{json, Value};

async fn start(version: KubeVersion, gate: bool) -> TestServer {
    let srv = TestServer::start(ServerConfig {
        version,
        pod_certificate_mldsa: gate,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    srv.load_yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-1\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: team-1\n",
    )
    .unwrap();
    srv
}

fn pod(key_type: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "team-1"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "creds", "projected": {"sources": [
                {"podCertificate": {"signerName": "example.com/s", "keyType": key_type,
                                    "credentialBundlePath": "b.pem"}}
            ]}}]
        }
    })
}

async fn post(srv: &TestServer, path: &str, body: &Value) -> common::Raw {
    raw(
        srv,
        "POST",
        path,
        Some(&srv.admin_token()),
        "application/json",
        &body.to_string(),
    )
    .await
}

const CLASSICAL: &str =
    r#"supported values: "RSA3072", "RSA4096", "ECDSAP256", "ECDSAP384", "ECDSAP521", "ED25519""#;

#[tokio::test]
async fn pods_ask_for_ml_dsa_keys_only_on_1_38_with_the_gate() {
    let field = "spec.volumes[0].projected.sources[0].podCertificate.keyType";
    for (version, gate) in [(KubeVersion::V1_38, false), (KubeVersion::V1_37, false)] {
        let srv = start(version, gate).await;
        let r = post(&srv, "/api/v1/namespaces/team-1/pods", &pod("MLDSA65")).await;
        assert_eq!(r.code, 422, "{version:?}: {}", r.body);
        let s = r.json();
        assert_eq!(s["reason"], "Invalid");
        assert_eq!(s["details"]["causes"][0]["field"], field);
        assert_eq!(
            s["message"],
            format!("Pod \"web\" is invalid: {field}: Unsupported value: \"MLDSA65\": {CLASSICAL}"),
            "{version:?}"
        );
    }
    let srv = start(KubeVersion::V1_38, true).await;
    for kt in ["MLDSA44", "MLDSA65", "MLDSA87", "ED25519"] {
        let mut p = pod(kt);
        p["metadata"]["name"] = json!(format!("web-{}", kt.to_lowercase()));
        let r = post(&srv, "/api/v1/namespaces/team-1/pods", &p).await;
        assert_eq!(r.code, 201, "{kt}: {}", r.body);
    }
    // An unknown type with the gate on lists the ML-DSA types among the supported ones.
    let r = post(&srv, "/api/v1/namespaces/team-1/pods", &pod("MLDSA128")).await;
    assert_eq!(r.code, 422, "{}", r.body);
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        msg.ends_with(r#""ED25519", "MLDSA44", "MLDSA65", "MLDSA87""#),
        "{msg}"
    );
}

#[tokio::test]
async fn the_gate_does_not_exist_before_1_38() {
    let err = TestServer::start(ServerConfig {
        version: KubeVersion::V1_37,
        pod_certificate_mldsa: true,
        ..ServerConfig::default()
    })
    .await
    .err()
    .expect("a 1.37 server has no PodCertificateMLDSA gate");
    assert!(err.to_string().contains("PodCertificateMLDSA"), "{err}");
}

fn mldsa_vector(name: &str) -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/kubelet-vectors/vectors-mldsa.json"
    );
    let all: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let v = all.into_iter().find(|v| v["name"] == name).unwrap();
    let mut o = v["object"].clone();
    let m = o["metadata"].as_object_mut().unwrap();
    for k in ["resourceVersion", "uid", "creationTimestamp", "name"] {
        m.remove(k);
    }
    m.insert("generateName".into(), json!("req-"));
    m.insert("namespace".into(), json!("team-1"));
    o
}

const PCRS: &str = "/apis/certificates.k8s.io/v1/namespaces/team-1/podcertificaterequests";

#[tokio::test]
async fn ml_dsa_requests_are_valid_on_1_38_and_unknown_to_1_37() {
    // 1.38, gate off: the request itself is valid (only pods are gated).
    let srv = start(KubeVersion::V1_38, false).await;
    for kt in ["MLDSA44", "MLDSA65", "MLDSA87"] {
        let r = post(&srv, PCRS, &mldsa_vector(&format!("{kt}-stub-v1"))).await;
        assert_eq!(r.code, 201, "{kt}: {}", r.body);
    }
    // A stub signed by another key fails CheckSignature.
    let r = post(
        &srv,
        PCRS,
        &mldsa_vector("MLDSA65-stub-signed-by-other-key"),
    )
    .await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(
        r.json()["details"]["causes"][0]["message"],
        "Invalid value: invalid signature"
    );

    let srv = start(KubeVersion::V1_37, false).await;
    let r = post(&srv, PCRS, &mldsa_vector("MLDSA65-stub-v1")).await;
    assert_eq!(r.code, 422, "{}", r.body);
    let s = r.json();
    assert_eq!(s["details"]["causes"][0]["field"], "spec.stubPKCS10Request");
    assert!(
        s["message"].as_str().unwrap().ends_with(
            "spec.stubPKCS10Request: Invalid value: unknown public key type; supported types are Ed25519, ECDSA, and RSA"
        ),
        "{}",
        s["message"]
    );
}
