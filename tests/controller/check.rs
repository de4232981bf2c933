//! `podcert-signer check` against the API emulator: a healthy set-up passes, and each broken
//! set-up gets its failure line and hint. Also: every metric the chart's dashboard and alerts
//! use is exported by a running signer (its real `/metrics`).
//!
//! The helpers below are small copies of tests/e2e/mod.rs's (shipped RBAC, spawning the
//! binary, a raw HTTP GET), kept here so this file does not depend on that module's layout.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixtures::e2e::{free_port, http_get, shipped_rbac, SIGNER, SIGNER_NS};
use crate::fixtures::metrics as prom;
use crate::fixtures::BIN;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use podcert_testkit::apiserver::{Faults, ServerConfig, TestServer};
use podcert_testkit::rules::UserInfo;
use serde_json::{json, Value};

const NS: &str = SIGNER_NS;
const SA: &str = "podcert-signer";
const BUNDLE: &str = "podcert.dev:spiffe:live";
const WAIT: Duration = Duration::from_secs(30);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The signer's namespace and service account, and `rbac` (the chart's, or a broken copy).
fn prepare(server: &TestServer, rbac: &str) {
    server
        .load_yaml(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n\
             ---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {SA}\n  namespace: {NS}\n"
        ))
        .unwrap();
    server.load_yaml(rbac).unwrap();
}

fn node(name: &str, kubelet: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nstatus:\n  nodeInfo:\n    kubeletVersion: {kubelet}\n"
    )
}

