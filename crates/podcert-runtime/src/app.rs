//! The composition root: [`run`] builds the process's [`AppContext`] from an [`AppConfig`]
//! and runs every part (HTTP, discovery, leader election, the signers) in one task scope
//! until it is cancelled. The CLI's `run` and the demo both call it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use podcert_k8s::settings::SignerSettings;

use crate::context::{AppContext, Issuance};
use crate::discovery;
use crate::http::{self, Health};
use crate::leader::{self, LeaderConfig};
use crate::membership::{self, MembershipConfig};
use crate::namespaces;
use crate::pod_lookup::PodLookup;
use crate::signer_manager::{self, Instance, ManagerConfig};
use crate::tasks::Tasks;
use crate::telemetry::Metrics;

/// Everything a process runs, resolved (no defaults left to guess).
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// kubeconfig file (None: inferred).
    pub kubeconfig: Option<PathBuf>,
    /// The signer configured on the command line (already converted from its spec).
    pub signer: Option<SignerSettings>,
    /// Serving PodCertificateSigner objects, when set.
    pub objects: Option<ObjectSigners>,
    /// Lease-based leader election; None: this replica always leads (run one replica).
    pub leader_election: Option<LeaderConfig>,
    /// With leader election: who decides requests. The leader always keeps CA rotation,
    /// bundle publication and PodCertificateSigner status.
    pub ha_mode: HaMode,
    /// This replica's name in Events (the Lease identity).
    pub identity: Option<String>,
    /// Address of /metrics, /livez and /readyz.
    pub metrics_addr: SocketAddr,
    /// Requests decided in parallel, per signer.
    pub concurrency: u16,
    /// Record an Event on each request when it is issued or denied.
    pub events: bool,
    /// Discover the ClusterTrustBundle API (every signer with a bundle publishes to it).
    pub trust_bundles: bool,
    /// Serve the flag signer's trust bundle as a SPIFFE bundle endpoint.
    pub bundle_endpoint: Option<crate::bundle_endpoint::EndpointConfig>,
}

/// Who decides requests when several replicas run (`--ha-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaMode {
    /// Every replica: its own requests (rendezvous hashing over member Leases) at once, a live
    /// owner's after `hedge`, a gone owner's at once.
    ActiveActive { hedge: Duration },
    /// The elected leader only; standbys wait for the Lease.
    Leader,
}

/// How PodCertificateSigner objects are served.
#[derive(Debug, Clone)]
pub struct ObjectSigners {
    /// Signer-name domains objects may use.
    pub domains: Vec<String>,
    /// The namespace CA Secrets are read from (the deployment's own).
    pub namespace: String,
    /// How often their CA material is re-read.
    pub poll: Duration,
}

/// How long the HTTP server and the election get to wind down (the Lease is released then).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs until `shutdown` is cancelled (the caller sets up logging). Errors are configuration
/// or startup errors: the API unreachable, the address taken, the flag signer's CA unusable.
pub async fn run(config: AppConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let tasks = Tasks::with_token(shutdown.child_token());
    let result = serve(config, &tasks, shutdown).await;
    tasks.stop(SHUTDOWN_GRACE).await;
    result
}

