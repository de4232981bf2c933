//! Running the real `podcert-signer run` binary against the API emulator.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use podcert_testkit::apiserver::TestServer;
use podcert_testkit::rules::UserInfo;
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_podcert-signer");
pub const SIGNER: &str = "podcert.dev/spiffe";
pub const SIGNER_NS: &str = "podcert-system";
pub const SIGNER_SA: &str = "podcert-signer";

/// The RBAC the Helm chart ships (rendered with release `podcert-signer` in `podcert-system`
/// and the default signer `podcert.dev/spiffe`): the signer runs with exactly that.
pub fn shipped_rbac() -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/podcert-signer/rendered/rbac.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn signer_identity() -> UserInfo {
    UserInfo::service_account(SIGNER_NS, SIGNER_SA)
}

pub fn pcr_resource(version: &str) -> ApiResource {
    ApiResource {
        group: "certificates.k8s.io".into(),
        version: version.into(),
        api_version: format!("certificates.k8s.io/{version}"),
        kind: "PodCertificateRequest".into(),
        plural: "podcertificaterequests".into(),
    }
}

pub fn ctb_resource(version: &str) -> ApiResource {
    ApiResource {
        group: "certificates.k8s.io".into(),
        version: version.into(),
        api_version: format!("certificates.k8s.io/{version}"),
        kind: "ClusterTrustBundle".into(),
        plural: "clustertrustbundles".into(),
    }
}

/// Namespaces and the signer's own namespace, then the shipped RBAC.
pub fn prepare(server: &TestServer, namespaces: &[&str]) {
    let mut yaml = String::new();
    for ns in namespaces.iter().chain([SIGNER_NS].iter()) {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
        ));
    }
    yaml.push_str(&format!(
        "---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {SIGNER_SA}\n  namespace: {SIGNER_NS}\n"
    ));
    server.load_yaml(&yaml).unwrap();
    server.load_yaml(&shipped_rbac()).unwrap();
}

/// A running signer process; killed on drop.
pub struct Signer {
    pub child: Child,
    pub metrics: String,
    pub log: PathBuf,
}