struct Signer {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Drop for Signer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Signer {
    fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// Waits until /metrics carries `needle` (the controller reports some series on its
    /// first tick after ready).
    async fn wait_metric(&self, needle: &str) {
        let start = Instant::now();
        while !http_get(&self.addr, "/metrics").await.1.contains(needle) {
            assert!(
                start.elapsed() < WAIT,
                "{needle} never exported; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the counter `name` (summed over its series) is above 0: every counter is
    /// exported at 0 from the start, so its presence says nothing.
    async fn wait_counted(&self, name: &str) {
        let start = Instant::now();
        while prom::sum(&http_get(&self.addr, "/metrics").await.1, name, &[]) <= 0.0 {
            assert!(
                start.elapsed() < WAIT,
                "{name} never counted; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_ready(&self) {
        let start = Instant::now();
        while http_get(&self.addr, "/readyz").await.0 != 200 {
            assert!(
                start.elapsed() < WAIT,
                "signer not ready; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `podcert-signer run` as the chart's service account, with `args`.
fn spawn_signer(server: &TestServer, dir: &Path, args: &[&str]) -> Signer {
    let kubeconfig = dir.join("signer.kubeconfig");
    server
        .write_kubeconfig(&kubeconfig, &UserInfo::service_account(NS, SA))
        .unwrap();
    let port = free_port();
    let log = dir.join("signer.log");
    let child = Command::new(BIN)
        .arg("run")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(["--identity", "replica-0", "--signer-name", SIGNER])
        .args(["--trust-domain", "cluster.local"])
        .args(args)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Signer {
        child,
        addr: format!("127.0.0.1:{port}"),
        log,
    }
}

/// Runs `podcert-signer check` as the administrator; (exit code, stdout).
fn check(server: &TestServer, dir: &Path, args: &[&str]) -> (i32, String) {
    let kubeconfig = dir.join("admin.kubeconfig");
    server
        .write_kubeconfig(&kubeconfig, &UserInfo::admin())
        .unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(args)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout)
}

/// The `×` line containing `needle`, and its hint.
fn failure<'a>(report: &'a str, needle: &str) -> (&'a str, &'a str) {
    let lines: Vec<&str> = report.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with("× ") && l.contains(needle))
        .unwrap_or_else(|| panic!("no failure line containing {needle:?} in:\n{report}"));
    let hint = lines
        .get(i + 1)
        .and_then(|l| l.strip_prefix("    hint: "))
        .unwrap_or_else(|| panic!("no hint after {:?} in:\n{report}", lines[i]));
    let see = lines.get(i + 2).copied().unwrap_or("");
    assert!(see.starts_with("    see README.md#check-"), "{report}");
    (lines[i], hint)
}

fn ctb(version: &str) -> ApiResource {
    ApiResource {
        group: "certificates.k8s.io".into(),
        version: version.into(),
        api_version: format!("certificates.k8s.io/{version}"),
        kind: "ClusterTrustBundle".into(),
        plural: "clustertrustbundles".into(),
    }
}

/// Waits until the leader has published the bundle and holds the Lease, and its member Lease
/// is held.
async fn wait_published(server: &TestServer) {
    let bundles: Api<DynamicObject> = Api::all_with(server.admin_client(), &ctb("v1"));
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(server.admin_client(), NS);
    let start = Instant::now();
    loop {
        let published = bundles.get_opt(BUNDLE).await.unwrap().is_some();
        let held = leases
            .get_opt("podcert-signer")
            .await
            .unwrap()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .is_some();
        // Active-active (the default mode): the replica's member Lease, once it is ready.
        let member = leases
            .list(&kube::api::ListParams::default().labels("podcert.dev/member-of=podcert-signer"))
            .await
            .unwrap()
            .items
            .iter()
            .any(|l| {
                l.spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.as_ref())
                    .is_some()
            });
        if published && held && member {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "bundle not published, lease not held or no member Lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_set_up_passes_every_check() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &shipped_rbac());
    server.load_yaml(&node("node-a", "v1.37.2")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let signer = spawn_signer(
        &server,
        dir.path(),
        &[
            "--ca-secret",
            "podcert-system/podcert-signer-ca",
            "--ca-bootstrap",
            "--leader-election=true",
            "--leader-election-namespace",
            NS,
        ],
    );
    signer.wait_ready().await;
    wait_published(&server).await;
    signer
        .wait_metric("podcert_ca_not_after_timestamp_seconds{")
        .await;
    let url = signer.metrics_url();
    let args = [
        "--ca-secret",
        "podcert-signer-ca",
        "--ca-bootstrap",
        "--metrics-url",
        &url,
    ];
    let (code, report) = check(&server, dir.path(), &args);
    println!("{report}");
    assert_eq!(code, 0, "{report}");
    assert!(
        !report.contains("\n× ") && !report.contains("\n‼ "),
        "{report}"
    );
    for line in [
        "√ ClusterTrustBundle projection enabled",
        "√ can attest signers.certificates.k8s.io podcert.dev/spiffe",
        "√ can get secrets podcert-signer-ca in podcert-system",
        "√ CA loaded, valid until",
        "√ CA rotation phase Stable",
        "√ ClusterTrustBundle podcert.dev:spiffe:live published with 1 root(s), including the signing CA",
        "√ leader replica-0",
        "√ 1 active-active member(s) share the requests: replica-0",
        "√ 1 node(s), kubelets v1.37.2",
        "Status check results are √",
    ] {
        assert!(report.contains(line), "{line:?} missing from:\n{report}");
    }
    // The same, as JSON.
    let mut json_args = args.to_vec();
    json_args.extend(["-o", "json"]);
    let (code, out) = check(&server, dir.path(), &json_args);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["success"], true);
    let results: Vec<&str> = v["categories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["checks"].as_array().unwrap())
        .map(|c| c["result"].as_str().unwrap())
        .collect();
    assert!(results.iter().all(|r| *r == "success"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_without_attest_fails_with_its_hint() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let rule = "  - apiGroups: [\"certificates.k8s.io\"]\n    resources: [\"signers\"]\n    resourceNames: [\"podcert.dev/spiffe\"]\n    verbs: [\"attest\"]\n";
    let rbac = shipped_rbac();
    assert!(rbac.contains(rule), "the shipped RBAC changed shape");
    prepare(&server, &rbac.replace(rule, ""));
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = check(&server, dir.path(), &[]);
    assert_eq!(code, 1, "{report}");
    let (line, hint) = failure(&report, "attest");
    assert_eq!(
        line,
        "× cannot attest signers.certificates.k8s.io podcert.dev/spiffe (publish a bundle with spec.signerName)"
    );
    assert!(
        hint.ends_with("verify with kubectl auth can-i attest signers.certificates.k8s.io/podcert.dev/spiffe --as system:serviceaccount:podcert-system:podcert-signer"),
        "{hint}"
    );
    // `sign` is still granted.
    assert!(
        report.contains("√ can sign signers.certificates.k8s.io podcert.dev/spiffe"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_off_fails_with_its_hint() {
    let server = TestServer::start(ServerConfig {
        cluster_trust_bundle_projection: false,
        ..Default::default()
    })
    .await
    .unwrap();
    prepare(&server, &shipped_rbac());
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = check(&server, dir.path(), &[]);
    assert_eq!(code, 1, "{report}");
    let (_, hint) = failure(&report, "ClusterTrustBundle projection is off");
    assert!(
        hint.starts_with("enable the ClusterTrustBundleProjection feature gate"),
        "{hint}"
    );
    // The dry run stored nothing.
    assert!(server.store().list("", "pods").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_ca_fails_with_its_hint() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &shipped_rbac());
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let out = Command::new(BIN)
        .args(["ca", "init", "--validity", "3d", "--out"])
        .arg(&ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = ca.join("ca.crt").display().to_string();
    let key = ca.join("ca.key").display().to_string();
    let signer = spawn_signer(
        &server,
        dir.path(),
        &[
            "--ca-cert",
            &cert,
            "--ca-key",
            &key,
            "--leader-election=false",
        ],
    );
    signer.wait_ready().await;
    let url = signer.metrics_url();
    signer
        .wait_metric("podcert_ca_not_after_timestamp_seconds{")
        .await;
    let (code, report) = check(
        &server,
        dir.path(),
        &["--leader-election=false", "--metrics-url", &url],
    );
    assert_eq!(code, 1, "{report}");
    let (line, hint) = failure(&report, "the signing CA expires");
    assert!(line.ends_with("within 7d"), "{line}");
    assert!(
        hint.starts_with("rotate it: podcert-signer ca rotate"),
        "{hint}"
    );
    assert!(
        report.contains("√ the scraped replica leads (leader election off)"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_signer_running_fails_with_its_hints() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &shipped_rbac());
    // A request created 5 minutes ago (the server's clock set back while it is created).
    server.set_clock_offset(time::Duration::minutes(-5));
    server
        .load_yaml(&vector_request("waiting", "ED25519-stub-v1"))
        .unwrap();
    server.set_clock_offset(time::Duration::ZERO);

    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/metrics", free_port());
    let (code, report) = check(&server, dir.path(), &["--metrics-url", &url]);
    println!("{report}");
    assert_eq!(code, 1, "{report}");
    let (line, hint) = failure(&report, "no leader");
    assert_eq!(
        line,
        "× no leader: Lease podcert-system/podcert-signer does not exist"
    );
    assert!(hint.starts_with("no signer replica is running"), "{hint}");
    let (line, hint) = failure(&report, "cannot read the signer's metrics");
    assert!(line.contains(&url), "{line}");
    assert!(hint.starts_with("is a signer running?"), "{hint}");
    let (line, hint) = failure(&report, "pending");
    assert!(
        line.starts_with("× 1 request(s) pending, the oldest for 5m"),
        "{line}"
    );
    assert!(hint.starts_with("no signer is deciding them"), "{hint}");
    let (_, hint) = failure(
        &report,
        "ClusterTrustBundle podcert.dev:spiffe:live is not published",
    );
    assert!(hint.starts_with("only the leader publishes"), "{hint}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelets_that_cannot_write_a_served_version_fail_the_skew_check() {
    let server = TestServer::start(ServerConfig {
        pcr_versions: Some(vec!["v1".into()]),
        ..Default::default()
    })
    .await
    .unwrap();
    prepare(&server, &shipped_rbac());
    server
        .load_yaml(&(node("old", "v1.35.4") + &node("new", "v1.37.2")))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = check(&server, dir.path(), &[]);
    assert_eq!(code, 1, "{report}");
    let (line, hint) = failure(&report, "node(s) cannot get pod certificates");
    assert_eq!(
        line,
        "× 1 of 2 node(s) cannot get pod certificates: old (kubelet v1.35.4 writes PodCertificateRequest v1beta1, the server serves v1)"
    );
    assert!(
        hint.starts_with("serve the PodCertificateRequest version"),
        "{hint}"
    );
    assert!(
        report.contains(
            "√ PodCertificateRequest served in v1: kubelets 1.37 can request certificates"
        ),
        "{report}"
    );
}

/// Metric names a PromQL expression or dashboard uses: every `podcert_*` identifier.
fn used_metrics(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("podcert_") {
        let start = i + pos;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

/// Every sample name the exposition can carry: the `# TYPE` families with their suffixes
/// (a family without series yet has only its TYPE line), and the samples present.
fn exported_metrics(exposition: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (Some(name), Some(kind)) = (it.next(), it.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for s in suffixes {
                out.insert(format!("{name}{s}"));
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            out.insert(line[..end].to_string());
        }
    }
    out
}

/// A kubelet vector's request, named `name` and addressed to the signer, as YAML for
/// `load_yaml` (which writes to the store directly, past any injected fault).
fn vector_request(name: &str, vector: &str) -> String {
    let vectors: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(repo("testdata/kubelet-vectors/vectors.json")).unwrap(),
    )
    .unwrap();
    let mut obj = vectors
        .iter()
        .find(|v| v["name"] == vector)
        .unwrap_or_else(|| panic!("vector {vector}"))["object"]
        .clone();
    let ns = obj["metadata"]["namespace"].as_str().unwrap().to_string();
    obj["spec"]["signerName"] = json!(SIGNER);
    obj["metadata"] = json!({"name": name, "namespace": ns});
    format!(
        "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\n{}\n",
        serde_json::to_string(&obj).unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    let dashboard =
        std::fs::read_to_string(repo("charts/podcert-signer/files/dashboard.json")).unwrap();
    let rules =
        std::fs::read_to_string(repo("charts/podcert-signer/files/alerts.rules.yaml")).unwrap();
    let used: BTreeSet<String> = used_metrics(&dashboard)
        .into_iter()
        .chain(used_metrics(&rules))
        .collect();
    assert!(used.len() >= 10, "{used:?}");

    // A family appears in /metrics with its first series, so the signer is driven through
    // what creates each one: an issuance, a denial, a 409 and a 500 on its status writes, a
    // CA rotation. Leader election is off: the injected faults must not end leadership.
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &shipped_rbac());
    let dir = tempfile::tempdir().unwrap();
    let signer = spawn_signer(
        &server,
        dir.path(),
        &[
            "--ca-secret",
            "podcert-system/podcert-signer-ca",
            "--ca-bootstrap",
            "--leader-election=false",
        ],
    );
    signer.wait_ready().await;
    signer
        .wait_metric("podcert_ca_not_after_timestamp_seconds{")
        .await;
    server
        .load_yaml(&vector_request("issued", "ED25519-stub-v1"))
        .unwrap();
    server
        .load_yaml(&vector_request("denied", "unknown-user-annotation"))
        .unwrap();
    signer.wait_counted("podcert_issued_total").await;
    signer.wait_counted("podcert_denied_total").await;
    server.set_faults(Faults {
        conflict_rate: 1.0,
        ..Faults::default()
    });
    server
        .load_yaml(&vector_request("conflicted", "ECDSAP256-stub-v1"))
        .unwrap();
    signer.wait_counted("podcert_status_conflicts_total").await;
    server.set_faults(Faults {
        error_rate: 1.0,
        error_code: 500,
        ..Faults::default()
    });
    signer.wait_counted("podcert_errors_total").await;
    server.set_faults(Faults::default());
    crate::fixtures::e2e::ca_rotate(&server, dir.path(), &[]);
    signer
        .wait_counted("podcert_ca_rotation_transitions_total")
        .await;

    let (code, exposition) = http_get(&signer.addr, "/metrics").await;
    assert_eq!(code, 200);
    let exported = exported_metrics(&exposition);
    let missing: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "used but not exported: {missing:?}\nexported: {exported:?}"
    );
}
