//! The stable command line: `sign`, `ca init` and `inspect` as a user (or a script) calls them.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::fixtures::vectors::{object as vector, testdata};
use crate::fixtures::{ca_init, BIN};

const SIGNER: &str = "acceptance.podcert.test/spiffe";

fn ca_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    ca_init(&d.path().join("ca"));
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
    // A refusal (bad CA, input over the cap) may end the process before it has read all of
    // stdin: the write may then see EPIPE.
    match child.stdin.take().unwrap().write_all(stdin) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
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
    let yaml = serde_saphyr::to_string(&vector("unknown-user-annotation")).unwrap();
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
    let key = std::fs::read_to_string(testdata("keys/ED25519.key.pem")).unwrap();
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

// --- security issue 13: terminal escapes, input caps, key permissions, YAML budgets -----------

#[test]
fn inspect_escapes_control_characters_in_subject_and_sans() {
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};
    let mut params = CertificateParams::default();
    params.distinguished_name.push(
        DnType::CommonName,
        "evil\x1b[2J\nSPIFFE ID:  spiffe://fake/x",
    );
    params.subject_alt_names = vec![
        SanType::URI(
            "spiffe://td/a\x1b[31m\nDNS names:  bank.example"
                .try_into()
                .unwrap(),
        ),
        SanType::DnsName("a\x1b]0;title\x07.example".try_into().unwrap()),
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crafted.pem");
    std::fs::write(&file, cert.pem()).unwrap();
    let out = Command::new(BIN)
        .arg("inspect")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.bytes().any(|b| b.is_ascii_control() && b != b'\n'),
        "{text:?}"
    );
    // Only inspect's own lines: the crafted ones stay inside their field.
    assert!(!text
        .lines()
        .any(|l| l.trim_start().starts_with("SPIFFE ID:  spiffe://fake")));
    assert!(!text
        .lines()
        .any(|l| l.trim_start().starts_with("DNS names:  bank")));
    assert!(text.contains("evil\\x1b[2J\\nSPIFFE ID"), "{text}");
    assert!(text.contains("a\\x1b]0;title\\x07.example"), "{text}");
    assert!(
        text.contains("spiffe://td/a\\x1b[31m\\nDNS names"),
        "{text}"
    );
}

#[test]
fn inputs_over_the_cap_are_refused_naming_it() {
    let dir = ca_dir();
    // stdin: 4 MiB + 1 byte of spaces.
    let out = sign(&dir, &vec![b' '; 4 * 1024 * 1024 + 1]);
    assert_one_line_error(&out, "4 MiB limit");
    // inspect: a sparse 200 MiB file is refused from its size, unread.
    let big = dir.path().join("big.pem");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(200 * 1024 * 1024)
        .unwrap();
    let out = Command::new(BIN).arg("inspect").arg(&big).output().unwrap();
    assert_one_line_error(&out, "4 MiB limit");
    // A CA certificate file over 1 MiB.
    let ca = dir.path().join("ca");
    let fat = dir.path().join("fat.crt");
    let mut pem = std::fs::read(ca.join("ca.crt")).unwrap();
    pem.resize(1024 * 1024 + 1, b'\n');
    std::fs::write(&fat, pem).unwrap();
    let out = Command::new(BIN)
        .arg("sign")
        .arg("--ca-cert")
        .arg(&fat)
        .arg("--ca-key")
        .arg(ca.join("ca.key"))
        .args(["--trust-domain", "td", "--signer-name", SIGNER])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_one_line_error(&out, "1 MiB limit");
}

