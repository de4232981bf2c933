//! ML-DSA end to end on the command line: `ca init --key-type mldsa65` and an ECDSA CA,
//! `sign` of Kubernetes 1.38 requests made by Go 1.27's crypto/mldsa, and the issued chains
//! checked by an implementation podcert-signer does not use:
//! - always: RustCrypto's ml-dsa verifies the ML-DSA CA's signatures;
//! - with Go 1.27 (`GOTOOLCHAIN=go1.27.4 go`, from the Go module proxy): Go's crypto/x509
//!   `Certificate.Verify` (testdata/kubelet-vectors/mldsa-gen `verify`). The test says when it
//!   cannot run Go 1.27; PODCERT_REQUIRE_GO_MLDSA=1 makes that a failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::fixtures::keys::ml_dsa_verify;
use crate::fixtures::vectors::{object as vector, testdata};
use crate::fixtures::BIN;

const SIGNER: &str = "acceptance.podcert.test/spiffe";
const GO_TOOLCHAIN: &str = "go1.27.4";

fn ca_init(dir: &Path, key_type: &str) {
    crate::fixtures::ca_init_with(dir, &["--key-type", key_type]);
}

/// `sign` of one vector; the chain PEM it issued.
fn sign(ca: &Path, vector_name: &str) -> String {
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
    let obj = serde_json::to_vec(&vector(vector_name)).unwrap();
    child.stdin.take().unwrap().write_all(&obj).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["status"]["conditions"][0]["type"], "Issued",
        "{vector_name}: {v}"
    );
    v["status"]["certificateChain"]
        .as_str()
        .unwrap()
        .to_string()
}

fn go_verifier() -> PathBuf {
    testdata("mldsa-gen")
}

/// `go` running Go 1.27, or why not.
fn go127() -> Result<Command, String> {
    let probe = Command::new("go")
        .args(["env", "GOVERSION"])
        .env("GOTOOLCHAIN", GO_TOOLCHAIN)
        .current_dir(go_verifier())
        .output()
        .map_err(|e| format!("no go command ({e})"))?;
    let version = String::from_utf8_lossy(&probe.stdout);
    if !probe.status.success() || !version.starts_with("go1.27") {
        return Err(format!(
            "GOTOOLCHAIN={GO_TOOLCHAIN} go is not available: {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    let mut cmd = Command::new("go");
    cmd.env("GOTOOLCHAIN", GO_TOOLCHAIN)
        .env("GOFLAGS", "-mod=mod")
        .current_dir(go_verifier());
    Ok(cmd)
}

#[test]
fn ml_dsa_chains_verify_with_an_implementation_we_do_not_issue_with() {
    let dir = tempfile::tempdir().unwrap();
    let ml_ca = dir.path().join("mldsa65");
    let ec_ca = dir.path().join("ecdsa");
    ca_init(&ml_ca, "mldsa65");
    ca_init(&ec_ca, "ecdsa-p256");

    let ca_cert = std::fs::read_to_string(ml_ca.join("ca.crt")).unwrap();
    let ca_der = pem::parse(&ca_cert).unwrap().into_contents();
    let (_, ca_x509) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert_eq!(
        ca_x509.public_key().algorithm.algorithm.to_id_string(),
        "2.16.840.1.101.3.4.3.18"
    );

    let mut chains = Vec::new();
    for kt in ["MLDSA44", "MLDSA65", "MLDSA87"] {
        for (ca, ca_name) in [(&ml_ca, "mldsa65"), (&ec_ca, "ecdsa-p256")] {
            let chain = sign(ca, &format!("{kt}-stub-v1"));
            let path = dir.path().join(format!("{kt}-{ca_name}.pem"));
            std::fs::write(&path, &chain).unwrap();
            chains.push((ca.join("ca.crt"), path, kt));
            if ca_name == "mldsa65" {
                // RustCrypto's ml-dsa over the leaf's TBS, with the CA's key.
                let leaf = pem::parse(&chain).unwrap().into_contents();
                let (_, leaf) = x509_parser::parse_x509_certificate(&leaf).unwrap();
                assert!(
                    ml_dsa_verify(
                        ca_x509.public_key().raw,
                        leaf.tbs_certificate.as_ref(),
                        &leaf.signature_value.data
                    ),
                    "{kt}"
                );
            }
        }
    }
    // `inspect` names the key type and matches an ML-DSA credential bundle's key to its leaf.
    let (_, chain, kt) = &chains[0];
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(
        &bundle,
        std::fs::read_to_string(testdata(&format!("keys/{kt}.key.pem"))).unwrap()
            + &std::fs::read_to_string(chain).unwrap(),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("inspect")
        .arg(&bundle)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("key:        ML-DSA-44"), "{text}");
    assert!(text.contains("private key matches the leaf: yes"), "{text}");

    // A classical request under the ML-DSA CA, too.
    let path = dir.path().join("ECDSAP256-mldsa65.pem");
    std::fs::write(&path, sign(&ml_ca, "ECDSAP256-stub-v1")).unwrap();
    chains.push((ml_ca.join("ca.crt"), path, "ECDSAP256"));

    if let Err(why) = go127() {
        if std::env::var("PODCERT_REQUIRE_GO_MLDSA").as_deref() == Ok("1") {
            panic!("PODCERT_REQUIRE_GO_MLDSA=1 but {why}");
        }
        eprintln!("Go's x509 check of ML-DSA chains not run: {why}");
        return;
    }
    for (ca, chain, kt) in chains {
        let key = testdata(&format!("keys/{kt}.key.pem"));
        let out = go127()
            .unwrap()
            .args(["run", ".", "verify"])
            .arg(&ca)
            .arg(&chain)
            .arg(&key)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "Go refused {}: {}{}",
            chain.display(),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("verified: "), "{stdout}");
        eprintln!("Go 1.27 x509: {}: {}", chain.display(), stdout.trim());
    }
}