async fn serve(
    config: AppConfig,
    tasks: &Tasks,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = crate::client::connect(config.kubeconfig.as_deref()).await?;
    let metrics = Arc::new(Metrics::new());
    let (ca_loaded_tx, ca_loaded) = watch::channel(false);
    let (synced_tx, synced) = watch::channel(false);
    let (objects_synced_tx, objects_synced) = watch::channel(false);
    let (key_problem_tx, key_problem) = watch::channel(None);
    // What a replica waits for before it takes a share of the requests (active-active).
    let mut ready = Vec::new();
    if config.signer.is_some() {
        ready.push(ca_loaded.clone());
        ready.push(synced.clone());
    }
    if config.objects.is_some() {
        ready.push(objects_synced.clone());
    }
    let mut checks = Vec::new();
    let mut problems = Vec::new();
    if config.signer.is_some() {
        checks.push(("ca-loaded", ca_loaded));
        checks.push(("watch-synced", synced));
        problems.push(("ca-key", key_problem));
    }
    if config.objects.is_some() {
        checks.push(("signers-synced", objects_synced));
    }
    // Active-active: ready once this replica counts itself a member (a rolling update then
    // waits for the new replica to take its share before stopping an old one).
    let (joined_tx, joined) = watch::channel(false);
    let active_active =
        config.leader_election.is_some() && matches!(config.ha_mode, HaMode::ActiveActive { .. });
    if active_active {
        checks.push(("active-active-member", joined));
    }

    let bound = http::serve(
        config.metrics_addr,
        Health {
            metrics: metrics.clone(),
            checks,
            problems,
        },
        tasks,
    )
    .await
    .with_context(|| format!("listening on {}", config.metrics_addr))?;
    info!(addr = %bound, "serving /metrics, /livez and /readyz");

    let pcr = discovery::pod_certificate_requests(&client).await?;
    info!(version = %pcr.api_version, "PodCertificateRequest version chosen by discovery");
    let ctb = if config.trust_bundles {
        Some(discovery::cluster_trust_bundles(&client).await?)
    } else {
        None
    };

    // Without an election this replica leads for the process's lifetime: the sender lives
    // (in this frame) until the controller has stopped.
    let mut _always_leading = None;
    let leader_rx = match &config.leader_election {
        Some(cfg) => {
            info!(namespace = %cfg.namespace, lease = %cfg.lease_name, identity = %cfg.identity, "leader election on");
            leader::spawn(client.clone(), cfg.clone(), tasks)
        }
        None => {
            warn!("leader election off: run a single replica");
            let (tx, rx) = watch::channel(true);
            _always_leading = Some(tx);
            rx
        }
    };
    let issuance = match (&config.leader_election, config.ha_mode) {
        (Some(cfg), HaMode::ActiveActive { hedge }) => {
            let m = MembershipConfig::new(&cfg.namespace, &cfg.lease_name, &cfg.identity);
            let members =
                membership::spawn(client.clone(), m, metrics.clone(), ready, joined_tx, tasks);
            Issuance::ActiveActive { members, hedge }
        }
        _ => Issuance::Leader,
    };
    let leader_gauge = metrics.leader.clone();
    let mut leader_watch = leader_rx.clone();
    tasks.spawn(async move {
        loop {
            leader_gauge.set(i64::from(*leader_watch.borrow_and_update()));
            if leader_watch.changed().await.is_err() {
                return;
            }
        }
    });

    let reporter = config.events.then(|| kube::runtime::events::Reporter {
        controller: "podcert-signer".into(),
        instance: config.identity.clone(),
    });
    let ctx = AppContext {
        client: client.clone(),
        metrics,
        leader: leader_rx,
        reporter,
        pcr,
        ctb,
        namespaces: config
            .objects
            .is_some()
            .then(|| namespaces::spawn(client.clone(), tasks)),
        // Reads nothing until a signer needs it (get pods, list/watch services).
        pods: config
            .objects
            .is_some()
            .then(|| PodLookup::new(client.clone(), tasks.clone())),
        concurrency: config.concurrency,
        issuance,
        tasks: tasks.clone(),
    };

    let flag_claims = config
        .signer
        .as_ref()
        .map(signer_manager::conflict::Claims::of_settings);
    let flag_instance = match config.signer {
        Some(settings) => {
            let i = Instance::start(&ctx, settings)
                .await
                .context("loading the CA")?;
            forward_readiness(&i, ca_loaded_tx, synced_tx, key_problem_tx, tasks);
            if let Some(ep) = config.bundle_endpoint.clone() {
                let published = match (&ctx.ctb, &i.settings().trust_bundle) {
                    (Some(ctb), Some(tb)) => Some((client.clone(), ctb.clone(), tb.preview_name())),
                    _ => None,
                };
                let source = crate::bundle_endpoint::Source {
                    ca: i.ca().clone(),
                    published,
                };
                let bound = crate::bundle_endpoint::bind(ep, source)
                    .await
                    .context("--bundle-endpoint")?;
                tasks.spawn_graceful(bound.serve(tasks.child()));
            }
            Some(i)
        }
        None => None,
    };

    match config.objects {
        Some(objects) => {
            let cfg = ManagerConfig {
                domains: objects.domains,
                own_namespace: objects.namespace,
                poll: objects.poll,
                flag: flag_claims.map(|claims| signer_manager::FlagSigner {
                    claims,
                    ca: flag_instance.as_ref().map(|i| i.ca().clone()),
                }),
            };
            signer_manager::run(ctx, cfg, objects_synced_tx).await;
        }
        None => shutdown.cancelled().await,
    }
    if let Some(i) = flag_instance {
        i.stop().await;
    }
    Ok(())
}

/// Drives the flag signer's readiness checks from its instance.
fn forward_readiness(
    i: &Instance,
    ca_loaded: watch::Sender<bool>,
    synced: watch::Sender<bool>,
    key_problem: watch::Sender<Option<String>>,
    tasks: &Tasks,
) {
    let mut problems = i.ca().subscribe_key_problem();
    tasks.spawn(async move {
        loop {
            key_problem.send_replace(problems.borrow_and_update().clone());
            if problems.changed().await.is_err() {
                return;
            }
        }
    });
    let mut ca_version = i.ca().subscribe();
    tasks.spawn(async move {
        if ca_version.wait_for(|v| *v > 0).await.is_ok() {
            let _ = ca_loaded.send(true);
        }
    });
    let mut s = i.synced();
    tasks.spawn(async move {
        if s.wait_for(|v| *v).await.is_ok() {
            let _ = synced.send(true);
        }
    });
}
