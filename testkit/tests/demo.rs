//! `podcert-testkit demo`, the first command a new user runs: it must work from a clean clone,
//! on every emulated Kubernetes version, and say what happened.

use std::process::Command;

fn demo(version: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_podcert-testkit"))
        .args(["demo", "--kube-version", version])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "demo {version} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn the_demo_issues_for_every_key_type_and_does_mtls() {
    let text = demo("1.37");
    assert!(text.contains("6 issued, 0 denied"), "{text}");
    for kt in [
        "ED25519",
        "ECDSAP256",
        "ECDSAP384",
        "ECDSAP521",
        "RSA3072",
        "RSA4096",
    ] {
        assert!(text.contains(kt), "{kt} missing:\n{text}");
    }
    assert!(
        text.contains("ClusterTrustBundle podcert.dev:spiffe:live"),
        "{text}"
    );
    assert!(text.contains("both sides verified by SPIFFE ID"), "{text}");
    assert!(
        text.contains("spiffe://cluster.local/ns/demo-ns-0/sa/sa-0"),
        "{text}"
    );
}

#[test]
fn the_demo_runs_on_the_oldest_supported_version() {
    let text = demo("1.34");
    assert!(
        text.contains("pkix + proof of possession carrier, v1alpha1"),
        "{text}"
    );
    assert!(text.contains("6 issued"), "{text}");
}
