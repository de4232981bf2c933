//! CA keys in a PKCS#11 token (SoftHSM2, a token initialised in a temporary directory through
//! SOFTHSM2_CONF): `ca init --generate`, `sign` and `run` with `--ca-key pkcs11:...`. Skips,
//! saying so, when libsofthsm2.so is absent, unless PODCERT_REQUIRE_SOFTHSM=1 (CI).

use crate::fixtures::e2e;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use podcert_pkcs11::softhsm;
use serde_json::Value;
use time::OffsetDateTime;

const BIN: &str = env!("CARGO_BIN_EXE_podcert-signer");
const SIGNER: &str = "acceptance.podcert.test/spiffe";

/// A SoftHSM2 setup of its own: config, token "podcert", PIN file.
struct Token {
    dir: tempfile::TempDir,
    conf: PathBuf,
    module: PathBuf,
}

impl Token {
    fn new() -> Option<Token> {
        let module = softhsm::module()?;
        let dir = tempfile::tempdir().unwrap();
        let conf = softhsm::init_tokens(dir.path(), &["podcert"]).unwrap();
        Some(Token { dir, conf, module })
    }

    fn uri(&self, object: &str) -> String {
        softhsm::uri(&self.module, self.dir.path(), "podcert", object)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("SOFTHSM2_CONF", &self.conf);
        c
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    fn ca_init(&self, object: &str, extra: &[&str]) -> Output {
        self.cmd()
            .args(["ca", "init", "--out"])
            .arg(self.out())
            .args(["--ca-key", &self.uri(object)])
            .args(extra)
            .output()
            .unwrap()
    }

    fn pkcs11_tool(&self, args: &[&str]) -> Output {
        Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .arg("--module")
            .arg(&self.module)
            .args([
                "--token-label",
                "podcert",
                "--login",
                "--pin",
                softhsm::USER_PIN,
            ])
            .args(args)
            .output()
            .expect("pkcs11-tool (Debian: opensc) runs")
    }

    fn sign(&self, object: &str, request: &Value) -> Output {
        let mut child = self
            .cmd()
            .arg("sign")
            .arg("--ca-cert")
            .arg(self.out().join("ca.crt"))
            .args(["--ca-key", &self.uri(object)])
            .args(["--trust-domain", "cluster.local", "--signer-name", SIGNER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(serde_json::to_string(request).unwrap().as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn vector(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/kubelet-vectors/vectors.json");
    let all: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    all.into_iter().find(|v| v["name"] == name).unwrap()["object"].clone()
}

fn ders(pem_text: &str) -> Vec<Vec<u8>> {
    pem::parse_many(pem_text)
        .unwrap()
        .into_iter()
        .map(|p| p.into_contents())
        .collect()
}

/// Verifies `chain_pem` (leaf first) with rustls-webpki against the root `anchor_pem`.
fn verify_leaf(chain_pem: &str, anchor_pem: &str) {
    use rustls::pki_types::{CertificateDer, UnixTime};
    let chain = ders(chain_pem);
    let anchor_der = ders(anchor_pem).remove(0);
    let anchor = webpki::anchor_from_trusted_cert(&CertificateDer::from(anchor_der.as_slice()))
        .unwrap()
        .to_owned();
    let leaf = CertificateDer::from(chain[0].as_slice());
    let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
    let inter: Vec<_> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let now = OffsetDateTime::now_utc().unix_timestamp() as u64;
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &inter,
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(now)),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .expect("the leaf verifies against the token-signed CA");
}

#[test]
fn ca_init_generate_then_sign_issues_leaves_that_verify_for_every_key_type() {
    for key_type in ["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa3072"] {
        let Some(t) = Token::new() else { return };
        let printed = ok(&t.ca_init("ca-2026", &["--generate", "--key-type", key_type]));
        assert!(printed.contains(key_type), "{printed}");
        assert!(t.out().join("ca.crt").exists());
        assert!(
            !t.out().join("ca.key").exists(),
            "no key file for a token key"
        );

        let out = t.sign("ca-2026", &vector("ECDSAP256-stub-v1"));
        let got: Value = serde_json::from_str(&ok(&out)).unwrap();
        let chain = got["status"]["certificateChain"]
            .as_str()
            .unwrap_or_else(|| panic!("{key_type}: no certificate issued: {got}"));
        let root = std::fs::read_to_string(t.out().join("ca.crt")).unwrap();
        verify_leaf(chain, &root);
    }
}

#[test]
fn the_generated_key_cannot_be_read_out_of_the_token() {
    let Some(t) = Token::new() else { return };
    ok(&t.ca_init("ca-2026", &["--generate"]));
    let listed = ok(&t.pkcs11_tool(&["--list-objects", "--type", "privkey"]));
    assert!(listed.contains("label:      ca-2026"), "{listed}");
    assert!(
        listed.contains("Access:     sensitive, always sensitive, never extractable"),
        "{listed}"
    );
    assert!(
        listed.contains("Usage:      sign\n"),
        "the key may only sign: {listed}"
    );
    // Reading CKA_VALUE fails. The only in-process use of the module in this file: SoftHSM2
    // reads SOFTHSM2_CONF once, at C_Initialize; every other test runs the binary.
    std::env::set_var("SOFTHSM2_CONF", &t.conf);
    let uri = podcert_pkcs11::Pkcs11Uri::parse(&t.uri("ca-2026")).unwrap();
    let key = podcert_pkcs11::Pkcs11Key::open(&uri, None, 1).unwrap();
    assert!(
        !key.value_is_readable().unwrap(),
        "CKA_VALUE of the CA key was readable"
    );
}

#[test]
fn ca_init_uses_a_key_made_with_pkcs11_tool_and_refuses_a_second_generate() {
    let Some(t) = Token::new() else { return };
    ok(&t.pkcs11_tool(&[
        "--keypairgen",
        "--key-type",
        "EC:secp384r1",
        "--label",
        "hsm-made",
        "--id",
        "0a",
    ]));
    let printed = ok(&t.ca_init("hsm-made", &[]));
    assert!(printed.contains("ecdsa-p384"), "{printed}");
    let cert = std::fs::read_to_string(t.out().join("ca.crt")).unwrap();
    assert!(cert.contains("BEGIN CERTIFICATE"));

    std::fs::remove_dir_all(t.out()).unwrap();
    let again = t.ca_init("hsm-made", &["--generate"]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("exists already"), "{err}");
}

#[test]
fn bad_uris_and_missing_keys_are_one_clear_error() {
    let Some(t) = Token::new() else { return };
    let cases = [
        (t.uri("x") + "&pin-value=1234", "pin-value is refused"),
        ("pkcs11:object=x".to_string(), "module-path is missing"),
        (t.uri("absent"), "no private key with this label"),
        (
            t.uri("x").replace("token=podcert", "token=other"),
            "no token matches",
        ),
    ];
    for (uri, want) in cases {
        let out = t
            .cmd()
            .args(["ca", "init", "--out"])
            .arg(t.out())
            .args(["--ca-key", &uri])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{uri}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !err.contains(softhsm::USER_PIN) || err.contains("pin-value"),
            "{err}"
        );
    }
}

/// `e2e::spawn_with_kubeconfig` with SOFTHSM2_CONF set for the child alone (copied from
/// tests/fixtures/e2e.rs: there the environment is the test process's, shared by parallel tests).
fn spawn_signer_with_token(
    server: &podcert_testkit::apiserver::TestServer,
    t: &Token,
    args: &[&str],
) -> e2e::Signer {
    let mut all = vec![
        "--signer-name",
        e2e::SIGNER,
        "--trust-domain",
        "cluster.local",
    ];
    all.extend_from_slice(args);
    spawn_run_with_token(server, t, &all)
}

fn spawn_run_with_token(
    server: &podcert_testkit::apiserver::TestServer,
    t: &Token,
    args: &[&str],
) -> e2e::Signer {
    let dir = t.dir.path();
    let kubeconfig = dir.join("signer.kubeconfig");
    server
        .write_kubeconfig(&kubeconfig, &e2e::signer_identity())
        .unwrap();
    let port = e2e::free_port();
    let log = dir.join("signer.log");
    let child = Command::new(BIN)
        .arg("run")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(["--identity", "signer-0"])
        .args(args)
        .env("SOFTHSM2_CONF", &t.conf)
        .env("RUST_LOG", "info,podcert_runtime=debug")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    e2e::Signer {
        child,
        metrics: format!("127.0.0.1:{port}"),
        log,
    }
}

fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_issues_with_a_token_key_and_waits_out_a_removed_token() {
    use e2e::{condition, create_vector, eventually, prepare, vectors, wait_terminal};
    use podcert_testkit::apiserver::{KubeVersion, ServerConfig, TestServer};
    use std::time::Duration;
    const WAIT: Duration = Duration::from_secs(30);

    let Some(t) = Token::new() else { return };
    ok(&t.ca_init("ca-2026", &["--generate"]));
    let root = std::fs::read_to_string(t.out().join("ca.crt")).unwrap();

    let server = TestServer::start(ServerConfig {
        version: KubeVersion::V1_37,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let v = vectors()
        .into_iter()
        .find(|v| v["name"] == "ECDSAP256-stub-v1")
        .unwrap();
    let ns = v["object"]["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    prepare(&server, &[&ns]);
    let cert = t.out().join("ca.crt").display().to_string();
    let uri = t.uri("ca-2026");
    let signer = spawn_signer_with_token(
        &server,
        &t,
        &[
            "--ca-cert",
            &cert,
            "--ca-key",
            &uri,
            "--leader-election=false",
            "--trust-bundle=false",
            "--ca-reload-interval",
            "300ms",
        ],
    );
    signer.wait_ready(WAIT).await;

    // Issued by the token: the leaf verifies against the certificate `ca init` wrote.
    create_vector(&server, &v, "before").await;
    let obj = wait_terminal(&server, "v1", &ns, "before", WAIT).await;
    assert_eq!(condition(&obj).0, "Issued", "{}", signer.logs());
    verify_leaf(obj["status"]["certificateChain"].as_str().unwrap(), &root);

    // The token goes away (its directory moved: as root, permissions would not stop SoftHSM2).
    let tokens = t.dir.path().join("tokens");
    let away = t.dir.path().join("tokens-away");
    std::fs::rename(&tokens, &away).unwrap();
    let body = eventually(
        WAIT,
        || format!("still ready; logs:\n{}", signer.logs()),
        || async {
            match signer.get("/readyz").await {
                (503, body) if body.contains("ca-key (") => Some(body),
                _ => None,
            }
        },
    )
    .await;
    assert!(
        body.contains("token=podcert"),
        "the reason names the key: {body}"
    );

    // A request meanwhile is retried, not Failed: wait until its issuance has failed twice.
    create_vector(&server, &v, "while-away").await;
    let signer_name = format!("signer_name=\"{}\"", e2e::SIGNER);
    let issue_errors = eventually(
        WAIT,
        || signer.logs(),
        || async {
            let (_, m) = signer.get("/metrics").await;
            let n = metric(&m, "podcert_errors_total", "kind=\"issue\"");
            (n >= 2.0).then_some(m)
        },
    )
    .await;
    assert_eq!(
        metric(&issue_errors, "podcert_failed_total", &signer_name),
        0.0
    );
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(server.admin_client(), &ns, &e2e::pcr_resource("v1"));
    let pending = serde_json::to_value(api.get("while-away").await.unwrap()).unwrap();
    assert!(
        pending["status"]["conditions"]
            .as_array()
            .is_none_or(|c| c.is_empty()),
        "the request must stay pending while the token is away: {pending}"
    );

    // The token returns: the module is re-initialised, the waiting request is issued.
    std::fs::rename(&away, &tokens).unwrap();
    let obj = wait_terminal(&server, "v1", &ns, "while-away", WAIT).await;
    assert_eq!(condition(&obj).0, "Issued", "{}", signer.logs());
    verify_leaf(obj["status"]["certificateChain"].as_str().unwrap(), &root);
    signer.wait_ready(WAIT).await;
}

/// The token's private key labels, as pkcs11-tool lists them.
fn labels(t: &Token) -> Vec<String> {
    ok(&t.pkcs11_tool(&["--list-objects", "--type", "privkey"]))
        .lines()
        .filter_map(|l| l.trim().strip_prefix("label:"))
        .map(|l| l.trim().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrapped_ca_rotates_with_keys_generated_in_the_token() {
    use e2e::{condition, create_vector, eventually, prepare, vectors, wait_terminal};
    use k8s_openapi::api::core::v1::Secret;
    use podcert_core::rotation::{RotationState, STATE_KEY};
    use podcert_testkit::apiserver::{KubeVersion, ServerConfig, TestServer};
    use std::time::Duration;
    const WAIT: Duration = Duration::from_secs(30);

    let Some(t) = Token::new() else { return };
    let server = TestServer::start(ServerConfig {
        version: KubeVersion::V1_37,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let v = vectors()
        .into_iter()
        .find(|v| v["name"] == "ECDSAP256-stub-v1")
        .unwrap();
    let ns = v["object"]["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    prepare(&server, &[&ns]);
    let uri = t.uri("podcert-ca");
    let signer = spawn_signer_with_token(
        &server,
        &t,
        &[
            "--ca-secret",
            "podcert-system/podcert-signer-ca",
            "--ca-bootstrap",
            "--ca-key",
            &uri,
            "--ca-reload-interval",
            "200ms",
            "--ca-propagation-delay",
            "1s",
            "--leader-election=false",
        ],
    );
    signer.wait_ready(WAIT).await;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(server.admin_client(), "podcert-system");
    let state = || async {
        let s = secrets.get_opt("podcert-signer-ca").await.ok().flatten()?;
        let json = s.data?.get(STATE_KEY)?.0.clone();
        RotationState::from_json(&String::from_utf8(json).ok()?).ok()
    };
    let first = eventually(WAIT, || signer.logs(), state).await.active;
    // The Secret holds the key's URI, labelled with the CA's fingerprint; the key is in the token.
    let label = format!("podcert-ca-{}", first.fingerprint_sha256);
    let key_ref = first.key_pem.as_ref().unwrap().expose().to_string();
    assert!(
        key_ref.starts_with("pkcs11:") && key_ref.contains(&label),
        "{key_ref}"
    );
    assert!(!key_ref.contains("PRIVATE KEY"));
    assert_eq!(labels(&t), vec![label.clone()]);

    create_vector(&server, &v, "first").await;
    let obj = wait_terminal(&server, "v1", &ns, "first", WAIT).await;
    assert_eq!(condition(&obj).0, "Issued", "{}", signer.logs());
    verify_leaf(
        obj["status"]["certificateChain"].as_str().unwrap(),
        &first.cert_pem,
    );

    // A rotation generates the next key in the token; the retired CA keeps its key while its
    // root is retained.
    let kubeconfig = t.dir.path().join("admin.kubeconfig");
    server
        .write_kubeconfig(&kubeconfig, &podcert_testkit::rules::UserInfo::admin())
        .unwrap();
    let rotate = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args([
                "ca",
                "rotate",
                "--secret",
                "podcert-system/podcert-signer-ca",
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            .args(extra)
            .output()
            .unwrap();
        ok(&out)
    };
    rotate(&[]);
    let rotated = eventually(
        WAIT,
        || signer.logs(),
        || async {
            state()
                .await
                .filter(|s| s.active.fingerprint_sha256 != first.fingerprint_sha256)
        },
    )
    .await;
    assert!(rotated
        .retired
        .iter()
        .any(|r| r.fingerprint_sha256 == first.fingerprint_sha256));
    let second_label = format!("podcert-ca-{}", rotated.active.fingerprint_sha256);
    let mut have = labels(&t);
    have.sort();
    let mut want = vec![label.clone(), second_label.clone()];
    want.sort();
    assert_eq!(
        have, want,
        "the retired CA's key stays until its root is dropped"
    );

    create_vector(&server, &v, "second").await;
    let obj = wait_terminal(&server, "v1", &ns, "second", WAIT).await;
    assert_eq!(condition(&obj).0, "Issued", "{}", signer.logs());
    verify_leaf(
        obj["status"]["certificateChain"].as_str().unwrap(),
        &rotated.active.cert_pem,
    );

    // Dropping the retired root (here at once, by emergency) deletes its key from the token.
    rotate(&["--emergency", "--fingerprint", &first.fingerprint_sha256]);
    eventually(
        WAIT,
        || format!("labels {:?}; logs:\n{}", labels(&t), signer.logs()),
        || async { (labels(&t) == vec![second_label.clone()]).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_object_with_a_token_key_reports_the_token_in_its_ready_condition() {
    use e2e::{condition, create_request, eventually, prepare, vectors, wait_terminal};
    use podcert_k8s::crd::PodCertificateSigner;
    use podcert_testkit::apiserver::{KubeVersion, ServerConfig, TestServer};
    use std::time::Duration;
    const WAIT: Duration = Duration::from_secs(30);

    let Some(t) = Token::new() else { return };
    ok(&t.ca_init("ca-2026", &["--generate"]));
    let server = TestServer::start(ServerConfig {
        version: KubeVersion::V1_37,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let v = vectors()
        .into_iter()
        .find(|v| v["name"] == "ECDSAP256-stub-v1")
        .unwrap();
    let ns = v["object"]["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    // team-a: the namespace the rendered CRD-mode RBAC grants ConfigMap writes in.
    prepare(&server, &[&ns, "team-a"]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in [
        "crds/podcertificatesigner.yaml",
        "charts/podcert-signer/rendered/rbac-crd.yaml",
    ] {
        server
            .load_yaml(&std::fs::read_to_string(root.join(f)).unwrap())
            .unwrap();
    }
    // The PIN from a Secret (pinSecretRef), not from the URI. Named other-ca: a Secret the
    // rendered CRD-mode RBAC lets the signer read.
    server
        .load_yaml(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: other-ca, namespace: {}}}\nstringData: {{pin: \"{}\\n\"}}\n",
            e2e::SIGNER_NS,
            softhsm::USER_PIN
        ))
        .unwrap();
    let uri = format!(
        "pkcs11:token=podcert;object=ca-2026?module-path={}",
        t.module.display()
    );
    let cert = t.out().join("ca.crt").display().to_string();
    let yaml = format!(
        "apiVersion: podcert.dev/v1alpha1\nkind: PodCertificateSigner\nmetadata: {{name: tok}}\nspec:\n  signerName: podcert.dev/tok\n  trustDomain: cluster.local\n  ca:\n    files: {{certFile: {cert:?}}}\n    pkcs11: {{uri: {uri:?}, pinSecretRef: {{name: other-ca}}}}\n"
    );
    let obj: PodCertificateSigner = serde_saphyr::from_str(&yaml).unwrap();
    let api: kube::Api<PodCertificateSigner> = kube::Api::all(server.admin_client());
    let signer = spawn_run_with_token(
        &server,
        &t,
        &[
            "--crd-signers",
            "--signer-domain",
            "podcert.dev",
            "--namespace",
            e2e::SIGNER_NS,
            "--leader-election=false",
            "--ca-reload-interval",
            "300ms",
        ],
    );
    signer.wait_ready(WAIT).await;
    api.create(&Default::default(), &obj).await.unwrap();
    let ready = |status: &'static str, reason: &'static str| {
        let api = api.clone();
        let logs = signer.log.clone();
        async move {
            eventually(
                WAIT,
                || {
                    format!(
                        "no Ready={status} {reason}; logs:\n{}",
                        std::fs::read_to_string(&logs).unwrap_or_default()
                    )
                },
                || async {
                    let o = api.get_opt("tok").await.ok()??;
                    let c = o
                        .status?
                        .conditions
                        .into_iter()
                        .find(|c| c.type_ == "Ready")?;
                    (c.status == status && c.reason == reason).then_some(c.message)
                },
            )
            .await
        }
    };
    ready("True", "Ready").await;

    let mut req = v["object"].clone();
    req["spec"]["signerName"] = serde_json::json!("podcert.dev/tok");
    create_request(&server, req.clone(), &ns, "by-object").await;
    let issued = wait_terminal(&server, "v1", &ns, "by-object", WAIT).await;
    assert_eq!(condition(&issued).0, "Issued", "{}", signer.logs());
    let root_pem = std::fs::read_to_string(t.out().join("ca.crt")).unwrap();
    verify_leaf(
        issued["status"]["certificateChain"].as_str().unwrap(),
        &root_pem,
    );

    let tokens = t.dir.path().join("tokens");
    let away = t.dir.path().join("tokens-away");
    std::fs::rename(&tokens, &away).unwrap();
    let message = ready("False", "CAKeyUnavailable").await;
    assert!(message.contains("token=podcert"), "{message}");
    std::fs::rename(&away, &tokens).unwrap();
    ready("True", "Ready").await;
}
