//! The SPIFFE bundle endpoint (`run --bundle-endpoint`), fetched by go-spiffe v2's federation
//! client (`conformance/spiffe-interop`, built here with Go) over both profiles: `https_spiffe`
//! (served with an SVID of our own CA, verified against the bundle) and `https_web` (an
//! operator's certificate). Without Go the test prints SKIPPED and passes, unless
//! PODCERT_REQUIRE_GO=1 (CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::api::{Api, DynamicObject};
use podcert_testkit::apiserver::{ServerConfig, TestServer};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::fixtures::ca::pem_blocks;
use crate::fixtures::e2e::{ctb_resource, eventually, free_port, prepare, spawn_signer, Signer};

const WAIT: Duration = Duration::from_secs(40);
const PREVIEW: &str = "podcert.dev:spiffe:preview";

/// Builds the go-spiffe client once per test process; None when Go is missing (and allowed).
fn fetchbundle(dir: &Path) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/spiffe-interop");
    let out = dir.join("fetchbundle");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .env("GOTOOLCHAIN", "local")
        .output();
    match built {
        Ok(o) if o.status.success() => Some(out),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            assert!(
                std::env::var("PODCERT_REQUIRE_GO").as_deref() != Ok("1"),
                "building conformance/spiffe-interop failed: {why}"
            );
            eprintln!("SKIPPED: go build of conformance/spiffe-interop failed: {why}");
            None
        }
    }
}

fn fetch(bin: &Path, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(bin).args(args).output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

fn sha256_hex(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The preview bundle's roots (PEM) and sequence annotation, once published.
async fn preview(server: &TestServer) -> Option<(String, u64)> {
    let api: Api<DynamicObject> = Api::all_with(server.admin_client(), &ctb_resource("v1"));
    let o = api.get_opt(PREVIEW).await.ok()??;
    let seq = o
        .metadata
        .annotations?
        .get("podcert.dev/spiffe-sequence")?
        .parse()
        .ok()?;
    Some((o.data["spec"]["trustBundle"].as_str()?.to_string(), seq))
}

async fn start(server: &TestServer, dir: &Path, port: u16, extra: &[&str]) -> Signer {
    prepare(server, &[]);
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec![
        "--ca-secret",
        "podcert-system/podcert-signer-ca",
        "--ca-bootstrap",
        "--leader-election=false",
        "--bundle-endpoint",
    ];
    let addr: &'static str = Box::leak(addr.into_boxed_str());
    args.push(addr);
    args.extend_from_slice(extra);
    let signer = spawn_signer(server, dir, "signer-0", &args);
    signer.wait_ready(WAIT).await;
    signer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_spiffe_fetches_the_bundle_over_https_spiffe() {
    let dir = tempfile::tempdir().unwrap();
    let Some(bin) = fetchbundle(dir.path()) else {
        return;
    };
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let port = free_port();
    let _signer = start(&server, dir.path(), port, &[]).await;
    let (pem, sequence) =
        eventually(WAIT, || "no preview bundle".into(), || preview(&server)).await;
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(&bundle, &pem).unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let args = [
        "-url",
        &url,
        "-td",
        "cluster.local",
        "-profile",
        "spiffe",
        "-bundle",
        bundle.to_str().unwrap(),
        "-endpoint-id",
        "spiffe://cluster.local/podcert-signer/bundle-endpoint",
    ];
    let got = eventually(
        WAIT,
        || "go-spiffe never fetched the bundle".into(),
        || async { fetch(&bin, &args).ok() },
    )
    .await;
    assert_eq!(got["trust_domain"], "cluster.local");
    assert_eq!(got["sequence"], sequence, "{got}");
    assert_eq!(got["refresh_hint_seconds"], 300.0, "{got}");
    let want: Vec<String> = pem_blocks(&pem).iter().map(|d| sha256_hex(d)).collect();
    let have: Vec<String> = serde_json::from_value(got["x509_authorities"].clone()).unwrap();
    assert_eq!(have, want);
    // The endpoint's SVID is checked for its SPIFFE ID: another ID is refused.
    let mut wrong = args;
    wrong[9] = "spiffe://cluster.local/someone-else";
    let e = fetch(&bin, &wrong).unwrap_err();
    assert!(
        e.contains("someone-else") || e.contains("unexpected ID"),
        "{e}"
    );
    // And a bundle of another CA does not verify it.
    let other = dir.path().join("other");
    crate::fixtures::ca_init(&other);
    let mut foreign = args;
    let other_ca = other.join("ca.crt");
    foreign[7] = other_ca.to_str().unwrap();
    let e = fetch(&bin, &foreign).unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_spiffe_fetches_the_bundle_over_https_web_and_the_sequence_follows_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let Some(bin) = fetchbundle(dir.path()) else {
        return;
    };
    // The operator's serving certificate: a leaf for 127.0.0.1 from a web CA of its own.
    let web_ca = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let web_ca_cert = ca_params.self_signed(&web_ca).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, web_ca);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf_params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let (cert, key, roots) = (
        dir.path().join("web.crt"),
        dir.path().join("web.key"),
        dir.path().join("web-ca.crt"),
    );
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&roots, web_ca_cert.pem()).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let port = free_port();
    let _signer = start(
        &server,
        dir.path(),
        port,
        &[
            "--bundle-endpoint-cert",
            cert.to_str().unwrap(),
            "--bundle-endpoint-key",
            key.to_str().unwrap(),
            "--bundle-endpoint-refresh-hint",
            "1m",
            "--ca-propagation-delay",
            "1h",
        ],
    )
    .await;
    let url = format!("https://127.0.0.1:{port}");
    let args = [
        "-url",
        &url,
        "-td",
        "cluster.local",
        "-profile",
        "web",
        "-roots",
        roots.to_str().unwrap(),
    ];
    let (pem, sequence) =
        eventually(WAIT, || "no preview bundle".into(), || preview(&server)).await;
    let got = eventually(
        WAIT,
        || "go-spiffe never fetched the bundle".into(),
        || async { fetch(&bin, &args).ok() },
    )
    .await;
    assert_eq!(got["sequence"], sequence, "{got}");
    assert_eq!(got["refresh_hint_seconds"], 60.0, "{got}");
    assert_eq!(
        got["x509_authorities"].as_array().unwrap().len(),
        pem_blocks(&pem).len()
    );

    // A rotation prepares the next CA: its root is served at once (a peer must hold it before
    // it signs), with a higher sequence.
    crate::fixtures::e2e::ca_rotate(&server, dir.path(), &[]);
    let after = eventually(
        WAIT,
        || "the next root was never served".into(),
        || async {
            let v = fetch(&bin, &args).ok()?;
            (v["x509_authorities"].as_array()?.len() == 2).then_some(v)
        },
    )
    .await;
    let later = after["sequence"].as_u64().unwrap();
    assert!(later > sequence, "sequence {sequence} -> {later}");
    server.shutdown().await;
}