fn sign_with_key(dir: &tempfile::TempDir, key: &std::path::Path, extra: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .arg("sign")
        .arg("--ca-cert")
        .arg(dir.path().join("ca/ca.crt"))
        .arg("--ca-key")
        .arg(key)
        .args(["--trust-domain", "cluster.local", "--signer-name", SIGNER])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let req = serde_json::to_string(&vector("ED25519-pop-v1beta1")).unwrap();
    // A refused key ends the process before it reads stdin: the write may then see EPIPE.
    match child.stdin.take().unwrap().write_all(req.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_ca_key_others_can_read_is_refused_unless_allowed() {
    let dir = ca_dir();
    let key = dir.path().join("ca/ca.key");
    for mode in [0o644, 0o666, 0o604] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = sign_with_key(&dir, &key, &[]);
        assert_one_line_error(&out, &format!("mode {mode:04o}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&key.display().to_string()), "{err}");
        assert!(err.contains("--allow-insecure-key-permissions"), "{err}");
    }
    let out = sign_with_key(&dir, &key, &["--allow-insecure-key-permissions"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Through a symlink (as a Secret volume mounts its files): the target's mode counts.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let link = dir.path().join("link.key");
    std::os::unix::fs::symlink(&key, &link).unwrap();
    assert_one_line_error(&sign_with_key(&dir, &link, &[]), "mode 0644");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = sign_with_key(&dir, &link, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ca_init_makes_its_directory_private_even_under_umask_000() {
    let d = tempfile::tempdir().unwrap();
    let out_dir = d.path().join("new/ca");
    // umask 000 in a shell, then ca init.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000 && exec {BIN} ca init --out {}",
            out_dir.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out_dir), 0o700);
    assert_eq!(mode(&out_dir.join("ca.key")), 0o600);

    // An existing open directory is kept, with a warning.
    let open = d.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(BIN)
        .args(["ca", "init", "--out"])
        .arg(&open)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning") && err.contains("0777"), "{err}");
}

/// 4 MiB inputs built to be slow for a YAML parser: each must be decided or refused (the test
/// only has to finish; timings are measured by hand).
fn adversarial_yaml() -> Vec<(&'static str, Vec<u8>)> {
    const N: usize = 4 * 1024 * 1024;
    let mut laughs = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let prev = i - 1;
        laughs.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    laughs.push_str("kind: PodCertificateRequest\n");
    let mut aliases = String::from("a: &a x\nb: [");
    while aliases.len() < N - 8 {
        aliases.push_str("*a, ");
    }
    aliases.push_str("*a]\n");
    let mut deep_block = String::new();
    let mut i = 0;
    while deep_block.len() < N / 4 {
        deep_block.push_str(&" ".repeat(i % 200));
        deep_block.push_str("- \n");
        i += 1;
    }
    vec![
        ("unmatched brackets", vec![b'['; N]),
        ("unmatched braces", b"{a: ".repeat(N / 4)),
        (
            "deep nesting",
            [
                b"kind: x\nspec: ".as_slice(),
                &b"[".repeat(N / 2),
                &b"]".repeat(N / 2 - 16),
            ]
            .concat(),
        ),
        ("deep block nesting", deep_block.into_bytes()),
        ("billion laughs", laughs.into_bytes()),
        ("many aliases", aliases.into_bytes()),
        (
            "long scalar",
            [b"kind: ".as_slice(), &vec![b'a'; N - 6]].concat(),
        ),
        (
            "long quoted scalar",
            [b"kind: \"".as_slice(), &b"\\\\".repeat(N / 2 - 4)].concat(),
        ),
        ("many keys", {
            let mut s = String::new();
            let mut k = 0;
            while s.len() < N - 16 {
                s.push_str(&format!("k{k}: v\n"));
                k += 1;
            }
            s.into_bytes()
        }),
    ]
}

#[test]
fn adversarial_yaml_is_refused_quickly_by_sign_signer_file_and_inspect() {
    let dir = ca_dir();
    for (name, input) in adversarial_yaml() {
        assert!(input.len() <= 4 * 1024 * 1024, "{name}");
        let started = std::time::Instant::now();
        let out = sign(&dir, &input);
        assert!(!out.status.success(), "{name}: sign accepted it");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{name}: {err}");
        let file = dir.path().join("adversarial.yaml");
        std::fs::write(&file, &input).unwrap();
        let out = Command::new(BIN)
            .arg("inspect")
            .arg(&file)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}: inspect accepted it");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
        // sign --signer: the policy file (its cap is 1 MiB: the head of the input).
        let policy = dir.path().join("adversarial-signer.yaml");
        std::fs::write(&policy, &input[..input.len().min(1024 * 1024)]).unwrap();
        let ca = dir.path().join("ca");
        let out = Command::new(BIN)
            .arg("sign")
            .arg("--ca-cert")
            .arg(ca.join("ca.crt"))
            .arg("--ca-key")
            .arg(ca.join("ca.key"))
            .arg("--signer")
            .arg(&policy)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}: --signer accepted it");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
        eprintln!(
            "{name}: {:?} for sign, inspect and --signer",
            started.elapsed()
        );
    }
}
