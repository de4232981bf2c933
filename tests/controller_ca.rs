//! CA backends of `podcert-signer run` against the emulator: files reloaded on change (bad
//! material refused, old CA kept; a replaced CA's root stays published, across a restart
//! too), a Secret bootstrapped once by racing replicas, an existing Secret (whose replaced
//! material also keeps the old root published), and a Secret that appears later.

mod e2e;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use podcert_testkit::apiserver::{ServerConfig, TestServer};
use podcert_testkit::kubelet::KubeletVersion;
use x509_parser::prelude::{FromDer, X509Certificate};

const WAIT: Duration = Duration::from_secs(30);
const BUNDLE: &str = "podcert.dev:spiffe:live";

fn ca_init(dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(["ca", "init", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.join("ca.crt")).unwrap()
}

/// Replaces a file the way a Secret volume update does: write aside, then rename over.
fn swap_in(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    // A key file others may read is refused (ca::files::read_ca_file).
    let mode = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
    std::fs::set_permissions(&tmp, mode).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn published(server: &TestServer) -> Option<String> {
    let api: Api<DynamicObject> = Api::all_with(server.admin_client(), &ctb_resource("v1"));
    api.get_opt(BUNDLE)
        .await
        .ok()
        .flatten()
        .and_then(|o| o.data["spec"]["trustBundle"].as_str().map(String::from))
}

async fn wait_published(server: &TestServer, want: &str) {
    let start = Instant::now();
    while published(server).await.as_deref().map(str::trim) != Some(want.trim()) {
        assert!(
            start.elapsed() < WAIT,
            "bundle never became the expected CA"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ders(pem_text: &str) -> Vec<Vec<u8>> {
    pem::parse_many(pem_text)
        .unwrap_or_default()
        .into_iter()
        .map(|b| b.into_contents())
        .collect()
}

/// Waits until the published bundle holds exactly these roots, in this order.
async fn wait_published_roots(server: &TestServer, want: &[&str]) {
    let want: Vec<Vec<u8>> = want.iter().flat_map(|p| ders(p)).collect();
    let start = Instant::now();
    while published(server).await.map(|p| ders(&p)).as_ref() != Some(&want) {
        assert!(
            start.elapsed() < WAIT,
            "bundle never became the expected roots: {:?}",
            published(server).await
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
        if m.contains("podcert_ca_reload_errors_total{signer=\"podcert.dev/spiffe\"} 1") {
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
    let signer = spawn_signer(
        &server,
        dir.path(),
        "signer-0",
        &[
            "--ca-secret",
            "podcert-system/podcert-signer-ca",
            "--ca-reload-interval",
            "200ms",
            "--leader-election=false",
        ],
    );
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
    let cert2 = ca_init(&dir.path().join("ca2"));
    let key2 = std::fs::read_to_string(dir.path().join("ca2/ca.key")).unwrap();
    let api: Api<Secret> = Api::namespaced(server.admin_client(), SIGNER_NS);
    let mut secret = api.get("podcert-signer-ca").await.unwrap();
    secret.data = Some(std::collections::BTreeMap::from([
        (
            "tls.crt".into(),
            k8s_openapi::ByteString(cert2.clone().into_bytes()),
        ),
        ("tls.key".into(), k8s_openapi::ByteString(key2.into_bytes())),
    ]));
    api.replace("podcert-signer-ca", &Default::default(), &secret)
        .await
        .unwrap();
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
