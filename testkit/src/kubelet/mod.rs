//! The kubelet emulator: N pods on M nodes requesting pod certificates the way kubelets do.
//!
//! [`Kubelet::start`] creates the fleet as an administrator, then runs one emulated kubelet per
//! node under that node's identity (a client per node from a caller-supplied closure).

pub mod bundle;
pub mod cli;
pub mod clock;
pub mod config;
mod der;
mod error;
pub mod issuance;
pub mod keys;
mod node;
pub mod objects;
mod pacer;
mod setup;
pub mod state;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;
use tokio::sync::{watch, Semaphore};

pub use clock::Clock;
pub use config::{Carrier, KubeletConfig, KubeletVersion, PcrVersion};
pub use error::KubeletError;
pub use keys::{KeySource, KeyType, KubeletKey};
pub use state::{LatencyStats, Phase, PodState, Summary};

/// Makes the client a node's kubelet uses (identity `system:node:<name>`).
pub type NodeClientFn = Arc<dyn Fn(&str) -> Client + Send + Sync>;

/// State shared by the node workers and the handle.
pub(crate) struct Shared {
    states: Mutex<Vec<PodState>>,
    /// How many of `states` are settled, kept up to date by `publish` so waiting for the fleet
    /// to settle does not copy every state on every change (quadratic with 10,000 pods).
    settled: AtomicUsize,
    /// (create acknowledged, latency) of every issuance.
    latencies: Mutex<Vec<(Instant, Duration)>>,
    changed: watch::Sender<u64>,
    /// Spreads request creations over time (`KubeletConfig::create_rate`).
    pub(crate) pacer: pacer::Pacer,
}

