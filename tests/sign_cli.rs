//! The stable command line: `sign`, `ca init` and `inspect` as a user (or a script) calls them.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_podcert-signer");
const SIGNER: &str = "acceptance.podcert.test/spiffe";

fn vector(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/kubelet-vectors/vectors.json");
    let all: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    all.into_iter().find(|v| v["name"] == name).unwrap()["object"].clone()
}

fn ca_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["ca", "init", "--out"])
        .arg(d.path().join("ca"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

fn sign(dir: &tempfile::TempDir, stdin: &[u8]) -> Output {
    let ca = dir.path().join("ca");
    let mut child = Command::new(BIN)
        .arg("sign")
        .arg("--ca-cert")
        .arg(ca.join("ca.crt"))
        .arg("--ca-key")
        .arg(ca.join("ca.key"))
        .args(["--trust-domain", "cluster.local", "--signer-name", SIGNER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// A failure must be one clear line on stderr, a non-zero exit, and never a panic.
fn assert_one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("podcert-signer: error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn sign_prints_the_object_with_status_and_keeps_unknown_fields() {
    let dir = ca_dir();
    let mut obj = vector("ECDSAP256-stub-v1");
    obj["metadata"]["labels"] = serde_json::json!({"team": "a"});
    obj["spec"]["someFutureField"] = serde_json::json!({"x": 1});
    let out = sign(&dir, serde_json::to_string(&obj).unwrap().as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["status"]["conditions"][0]["type"], "Issued");
    assert_eq!(got["spec"]["someFutureField"]["x"], 1);
    assert_eq!(got["metadata"]["labels"]["team"], "a");
    assert_eq!(
        got["spec"]["stubPKCS10Request"],
        obj["spec"]["stubPKCS10Request"]
    );
}

#[test]
fn sign_accepts_yaml_and_exits_zero_on_denial() {
    let dir = ca_dir();
    let yaml = serde_yaml::to_string(&vector("unknown-user-annotation")).unwrap();
    let out = sign(&dir, yaml.as_bytes());
    assert!(out.status.success());
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["status"]["conditions"][0]["type"], "Denied");
    assert_eq!(
        got["status"]["conditions"][0]["reason"],
        "UnknownUserAnnotation"
    );
    assert!(got["status"].get("certificateChain").is_none());
}

#[test]
fn sign_refuses_bad_input_with_one_clear_line() {
    let dir = ca_dir();
    assert_one_line_error(&sign(&dir, b"{ not json"), "PodCertificateRequest");
    assert_one_line_error(&sign(&dir, b""), "PodCertificateRequest");
    assert_one_line_error(
        &sign(
            &dir,
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#,
        ),
        "ConfigMap",
    );
    assert_one_line_error(&sign(&dir, b"[1, 2, 3]"), "PodCertificateRequest");

    let mut truncated = vector("ED25519-pop-v1beta1");
    let pop = truncated["spec"]["proofOfPossession"]
        .as_str()
        .unwrap()
        .to_string();
    truncated["spec"]["proofOfPossession"] = Value::String(pop[..pop.len() - 3].to_string());
    assert_one_line_error(
        &sign(&dir, serde_json::to_string(&truncated).unwrap().as_bytes()),
        "spec.proofOfPossession",
    );

    let mut wrong_version = vector("ED25519-pop-v1beta1");
    wrong_version["apiVersion"] = Value::String("certificates.k8s.io/v2".into());
    assert_one_line_error(
        &sign(
            &dir,
            serde_json::to_string(&wrong_version).unwrap().as_bytes(),
        ),
        "apiVersion",
    );
}

#[test]
fn sign_refuses_a_missing_or_wrong_ca() {
    let dir = ca_dir();
    let out = Command::new(BIN)
        .args([
            "sign",
            "--ca-cert",
            "/nonexistent/ca.crt",
            "--ca-key",
            "/nonexistent/ca.key",
        ])
        .args(["--trust-domain", "td", "--signer-name", SIGNER])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_one_line_error(&out, "/nonexistent/ca.crt");
    // The key of another CA does not match the certificate.
    let other = ca_dir();
    let out = Command::new(BIN)
        .arg("sign")
        .arg("--ca-cert")
        .arg(dir.path().join("ca/ca.crt"))
        .arg("--ca-key")
        .arg(other.path().join("ca/ca.key"))
        .args(["--trust-domain", "td", "--signer-name", SIGNER])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_one_line_error(&out, "does not match");
}

#[test]
fn ca_init_writes_a_private_key_only_the_owner_reads_and_never_overwrites() {
    let dir = ca_dir();
    let key = dir.path().join("ca/ca.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = std::fs::read(&key).unwrap();
    let again = Command::new(BIN)
        .args(["ca", "init", "--out"])
        .arg(dir.path().join("ca"))
        .output()
        .unwrap();
    assert_one_line_error(&again, "refusing to overwrite");
    assert_eq!(std::fs::read(&key).unwrap(), before);
    for kt in ["ecdsa-p384", "ed25519", "rsa3072"] {
        let out = Command::new(BIN)
            .args([
                "ca",
                "init",
                "--key-type",
                kt,
                "--trust-domain",
                "example.org",
                "--out",
            ])
            .arg(dir.path().join(kt))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{kt}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn inspect_describes_a_signed_request_and_a_credential_bundle() {
    let dir = ca_dir();
    let out = sign(
        &dir,
        serde_json::to_string(&vector("ED25519-pop-v1beta1"))
            .unwrap()
            .as_bytes(),
    );
    let signed = dir.path().join("signed.json");
    std::fs::write(&signed, &out.stdout).unwrap();
    let text = Command::new(BIN)
        .arg("inspect")
        .arg(&signed)
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("SPIFFE ID:  spiffe://cluster.local/ns/team-1/sa/sa-1"),
        "{text}"
    );
    assert!(text.contains("key:        Ed25519"), "{text}");
    assert!(text.contains("refresh at:"), "{text}");
    assert!(text.contains("issuer:     O=podcert-signer"), "{text}");

    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/kubelet-vectors/keys/ED25519.key.pem"),
    )
    .unwrap();
    let bundle = dir.path().join("credentialbundle.pem");
    std::fs::write(
        &bundle,
        format!(
            "{key}{}",
            got["status"]["certificateChain"].as_str().unwrap()
        ),
    )
    .unwrap();
    let text = Command::new(BIN)
        .arg("inspect")
        .arg(&bundle)
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("private key matches the leaf: yes"), "{text}");
    assert!(
        !text.contains("PRIVATE KEY-----"),
        "inspect must never print the key"
    );

    let garbage = dir.path().join("garbage.bin");
    std::fs::write(&garbage, [0xffu8, 0xfe, 0x00, 0x01]).unwrap();
    let out = Command::new(BIN)
        .arg("inspect")
        .arg(&garbage)
        .output()
        .unwrap();
    assert_one_line_error(&out, "not a certificate");
}
