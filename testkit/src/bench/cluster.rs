//! What `bench` and `chaos` run against: the API emulator in this process with the chart's
//! RBAC and a CA on disk, the real `podcert-signer run` binary as child processes, and the
//! emulated kubelets.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use podcert_core::ca::{generate_self_signed, CaKeyType};
use time::OffsetDateTime;

use super::proc_stats::{self, ProcError, ProcUsage};
use crate::apiserver::{KubeVersion, ServerConfig, TestServer};
use crate::demo::CHART_RBAC;
use crate::kubelet::{self, Kubelet, KubeletConfig};
use crate::rules::UserInfo;

pub const SIGNER: &str = "podcert.dev/spiffe";
pub const SIGNER_NS: &str = "podcert-system";
pub const SIGNER_SA: &str = "podcert-signer";
/// The Lease the signer replicas elect a leader with (the `run` default).
pub const LEASE: &str = "podcert-signer";

/// The signer binary built next to this one (`target/<profile>/podcert-signer`); test
/// binaries live one level deeper, in `deps/`.
pub fn default_signer_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut dir = exe.parent();
    while let Some(d) = dir {
        let candidate = d.join("podcert-signer");
        if candidate.is_file() {
            return Ok(candidate);
        }
        if d.file_name().is_some_and(|n| n == "deps") {
            dir = d.parent();
        } else {
            break;
        }
    }
    bail!(
        "no podcert-signer binary next to {}; build it (cargo build -p podcert-signer) or pass --signer-bin",
        exe.display()
    )
}

/// The emulator, a CA on disk, and the signer's kubeconfig.
pub struct Cluster {
    pub server: TestServer,
    dir: tempfile::TempDir,
    ca_cert: PathBuf,
    ca_key: PathBuf,
    kubeconfig: PathBuf,
    signer_bin: PathBuf,
}

impl Cluster {
    pub async fn start(signer_bin: PathBuf, ca_key_type: CaKeyType) -> anyhow::Result<Self> {
        Self::start_for(signer_bin, ca_key_type, false).await
    }

    /// As [`Cluster::start`]; with `ml_dsa`, a 1.38 server with the PodCertificateMLDSA gate.
    pub async fn start_for(
        signer_bin: PathBuf,
        ca_key_type: CaKeyType,
        ml_dsa: bool,
    ) -> anyhow::Result<Self> {
        let server = TestServer::start(ServerConfig {
            // Large bursts: enough history that a resumed watch rarely gets 410 Gone.
            watch_history: 50_000,
            version: if ml_dsa {
                KubeVersion::V1_38
            } else {
                KubeVersion::V1_37
            },
            pod_certificate_mldsa: ml_dsa,
            ..ServerConfig::default()
        })
        .await?;
        server.load_yaml(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{ name: {SIGNER_NS} }}\n"
        ))?;
        server
            .load_yaml(CHART_RBAC)
            .context("loading the chart's RBAC")?;
        server.load_yaml(kubelet::NODE_RBAC)?;
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let ca = generate_self_signed(
            ca_key_type,
            Some("cluster.local"),
            time::Duration::days(30),
            OffsetDateTime::now_utc(),
        )?;
        let (ca_cert, ca_key) =
            podcert_runtime::ca_files::write_ca_dir(&dir.path().join("ca"), &ca)?;
        let kubeconfig = dir.path().join("signer.kubeconfig");
        server.write_kubeconfig(
            &kubeconfig,
            &UserInfo::service_account(SIGNER_NS, SIGNER_SA),
        )?;
        Ok(Cluster {
            server,
            dir,
            ca_cert,
            ca_key,
            kubeconfig,
            signer_bin,
        })
    }

    /// Signs with this CA instead of the generated one (`bench --ca-cert/--ca-key`: e.g. a
    /// key in a PKCS#11 token, given as its `pkcs11:` URI).
    pub fn use_ca(&mut self, cert: PathBuf, key: PathBuf) {
        self.ca_cert = cert;
        self.ca_key = key;
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `podcert-signer run` as the chart's service account with the stable flags, plus
    /// `extra`. Its log goes to `<dir>/<identity>.log`.
    pub fn spawn_signer(&self, identity: &str, extra: &[String]) -> anyhow::Result<SignerProcess> {
        let port = free_port()?;
        let log = self.dir.path().join(format!("{identity}.log"));
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&self.signer_bin)
            .arg("run")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--signer-name", SIGNER, "--trust-domain", "cluster.local"])
            .arg("--ca-cert")
            .arg(&self.ca_cert)
            .arg("--ca-key")
            .arg(&self.ca_key)
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--identity", identity])
            .args(["--leader-election-namespace", SIGNER_NS])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("PODCERT_BENCH_SIGNER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", self.signer_bin.display()))?;
        Ok(SignerProcess {
            child: Some(child),
            identity: identity.to_string(),
            metrics: format!("127.0.0.1:{port}"),
            log,
        })
    }

    /// Emulated kubelets for this cluster's signer, each node with its own identity.
    pub fn kubelet(&self, cfg: KubeletConfig) -> Kubelet {
        let clients: std::collections::HashMap<String, kube::Client> = (0..cfg.nodes)
            .map(|j| cfg.node_name(j))
            .map(|n| (n.clone(), self.server.client_for(&UserInfo::node(&n))))
            .collect();
        let admin = self.server.admin_client();
        let fallback = admin.clone();
        Kubelet::new(cfg, admin, move |n| {
            clients.get(n).cloned().unwrap_or_else(|| fallback.clone())
        })
    }

    /// The identity holding the signer's Lease, if any.
    pub fn lease_holder(&self) -> Option<String> {
        let lease =
            self.server
                .store()
                .get("coordination.k8s.io", "leases", Some(SIGNER_NS), LEASE)?;
        lease["spec"]["holderIdentity"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(str::to_string)
    }

    /// Stops the emulator. With `PODCERT_BENCH_KEEP_LOGS` set, the directory with the
    /// signers' logs is kept (its path printed to stderr) to read what happened in a run.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
        if std::env::var_os("PODCERT_BENCH_KEEP_LOGS").is_some() {
            eprintln!("signer logs kept in {}", self.dir.keep().display());
        }
    }
}

/// A running signer; killed when dropped.
pub struct SignerProcess {
    child: Option<Child>,
    pub identity: String,
    metrics: String,
    log: PathBuf,
}

impl SignerProcess {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until `/readyz` answers 200; fails early if the process exits.
    pub async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "signer {} exited ({status}) before it was ready; its log:\n{}",
                        self.identity,
                        self.log_tail(40)
                    );
                }
            }
            if http_status(&self.metrics, "/readyz").await == Some(200) {
                return Ok(());
            }
            if start.elapsed() > within {
                bail!(
                    "signer {} not ready within {within:?}; its log:\n{}",
                    self.identity,
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// CPU time and peak RSS so far (read before the process is reaped).
    pub fn usage(&self) -> Result<ProcUsage, ProcError> {
        proc_stats::read(self.pid().unwrap_or(0))
    }

    /// SIGKILL: a crash, no lease release.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for SignerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .context("finding a free port")?
        .local_addr()?
        .port())
}

/// The status code of a plain HTTP GET, or `None` when nothing answers.
async fn http_status(addr: &str, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