impl Shared {
    pub(crate) fn publish(&self, index: usize, state: PodState) {
        {
            let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = states.get_mut(index) {
                match (slot.phase.is_settled(), state.phase.is_settled()) {
                    (false, true) => {
                        self.settled.fetch_add(1, Ordering::Relaxed);
                    }
                    (true, false) => {
                        self.settled.fetch_sub(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                *slot = state;
            }
        }
        self.changed.send_modify(|g| *g += 1);
    }

    pub(crate) fn record_latency(&self, acked: Instant, d: Duration) {
        self.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((acked, d));
    }
}

/// Stands in for the Node authorizer, which the emulator does not have: nodes may create and
/// read PodCertificateRequests (NodeRestriction still limits them to their own pods).
pub const NODE_RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: emulated-node-authorizer }
rules:
- apiGroups: ["certificates.k8s.io"]
  resources: ["podcertificaterequests"]
  verbs: ["create", "get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: emulated-node-authorizer }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: emulated-node-authorizer }
subjects:
- { apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:nodes" }
"#;

/// The emulator, before it runs.
pub struct Kubelet {
    cfg: Arc<KubeletConfig>,
    admin: Client,
    node_client: NodeClientFn,
}

#[derive(Debug, thiserror::Error)]
#[error("timed out after {0:?} waiting for the emulated kubelets")]
pub struct WaitTimeout(pub Duration);

impl Kubelet {
    /// `admin` creates the fleet; `node_client(name)` gives the client of node `name`.
    pub fn new(
        cfg: KubeletConfig,
        admin: Client,
        node_client: impl Fn(&str) -> Client + Send + Sync + 'static,
    ) -> Self {
        Kubelet {
            cfg: Arc::new(cfg),
            admin,
            node_client: Arc::new(node_client),
        }
    }

    pub fn config(&self) -> &KubeletConfig {
        &self.cfg
    }

    /// The PCR version to write: the configured one, else the first served of those this
    /// kubelet version knows.
    pub async fn pcr_version(&self) -> Result<PcrVersion, KubeletError> {
        if let Some(v) = self.cfg.pcr_version {
            return Ok(v);
        }
        let known = self.cfg.kube_version.known_pcr_versions();
        for v in known {
            let gv = format!("certificates.k8s.io/{}", v.as_str());
            match self.admin.list_api_group_resources(&gv).await {
                Ok(list)
                    if list
                        .resources
                        .iter()
                        .any(|r| r.name == "podcertificaterequests") =>
                {
                    return Ok(*v)
                }
                Ok(_) => {}
                Err(e) if error::status_code(&e) == Some(404) => {}
                Err(e) => return Err(KubeletError::api(format!("discovering {gv}"), e)),
            }
        }
        Err(KubeletError::NoPcrVersion {
            kubelet: self.cfg.kube_version.to_string(),
            known: known
                .iter()
                .map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Creates the fleet and starts one kubelet per node.
    pub async fn start(&self) -> Result<KubeletHandle, KubeletError> {
        let fleet = self.prepare().await?;
        Ok(self.launch(fleet))
    }

    /// Creates (or finds) the fleet's objects without requesting anything yet, so a caller can
    /// time the requests apart from the set-up.
    pub async fn prepare(&self) -> Result<Fleet, KubeletError> {
        let version = self.pcr_version().await?;
        let pods = setup::create_fleet(&self.cfg, &self.admin).await?;
        Ok(Fleet { version, pods })
    }

    /// Starts one kubelet per node over a prepared fleet.
    pub fn launch(&self, fleet: Fleet) -> KubeletHandle {
        let Fleet { version, pods } = fleet;
        let initial = pods
            .iter()
            .map(|p| PodState {
                namespace: p.namespace.clone(),
                pod: p.pod.clone(),
                node: p.node.clone(),
                key_type: p.key_type,
                phase: Phase::Pending,
                requests_created: 0,
                current_request: None,
                last_latency: None,
                last_error: None,
            })
            .collect();
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            states: Mutex::new(initial),
            settled: AtomicUsize::new(0),
            latencies: Mutex::new(Vec::new()),
            changed,
            pacer: pacer::Pacer::new(self.cfg.create_rate),
        });
        let writes = Arc::new(Semaphore::new(self.cfg.create_concurrency.max(1)));
        let (cancel, cancel_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for j in 0..self.cfg.nodes {
            let node = self.cfg.node_name(j);
            let node_pods: Vec<_> = pods.iter().filter(|p| p.node == node).cloned().collect();
            let worker = node::NodeWorker::new(
                self.cfg.clone(),
                (self.node_client)(&node),
                node,
                version,
                node_pods,
                shared.clone(),
                writes.clone(),
            );
            tasks.push(tokio::spawn(worker.run(cancel_rx.clone())));
        }
        KubeletHandle {
            shared,
            cancel,
            tasks,
            version,
        }
    }
}

/// The fleet's objects, created and not yet requesting certificates.
pub struct Fleet {
    version: PcrVersion,
    pods: Vec<objects::PodInfo>,
}

impl Fleet {
    pub fn pods(&self) -> usize {
        self.pods.len()
    }
}

/// The running emulator.
pub struct KubeletHandle {
    shared: Arc<Shared>,
    cancel: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    version: PcrVersion,
}

impl KubeletHandle {
    /// The PodCertificateRequest version written and watched.
    pub fn pcr_version(&self) -> PcrVersion {
        self.version
    }

    pub fn states(&self) -> Vec<PodState> {
        self.shared
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn state(&self, namespace: &str, pod: &str) -> Option<PodState> {
        self.states()
            .into_iter()
            .find(|s| s.namespace == namespace && s.pod == pod)
    }

    /// Create-acknowledged -> Issued-seen latency of every issuance so far.
    pub fn latencies(&self) -> Vec<Duration> {
        self.latency_samples().into_iter().map(|(_, d)| d).collect()
    }

    /// Every issuance as (create acknowledged, latency), in the order they were seen: the
    /// timeline behind a latency tail.
    pub fn latency_samples(&self) -> Vec<(Instant, Duration)> {
        self.shared
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn summary(&self) -> Summary {
        Summary::from_states(&self.states(), &self.latencies())
    }

    /// Waits until `done(states)` holds; returns the states that satisfied it.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[PodState]) -> bool,
    ) -> Result<Vec<PodState>, WaitTimeout> {
        let mut rx = self.shared.changed.subscribe();
        let wait = async {
            loop {
                let states = self.states();
                if done(&states) {
                    return states;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| WaitTimeout(timeout))
    }

    /// Waits until every pod is issued or permanently refused.
    pub async fn wait_settled(&self, timeout: Duration) -> Result<Summary, WaitTimeout> {
        let total = self
            .shared
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        let mut rx = self.shared.changed.subscribe();
        let wait = async {
            while self.shared.settled.load(Ordering::Relaxed) < total {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| WaitTimeout(timeout))?;
        Ok(self.summary())
    }

    /// Pods settled so far (cheap: no copy of the states).
    pub fn settled(&self) -> usize {
        self.shared.settled.load(Ordering::Relaxed)
    }

    /// Stops every node's kubelet.
    pub async fn shutdown(self) {
        let _ = self.cancel.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