impl Drop for Signer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Signer {
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as the kubelet stops a pod.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    /// SIGKILL: a crash, no lease release.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.metrics, path).await
    }

    pub async fn wait_ready(&self, within: Duration) {
        let start = Instant::now();
        loop {
            if let (200, _) = self.get("/readyz").await {
                return;
            }
            assert!(
                start.elapsed() < within,
                "signer not ready in {within:?}; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `podcert-signer ca init --out DIR` (a files-mode CA: DIR/ca.crt, DIR/ca.key); returns the
/// certificate PEM.
pub fn ca_init(dir: &Path) -> String {
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `podcert-signer run` as the chart's service account, serving the chart's default
/// signer, with `extra` flags.
pub fn spawn_signer(server: &TestServer, dir: &Path, name: &str, extra: &[&str]) -> Signer {
    let mut args = vec!["--signer-name", SIGNER, "--trust-domain", "cluster.local"];
    args.extend_from_slice(extra);
    spawn_run(server, dir, name, &args)
}

/// Starts `podcert-signer run` as the chart's service account with exactly `args` (plus the
/// kubeconfig, metrics address and identity).
pub fn spawn_run(server: &TestServer, dir: &Path, name: &str, args: &[&str]) -> Signer {
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    server
        .write_kubeconfig(&kubeconfig, &signer_identity())
        .unwrap();
    spawn_with_kubeconfig(&kubeconfig, dir, name, args)
}

/// Starts `podcert-signer run` with `kubeconfig` and exactly `args` (plus the metrics address
/// and identity).
pub fn spawn_with_kubeconfig(kubeconfig: &Path, dir: &Path, name: &str, args: &[&str]) -> Signer {
    let port = free_port();
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(BIN)
        .arg("run")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(["--identity", name])
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("E2E_SIGNER_LOG").unwrap_or_else(|_| "info,podcert_signer=debug,podcert_runtime=debug,podcert_core=debug,podcert_k8s=debug".into()),
        )
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Signer {
        child,
        metrics: format!("127.0.0.1:{port}"),
        log,
    }
}

pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The kubelet vectors (Go-built requests).
pub fn vectors() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/kubelet-vectors/vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Creates a vector's request (as the administrator: the vectors' pods do not exist, so
/// NodeRestriction, which only restricts node identities, is not in play). Names are lowered
/// as a generateName would make them.
pub async fn create_vector(server: &TestServer, v: &Value, name: &str) -> (String, String) {
    let mut obj = v["object"].clone();
    let ns = obj["metadata"]["namespace"].as_str().unwrap().to_string();
    // Address it to the chart's signer (the signer name is not covered by the proof).
    obj["spec"]["signerName"] = json!(SIGNER);
    create_request(server, obj, &ns, name).await;
    (ns, name.to_string())
}

/// Creates request object `obj` as `ns`/`name` (as the administrator), in the version its
/// apiVersion names; returns that version.
pub async fn create_request(server: &TestServer, mut obj: Value, ns: &str, name: &str) -> String {
    let version = obj["apiVersion"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    obj["metadata"] = json!({ "name": name, "namespace": ns });
    let api: Api<DynamicObject> =
        Api::namespaced_with(server.admin_client(), ns, &pcr_resource(&version));
    let o: DynamicObject = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &o)
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    version
}

/// Waits for a terminal condition and returns the object (as `version` serves it).
pub async fn wait_terminal(
    server: &TestServer,
    version: &str,
    ns: &str,
    name: &str,
    within: Duration,
) -> Value {
    let api: Api<DynamicObject> =
        Api::namespaced_with(server.admin_client(), ns, &pcr_resource(version));
    let start = Instant::now();
    loop {
        if let Ok(o) = api.get(name).await {
            let v = serde_json::to_value(&o).unwrap();
            if let Some(c) = v["status"]["conditions"].as_array().and_then(|c| c.first()) {
                if c["status"] == "True" {
                    return v;
                }
            }
        }
        assert!(
            start.elapsed() < within,
            "{ns}/{name} not decided within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn condition(obj: &Value) -> (String, String) {
    let c = &obj["status"]["conditions"][0];
    (
        c["type"].as_str().unwrap_or("").into(),
        c["reason"].as_str().unwrap_or("").into(),
    )
}

use podcert_testkit::kubelet::{
    KeyType as KKeyType, Kubelet, KubeletConfig, KubeletHandle, KubeletVersion, NODE_RBAC,
};

/// Emulated kubelets for `pods` pods, all six key types round robin, against `server`.
pub async fn kubelets(
    server: &TestServer,
    version: KubeletVersion,
    pods: usize,
    prefix: &str,
    tweak: impl FnOnce(&mut KubeletConfig),
) -> KubeletHandle {
    server.load_yaml(NODE_RBAC).unwrap();
    let mut cfg = KubeletConfig::for_tests();
    cfg.kube_version = version;
    cfg.pods = pods;
    cfg.nodes = 2;
    cfg.namespaces = 2;
    cfg.signer_name = SIGNER.into();
    cfg.name_prefix = prefix.into();
    cfg.key_types = vec![
        KKeyType::Ed25519,
        KKeyType::EcdsaP256,
        KKeyType::EcdsaP384,
        KKeyType::EcdsaP521,
        KKeyType::Rsa3072,
        KKeyType::Rsa4096,
    ];
    tweak(&mut cfg);
    // One client per node identity, made up front so the factory can be 'static.
    let clients: std::collections::HashMap<String, kube::Client> = (0..cfg.nodes)
        .map(|j| cfg.node_name(j))
        .map(|n| (n.clone(), server.client_for(&UserInfo::node(&n))))
        .collect();
    let admin = server.admin_client();
    Kubelet::new(cfg, admin.clone(), move |n| {
        clients.get(n).cloned().unwrap_or_else(|| admin.clone())
    })
    .start()
    .await
    .unwrap()
}

/// Polls `check` every 100 ms until it gives `Some`, and panics with `what()` (evaluated then,
/// so it can carry logs) if that takes longer than `within`.
pub async fn eventually<T, Fut>(
    within: Duration,
    what: impl Fn() -> String,
    mut check: impl FnMut() -> Fut,
) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < within, "{} (waited {within:?})", what());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
