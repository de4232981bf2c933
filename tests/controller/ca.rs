//! CA backends of `podcert-signer run` against the emulator: files reloaded on change (bad
//! material refused, old CA kept; a replaced CA's root stays published, across a restart
//! too), a Secret bootstrapped once by racing replicas, an existing Secret (whose replaced
//! material also keeps the old root published), and a Secret that appears later. A malformed
//! rotation state is logged without the key; only roots the signer recorded publishing are
//! kept, until their recorded end; an emergency drops an external CA's earlier root.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fixtures::ca::{body_lines, pem_blocks};
use crate::fixtures::e2e::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use podcert_testkit::apiserver::{ServerConfig, TestServer};
use podcert_testkit::kubelet::KubeletVersion;
use x509_parser::prelude::{FromDer, X509Certificate};

const WAIT: Duration = Duration::from_secs(30);

/// Replaces a file the way a Secret volume update does: write aside, then rename over.
fn swap_in(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    // A key file others may read is refused (ca::files::read_ca_file).
    let mode = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
    std::fs::set_permissions(&tmp, mode).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn wait_published(server: &TestServer, want: &str) {
    let start = Instant::now();
    while published_bundle(server).await.as_deref().map(str::trim) != Some(want.trim()) {
        assert!(
            start.elapsed() < WAIT,
            "bundle never became the expected CA"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the published bundle holds exactly these roots, in this order.
async fn wait_published_roots(server: &TestServer, want: &[&str]) {
    let want: Vec<Vec<u8>> = want.iter().flat_map(|p| pem_blocks(p)).collect();
    let start = Instant::now();
    while published_bundle(server)
        .await
        .map(|p| pem_blocks(&p))
        .as_ref()
        != Some(&want)
    {
        assert!(
            start.elapsed() < WAIT,
            "bundle never became the expected roots: {:?}",
            published_bundle(server).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn bundle_writes(server: &TestServer) -> usize {
    server
        .store()
        .writes()
        .iter()
        .filter(|w| w.resource == "clustertrustbundles")
        .count()
}

fn ski(pem_text: &str) -> Vec<u8> {
    let der = pem::parse(pem_text).unwrap().into_contents();
    let (_, c) = X509Certificate::from_der(&der).unwrap();
    let (_, ext) = c
        .extensions()
        .iter()
        .map(|e| ((), e))
        .find(|(_, e)| e.oid.to_id_string() == "2.5.29.14")
        .unwrap();
    ext.value.to_vec()
}

fn aki_of_leaf(chain: &str) -> Vec<u8> {
    let der = pem::parse_many(chain).unwrap()[0].contents().to_vec();
    let (_, c) = X509Certificate::from_der(&der).unwrap();
    let ext = c
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "2.5.29.35")
        .unwrap();
    ext.value.to_vec()
}

/// The leaves' issuer key id, from each request's status.
async fn issuer_key_ids(server: &TestServer, prefix: &str) -> Vec<Vec<u8>> {
    let api: Api<DynamicObject> = Api::all_with(server.admin_client(), &pcr_resource("v1"));
    let list = api.list(&Default::default()).await.unwrap();
    list.items
        .iter()
        .filter(|o| {
            o.data["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| n.starts_with(prefix))
        })
        .filter_map(|o| {
            o.data["status"]["certificateChain"]
                .as_str()
                .map(aki_of_leaf)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_reloaded_and_bad_material_is_refused() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    let a = ca_init(&dir.path().join("a"));
    let b = ca_init(&dir.path().join("b"));
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    for f in ["ca.crt", "ca.key"] {
        std::fs::copy(dir.path().join("a").join(f), live.join(f)).unwrap();
    }
    let cert = live.join("ca.crt").display().to_string();
    let key = live.join("ca.key").display().to_string();
    let signer = spawn_signer(
        &server,
        dir.path(),
        "signer-0",
        &[
            "--ca-cert",
            &cert,
            "--ca-key",
            &key,
            "--ca-reload-interval",
            "200ms",
            "--leader-election=false",
        ],
    );
    signer.wait_ready(WAIT).await;
    wait_published(&server, &a).await;
    let first = kubelets(&server, KubeletVersion::V1_37, 2, "a", |_| {}).await;
    assert_eq!(first.wait_settled(WAIT).await.unwrap().issued, 2);
    // (the AKI extension's DER wraps the key id; compare by containment)
    let ski_a = ski(&a);
    assert!(issuer_key_ids(&server, "a-")
        .await
        .iter()
        .all(|k| k.windows(20).any(|w| ski_a.ends_with(w))));

    // The mounted files change: key first, then certificate (a moment where they mismatch).
    swap_in(
        &live.join("ca.key"),
        &std::fs::read(dir.path().join("b/ca.key")).unwrap(),
    );
    swap_in(&live.join("ca.crt"), b.as_bytes());
    // The new CA signs at once; the old root stays published for the leaves it signed.
    wait_published_roots(&server, &[&b, &a]).await;
    let second = kubelets(&server, KubeletVersion::V1_37, 2, "b", |_| {}).await;
    assert_eq!(second.wait_settled(WAIT).await.unwrap().issued, 2);
    let ski_b = ski(&b);
    assert!(issuer_key_ids(&server, "b-")
        .await
        .iter()
        .all(|k| k.windows(20).any(|w| ski_b.ends_with(w))));

    // Garbage is refused loudly; the previous CA keeps signing and stays published.
    swap_in(
        &live.join("ca.crt"),
        b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    );
    let start = Instant::now();
    loop {
        let (_, m) = signer.get("/metrics").await;
        if m.contains("podcert_ca_reload_errors_total{signer_name=\"podcert.dev/spiffe\"} 1") {
            break;
        }
        assert!(start.elapsed() < WAIT, "bad CA not reported:\n{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        signer.logs().contains("new CA material refused"),
        "{}",
        signer.logs()
    );
    wait_published_roots(&server, &[&b, &a]).await;
    let third = kubelets(&server, KubeletVersion::V1_37, 2, "a", |c| {
        c.name_prefix = "c".into()
    })
    .await;
    assert_eq!(third.wait_settled(WAIT).await.unwrap().issued, 2);

    // A restart keeps the old root: the new process finds it in the published bundle (the
    // files hold only the new CA) and keeps it, so the bundle is never rewritten without it.
    swap_in(&live.join("ca.crt"), b.as_bytes());
    let writes = bundle_writes(&server);
    drop(signer);
    let signer = spawn_signer(
        &server,
        dir.path(),
        "signer-1",
        &[
            "--ca-cert",
            &cert,
            "--ca-key",
            &key,
            "--ca-reload-interval",
            "200ms",
            "--leader-election=false",
        ],
    );
    signer.wait_ready(WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_published_roots(&server, &[&b, &a]).await;
    assert_eq!(
        bundle_writes(&server),
        writes,
        "the bundle was not rewritten"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_replicas_bootstrap_one_ca_secret() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--ca-secret",
        "podcert-system/podcert-signer-ca",
        "--ca-bootstrap",
        "--leader-election=true",
        "--leader-election-namespace",
        "podcert-system",
        "--ca-reload-interval",
        "300ms",
    ];
    let r0 = spawn_signer(&server, dir.path(), "replica-0", &args);
    let r1 = spawn_signer(&server, dir.path(), "replica-1", &args);
    r0.wait_ready(WAIT).await;
    r1.wait_ready(WAIT).await;
    let creates = server
        .store()
        .writes()
        .iter()
        .filter(|w| w.resource == "secrets" && w.name == "podcert-signer-ca" && w.verb == "create")
        .count();
    assert_eq!(creates, 1, "exactly one replica creates the CA Secret");
    let fp = |logs: String| {
        logs.lines()
            .find(|l| l.contains("CA loaded"))
            .and_then(|l| l.split("fingerprint=").nth(1))
            .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
    };
    let (f0, f1) = (fp(r0.logs()), fp(r1.logs()));
    assert!(
        f0.is_some() && f0 == f1,
        "both replicas sign with the same CA: {f0:?} {f1:?}\n{}\n{}",
        r0.logs(),
        r1.logs()
    );
    let secret: Secret = Api::namespaced(server.admin_client(), SIGNER_NS)
        .get("podcert-signer-ca")
        .await
        .unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.unwrap();
    assert!(data.contains_key("tls.crt") && data.contains_key("tls.key"));
    let fleet = kubelets(&server, KubeletVersion::V1_37, 3, "e2e", |_| {}).await;
    assert_eq!(fleet.wait_settled(WAIT).await.unwrap().issued, 3);
    let ca_pem = String::from_utf8(data["tls.crt"].0.clone()).unwrap();
    wait_published(&server, &ca_pem).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_secret_is_used_and_a_missing_one_waited_for() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    let cert = ca_init(&dir.path().join("ca"));
    let key = std::fs::read_to_string(dir.path().join("ca/ca.key")).unwrap();
    let signer = spawn_external_secret_signer(&server, dir.path());
    // Without the Secret (and without --ca-bootstrap) the signer runs but is not ready.
    let start = Instant::now();
    loop {
        let (code, body) = signer.get("/readyz").await;
        if code == 503 {
            assert!(body.contains("ca-loaded"), "{body}");
            break;
        }
        assert!(start.elapsed() < WAIT, "readyz never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    server
        .load_yaml(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: podcert-signer-ca\n  namespace: podcert-system\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
            b64(&cert),
            b64(&key)
        ))
        .unwrap();
    signer.wait_ready(WAIT).await;
    wait_published(&server, &cert).await;
    let fleet = kubelets(&server, KubeletVersion::V1_37, 2, "e2e", |_| {}).await;
    assert_eq!(fleet.wait_settled(WAIT).await.unwrap().issued, 2);

    // The owner (cert-manager, Vault...) replaces the material: the new CA signs at once, the
    // old root stays published, and the change is recorded as an Event on the Secret.
    let cert2 = replace_secret_material(&server, &dir.path().join("ca2")).await;
    wait_published_roots(&server, &[&cert2, &cert]).await;
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(server.admin_client(), SIGNER_NS);
    let start = Instant::now();
    while !events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .any(|e| e.reason.as_deref() == Some("CAExternalChange"))
    {
        assert!(start.elapsed() < WAIT, "no CAExternalChange event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.shutdown().await;
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_rotation_state_is_logged_without_the_key() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    let cert = ca_init(&dir.path().join("ca"));
    let key = std::fs::read_to_string(dir.path().join("ca/ca.key")).unwrap();
    let key_json = serde_json::Value::String(key.clone()).to_string();
    // rotation.json whose values hold the key: serde_json's own message would quote it.
    let shapes = [
        format!("{{\"version\": 1, \"active\": {key_json}}}"),
        format!("{{\"version\": {key_json}}}"),
        format!("{{\"version\": 1, \"active\": {{\"fingerprintSha256\": {key_json}, \"origin\": \"external\", \"certPem\": \"x\", \"anchorsPem\": [], \"notBefore\": \"2020-01-01T00:00:00Z\", \"notAfter\": \"2020-01-01T00:00:00Z\", \"createdAt\": \"2020-01-01T00:00:00Z\", \"publishedAt\": \"2020-01-01T00:00:00Z\"}}}}"),
    ];
    let secret_yaml = |state: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: podcert-signer-ca\n  namespace: podcert-system\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n  rotation.json: {}\n",
            b64(&cert),
            b64(&key),
            b64(state)
        )
    };
    server.load_yaml(&secret_yaml(&shapes[0])).unwrap();
    let signer = spawn_external_secret_signer(&server, dir.path());
    let refusals = |logs: &str| logs.matches("CA Secret content refused").count();
    let api: Api<Secret> = Api::namespaced(server.admin_client(), SIGNER_NS);
    for (i, shape) in shapes.iter().enumerate() {
        if i > 0 {
            let mut s = api.get("podcert-signer-ca").await.unwrap();
            s.data.as_mut().unwrap().insert(
                "rotation.json".into(),
                k8s_openapi::ByteString(shape.clone().into_bytes()),
            );
            api.replace("podcert-signer-ca", &Default::default(), &s)
                .await
                .unwrap();
        }
        eventually(
            WAIT,
            || format!("refusal {} never logged:\n{}", i + 1, signer.logs()),
            || async { (refusals(&signer.logs()) > i).then_some(()) },
        )
        .await;
    }
    let logs = signer.logs();
    for line in body_lines(&key) {
        assert!(
            !logs.contains(&line),
            "the CA key appeared in the log:\n{logs}"
        );
    }
    assert!(!logs.contains("PRIVATE KEY"), "{logs}");
    // The error is still logged, with its category and position.
    assert!(
        logs.contains("rotation.json is not a valid rotation state: a value has the wrong type"),
        "{logs}"
    );
    assert!(logs.contains("line 1, column"), "{logs}");
    assert!(logs.contains("malformed fingerprint"), "{logs}");
    let (code, _) = signer.get("/readyz").await;
    assert_eq!(code, 503, "a refused CA does not sign");
    server.shutdown().await;
}

/// The record of this signer's published roots on its ClusterTrustBundle.
async fn retained(server: &TestServer) -> Vec<(String, Option<String>)> {
    let api: Api<DynamicObject> = Api::all_with(server.admin_client(), &ctb_resource("v1"));
    let Some(obj) = api.get_opt(BUNDLE).await.unwrap() else {
        return Vec::new();
    };
    let text = obj
        .metadata
        .annotations
        .unwrap_or_default()
        .get("podcert.dev/retained-roots")
        .cloned()
        .unwrap_or_default();
    let list: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
    list.iter()
        .map(|e| {
            (
                e["sha256"].as_str().unwrap_or("").to_string(),
                e["retainUntil"].as_str().map(String::from),
            )
        })
        .collect()
}

fn sha256_of(pem_text: &str) -> String {
    use sha2::{Digest, Sha256};
    let der = pem::parse(pem_text).unwrap().into_contents();
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn admin_ca(server: &TestServer, dir: &Path, args: &[&str]) -> std::process::Output {
    let kubeconfig = dir.join("admin.kubeconfig");
    server
        .write_kubeconfig(&kubeconfig, &podcert_testkit::rules::UserInfo::admin())
        .unwrap();
    Command::new(BIN)
        .args(["ca", "rotate"])
        .args(args)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_roots_this_signer_published_are_kept_and_only_until_their_recorded_end() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    let a = ca_init(&dir.path().join("a"));
    let b = ca_init(&dir.path().join("b"));
    let unrelated = ca_init(&dir.path().join("unrelated"));
    // A still-valid root of some earlier, unrelated CA is in the bundle when the signer starts.
    server
        .load_yaml(&format!(
            "apiVersion: certificates.k8s.io/v1\nkind: ClusterTrustBundle\nmetadata:\n  name: {BUNDLE}\n  labels:\n    app.kubernetes.io/managed-by: podcert-signer\nspec:\n  signerName: podcert.dev/spiffe\n  trustBundle: {}\n",
            serde_json::Value::String(unrelated.clone())
        ))
        .unwrap();
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    for f in ["ca.crt", "ca.key"] {
        std::fs::copy(dir.path().join("a").join(f), live.join(f)).unwrap();
    }
    let cert = live.join("ca.crt").display().to_string();
    let key = live.join("ca.key").display().to_string();
    let args = [
        "--ca-cert",
        &cert,
        "--ca-key",
        &key,
        "--ca-reload-interval",
        "200ms",
        "--leader-election=false",
    ];
    let signer = spawn_signer(&server, dir.path(), "signer-0", &args);
    signer.wait_ready(WAIT).await;
    // Not adopted: it leaves the bundle at once.
    wait_published_roots(&server, &[&a]).await;
    assert_eq!(retained(&server).await, vec![(sha256_of(&a), None)]);

    // The files change: a's root stays, recorded with its retention end.
    swap_in(
        &live.join("ca.key"),
        &std::fs::read(dir.path().join("b/ca.key")).unwrap(),
    );
    swap_in(&live.join("ca.crt"), b.as_bytes());
    wait_published_roots(&server, &[&b, &a]).await;
    let record = eventually(
        WAIT,
        || "a's retention end never recorded".into(),
        || async {
            let r = retained(&server).await;
            (r.len() == 2 && r[1].1.is_some()).then_some(r)
        },
    )
    .await;
    assert_eq!(record[0], (sha256_of(&b), None));
    assert_eq!(record[1].0, sha256_of(&a));

    // A restart keeps a's root with the same end: read from the record, not restarted.
    drop(signer);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let signer = spawn_signer(&server, dir.path(), "signer-1", &args);
    signer.wait_ready(WAIT).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    wait_published_roots(&server, &[&b, &a]).await;
    assert_eq!(retained(&server).await, record, "the retention end moved");

    // Files mode: an emergency drop through the trust bundle removes a's root at once. The
    // root of the CA that signs now cannot be dropped this way.
    let out = admin_ca(
        &server,
        dir.path(),
        &[
            "--trust-bundle",
            BUNDLE,
            "--emergency",
            "--fingerprint",
            &sha256_of(&b),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("replace its material"), "{err}");
    let out = admin_ca(
        &server,
        dir.path(),
        &[
            "--trust-bundle",
            BUNDLE,
            "--emergency",
            "--fingerprint",
            &sha256_of(&a),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_published_roots(&server, &[&b]).await;
    assert!(
        signer.logs().contains("CA") && signer.logs().contains("emergency"),
        "{}",
        signer.logs()
    );
    // Handled once: a restart neither brings the root back nor refuses the request again.
    drop(signer);
    let signer = spawn_signer(&server, dir.path(), "signer-2", &args);
    signer.wait_ready(WAIT).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    wait_published_roots(&server, &[&b]).await;
    assert!(!signer.logs().contains("refused"), "{}", signer.logs());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_drops_an_earlier_root_of_an_external_secret_at_once() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    let cert = ca_init(&dir.path().join("ca"));
    let key = std::fs::read_to_string(dir.path().join("ca/ca.key")).unwrap();
    server
        .load_yaml(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: podcert-signer-ca\n  namespace: podcert-system\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
            b64(&cert),
            b64(&key)
        ))
        .unwrap();
    let signer = spawn_external_secret_signer(&server, dir.path());
    signer.wait_ready(WAIT).await;
    wait_published(&server, &cert).await;
    // The owner replaces the material; the old root stays published.
    let cert2 = replace_secret_material(&server, &dir.path().join("ca2")).await;
    wait_published_roots(&server, &[&cert2, &cert]).await;

    let secret_arg = format!("{SIGNER_NS}/podcert-signer-ca");
    // The active external CA cannot be dropped (its owner replaces it), nor rotated.
    let out = admin_ca(
        &server,
        dir.path(),
        &[
            "--secret",
            &secret_arg,
            "--emergency",
            "--fingerprint",
            &sha256_of(&cert2),
        ],
    );
    assert!(!out.status.success());
    let out = admin_ca(&server, dir.path(), &["--secret", &secret_arg]);
    assert!(!out.status.success());
    // The old root, compromised: gone from the bundle at once, with a Warning Event.
    let out = admin_ca(
        &server,
        dir.path(),
        &[
            "--secret",
            &secret_arg,
            "--emergency",
            "--fingerprint",
            &sha256_of(&cert),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("EMERGENCY") && text.contains(&sha256_of(&cert)),
        "{text}"
    );
    wait_published_roots(&server, &[&cert2]).await;
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(server.admin_client(), SIGNER_NS);
    eventually(
        WAIT,
        || "no CAEmergencyDropped event".into(),
        || async {
            events
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .iter()
                .any(|e| e.reason.as_deref() == Some("CAEmergencyDropped"))
                .then_some(())
        },
    )
    .await;
    // Signing goes on with the new CA.
    let fleet = kubelets(&server, KubeletVersion::V1_37, 1, "e2e", |_| {}).await;
    assert_eq!(fleet.wait_settled(WAIT).await.unwrap().issued, 1);
    server.shutdown().await;
}

/// Plays the Secret's owner (cert-manager, Vault...): a fresh CA in `dir` replaces the
/// material of `podcert-signer-ca`. Returns the new certificate PEM.
async fn replace_secret_material(server: &TestServer, dir: &Path) -> String {
    let cert = ca_init(dir);
    let key = std::fs::read_to_string(dir.join("ca.key")).unwrap();
    let api: Api<Secret> = Api::namespaced(server.admin_client(), SIGNER_NS);
    let mut secret = api.get("podcert-signer-ca").await.unwrap();
    secret.data = Some(std::collections::BTreeMap::from([
        (
            "tls.crt".into(),
            k8s_openapi::ByteString(cert.clone().into_bytes()),
        ),
        ("tls.key".into(), k8s_openapi::ByteString(key.into_bytes())),
    ]));
    api.replace("podcert-signer-ca", &Default::default(), &secret)
        .await
        .unwrap();
    cert
}

/// One replica reading its CA from the externally managed Secret `podcert-signer-ca` (no
/// bootstrap), polled every 200 ms.
fn spawn_external_secret_signer(server: &TestServer, dir: &Path) -> Signer {
    spawn_signer(
        server,
        dir,
        "signer-0",
        &[
            "--ca-secret",
            "podcert-system/podcert-signer-ca",
            "--ca-reload-interval",
            "200ms",
            "--leader-election=false",
        ],
    )
}
