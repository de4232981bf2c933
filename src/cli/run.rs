//! `podcert-signer run`: the in-cluster controller.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::ca::CaKeyType;
use crate::ca_rotation::{self, RotationOptions};
use crate::ca_source::{self, Bootstrap, CaHandle, CaSource};
use crate::cli::ca::KeyTypeArg;
use crate::controller::{self, RunOptions};
use crate::discovery;
use crate::http::{self, Health};
use crate::key_type::KeyType;
use crate::leader::{self, LeaderConfig};
use crate::policy::SignerConfig;
use crate::rotation::RotationPolicy;
use crate::spiffe_id::TrustDomain;
use crate::telemetry::{self, LogFormat, Metrics};
use crate::trust_bundle::{self, TrustBundleConfig};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, env = "PODCERT_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The signer name to serve, e.g. example.com/spiffe.
    #[arg(long, env = "PODCERT_SIGNER_NAME")]
    pub signer_name: String,
    /// SPIFFE trust domain of the issued IDs.
    #[arg(long, env = "PODCERT_TRUST_DOMAIN")]
    pub trust_domain: String,

    /// CA files mode: the signing certificate (+ intermediates), reloaded when it changes.
    #[arg(
        long,
        env = "PODCERT_CA_CERT",
        value_name = "FILE",
        requires = "ca_key"
    )]
    pub ca_cert: Option<PathBuf>,
    /// CA files mode: the signing key (PKCS#8, SEC1 or PKCS#1 PEM).
    #[arg(
        long,
        env = "PODCERT_CA_KEY",
        value_name = "FILE",
        requires = "ca_cert"
    )]
    pub ca_key: Option<PathBuf>,
    /// Root certificate(s) to publish when the signing CA is an intermediate (files mode).
    #[arg(long, env = "PODCERT_TRUST_ANCHORS", value_name = "FILE")]
    pub trust_anchors: Option<PathBuf>,
    /// Secret mode: a kubernetes.io/tls Secret NAMESPACE/NAME (tls.crt, tls.key, optional ca.crt).
    #[arg(long, env = "PODCERT_CA_SECRET", value_name = "NS/NAME", conflicts_with_all = ["ca_cert", "ca_memory"])]
    pub ca_secret: Option<String>,
    /// Secret mode: create the Secret with a fresh CA if it does not exist.
    #[arg(long, env = "PODCERT_CA_BOOTSTRAP", requires = "ca_secret")]
    pub ca_bootstrap: bool,
    /// Generate a CA in memory at start (demos: every restart changes the trust anchor).
    #[arg(long, env = "PODCERT_CA_MEMORY", conflicts_with = "ca_cert")]
    pub ca_memory: bool,
    /// Key type of a generated (bootstrap or memory) CA.
    #[arg(
        long,
        env = "PODCERT_CA_KEY_TYPE",
        value_enum,
        default_value = "ecdsa-p256"
    )]
    pub ca_key_type: KeyTypeArg,
    /// Validity of a generated CA.
    #[arg(long, env = "PODCERT_CA_VALIDITY", default_value = "365d", value_parser = super::parse_duration)]
    pub ca_validity: time::Duration,
    /// CA rotation (--ca-bootstrap): the next CA is prepared, and its root published, at this
    /// fraction of the active CA's life.
    #[arg(long, env = "PODCERT_CA_ROTATE_AT_FRACTION", default_value_t = RotationPolicy::DEFAULT_PREPARE_AT_FRACTION)]
    pub ca_rotate_at_fraction: f64,
    /// CA rotation: time between publishing the next CA's root and signing with it (every
    /// projected trust bundle must hold the root by then).
    #[arg(long, env = "PODCERT_CA_PROPAGATION_DELAY", default_value = "1h", value_parser = super::parse_duration)]
    pub ca_propagation_delay: time::Duration,
    /// How often CA files or the CA Secret are checked for new material.
    #[arg(long, env = "PODCERT_CA_RELOAD_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub ca_reload_interval: Duration,

    /// Longest certificate lifetime issued (a request's maxExpirationSeconds may lower it).
    #[arg(long, env = "PODCERT_MAX_LIFETIME", default_value = "24h", value_parser = super::parse_duration)]
    pub max_lifetime: time::Duration,
    /// Key types issued for (default: all six the API allows).
    #[arg(long, env = "PODCERT_KEY_TYPES", value_delimiter = ',')]
    pub key_types: Vec<KeyType>,

    /// Lease-based leader election (default: on in-cluster, off elsewhere).
    #[arg(long, env = "PODCERT_LEADER_ELECTION")]
    pub leader_election: Option<bool>,
    /// Namespace of the Lease (default: the pod's namespace, else "default").
    #[arg(long, env = "PODCERT_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    #[arg(
        long,
        env = "PODCERT_LEADER_ELECTION_LEASE",
        default_value = "podcert-signer"
    )]
    pub leader_election_lease: String,
    /// This replica's identity in the Lease (default: $POD_NAME, else hostname-pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Address of /metrics, /livez and /readyz.
    #[arg(long, env = "PODCERT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    #[arg(long, env = "PODCERT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Requests decided in parallel.
    #[arg(long, env = "PODCERT_CONCURRENCY", default_value_t = 32)]
    pub concurrency: u16,
    /// Record an Event on each request when it is issued or denied.
    #[arg(long, env = "PODCERT_EVENTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub events: bool,

    /// Publish the trust anchors as a ClusterTrustBundle.
    #[arg(long, env = "PODCERT_TRUST_BUNDLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub trust_bundle: bool,
    /// Suffix of the ClusterTrustBundle name (<signer name with / as :>:<suffix>).
    #[arg(long, env = "PODCERT_TRUST_BUNDLE_SUFFIX", default_value = "live")]
    pub trust_bundle_suffix: String,
    /// Extra label on the ClusterTrustBundle, KEY=VALUE (repeatable).
    #[arg(long = "trust-bundle-label", value_name = "KEY=VALUE")]
    pub trust_bundle_labels: Vec<String>,
    /// Also publish the bundle as a ConfigMap (key ca.crt) in this namespace (repeatable).
    #[arg(
        long = "trust-bundle-configmap-namespace",
        value_name = "NS",
        value_delimiter = ','
    )]
    pub trust_bundle_configmap_namespaces: Vec<String>,
    #[arg(long, default_value = "podcert-trust-bundle")]
    pub trust_bundle_configmap_name: String,
}

const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

pub(crate) async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("finding a kubeconfig or in-cluster configuration")?,
    };
    kube::Client::try_from(config).context("building the Kubernetes client")
}

fn ca_source(args: &RunArgs) -> anyhow::Result<CaSource> {
    let key_type: CaKeyType = args.ca_key_type.into();
    if let (Some(cert), Some(key)) = (&args.ca_cert, &args.ca_key) {
        return Ok(CaSource::Files {
            cert: cert.clone(),
            key: key.clone(),
            trust_anchors: args.trust_anchors.clone(),
            poll: args.ca_reload_interval,
        });
    }
    if let Some(s) = &args.ca_secret {
        let Some((ns, name)) = s
            .split_once('/')
            .filter(|(n, m)| !n.is_empty() && !m.is_empty())
        else {
            bail!("--ca-secret must be NAMESPACE/NAME, got {s:?}");
        };
        return Ok(CaSource::Secret {
            namespace: ns.into(),
            name: name.into(),
            bootstrap: args.ca_bootstrap.then(|| Bootstrap {
                key_type,
                trust_domain: args.trust_domain.clone(),
                validity: args.ca_validity,
            }),
            poll: args.ca_reload_interval,
        });
    }
    if args.ca_memory {
        return Ok(CaSource::Memory {
            key_type,
            trust_domain: args.trust_domain.clone(),
            validity: args.ca_validity,
        });
    }
    bail!("no CA configured: give --ca-cert and --ca-key, --ca-secret NS/NAME [--ca-bootstrap], or --ca-memory")
}

/// The CA rotation schedule from the flags; with --ca-bootstrap (the signer rotates the CA)
/// a schedule that could cut leaves short is refused with the policy's explanation.
fn rotation_options(args: &RunArgs, config: &SignerConfig) -> anyhow::Result<RotationOptions> {
    let policy = RotationPolicy {
        ca_validity: args.ca_validity,
        prepare_at_fraction: args.ca_rotate_at_fraction,
        propagation_delay: args.ca_propagation_delay,
        max_leaf_lifetime: config.max_lifetime,
        min_leaf_lifetime: crate::policy::MIN_LIFETIME,
        safety_margin: RotationPolicy::DEFAULT_SAFETY_MARGIN,
    };
    if args.ca_bootstrap {
        policy.validate().context(
            "CA rotation schedule (--ca-validity, --ca-rotate-at-fraction, --ca-propagation-delay, --max-lifetime)",
        )?;
    }
    let mut opts = RotationOptions::new(policy, &config.signer_name);
    opts.bundle_name = args.trust_bundle.then(|| {
        let mut tb = TrustBundleConfig::new(&config.signer_name);
        tb.suffix = args.trust_bundle_suffix.clone();
        tb.bundle_name()
    });
    opts.events = args.events.then(|| kube::runtime::events::Reporter {
        controller: "podcert-signer".into(),
        instance: args.identity.clone(),
    });
    Ok(opts)
}

fn labels(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("--trust-bundle-label must be KEY=VALUE, got {p:?}"))
        })
        .collect()
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init_logging(args.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let (shutdown_tx, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            info!("shutting down");
            let _ = shutdown_tx.send(true);
        });
        serve(args, shutdown).await
    })
}

/// Parses `run` flags from a list (for running the controller in-process, e.g. the demo).
pub fn parse_args<I, T>(args: I) -> anyhow::Result<RunArgs>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        run: RunArgs,
    }
    let w = <Wrapper as clap::Parser>::try_parse_from(
        std::iter::once(std::ffi::OsString::from("run")).chain(args.into_iter().map(Into::into)),
    )?;
    Ok(w.run)
}

/// Runs the controller until `shutdown` becomes true (the caller sets up logging).
pub async fn serve(args: RunArgs, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let td = TrustDomain::new(&args.trust_domain)?;
    let mut config = SignerConfig::new(&args.signer_name, td)?;
    config.max_lifetime = args.max_lifetime;
    if !args.key_types.is_empty() {
        config.allowed_key_types = args.key_types.iter().copied().collect();
    }
    config.validate()?;
    let source = ca_source(&args)?;
    let mut rotation = rotation_options(&args, &config)?;
    let tb_labels = labels(&args.trust_bundle_labels)?;

    let client = client(args.kubeconfig.as_ref()).await?;
    let metrics = Arc::new(Metrics::new());
    let ca = CaHandle::new();
    let (ca_loaded_tx, ca_loaded) = watch::channel(false);
    let (synced_tx, synced) = watch::channel(false);

    let (bound, http_task) = http::serve(
        args.metrics_addr,
        Health {
            metrics: metrics.clone(),
            checks: vec![("ca-loaded", ca_loaded), ("watch-synced", synced)],
        },
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("listening on {}", args.metrics_addr))?;
    info!(addr = %bound, "serving /metrics, /livez and /readyz");

    let reload_errors = metrics
        .ca_reload_errors
        .get_or_create(&Metrics::signer(&config.signer_name))
        .clone();
    let (leading_tx, leading) = watch::channel(false);
    rotation.leader = leading;
    rotation.metrics = Some(metrics.clone());
    let ca_task = ca_source::start_with(
        source,
        Some(client.clone()),
        ca.clone(),
        rotation,
        move || {
            reload_errors.inc();
        },
        shutdown.clone(),
    )
    .await
    .context("loading the CA")?;
    let mut ca_version = ca.subscribe();
    tokio::spawn(async move {
        if ca_version.wait_for(|v| *v > 0).await.is_ok() {
            let _ = ca_loaded_tx.send(true);
        }
    });

    let pcr = discovery::pod_certificate_requests(&client).await?;
    info!(version = %pcr.api_version, "PodCertificateRequest version chosen by discovery");

    let elect = args.leader_election.unwrap_or_else(in_cluster);
    let (leader_rx, leader_task) = if elect {
        let ns = args
            .leader_election_namespace
            .clone()
            .or_else(|| {
                std::fs::read_to_string(SA_NAMESPACE_FILE)
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "default".into());
        let identity = args.identity.clone().unwrap_or_else(default_identity);
        info!(namespace = %ns, lease = %args.leader_election_lease, %identity, "leader election on");
        let (rx, task) = leader::spawn(
            client.clone(),
            LeaderConfig::new(&ns, &args.leader_election_lease, &identity),
            shutdown.clone(),
        );
        (rx, Some(task))
    } else {
        warn!("leader election off: run a single replica");
        let (tx, rx) = watch::channel(true);
        std::mem::forget(tx); // leader for the process's lifetime
        (rx, None)
    };
    ca_rotation::forward_leadership(leader_rx.clone(), leading_tx);
    let leader_gauge = metrics.leader.clone();
    let mut leader_watch = leader_rx.clone();
    tokio::spawn(async move {
        loop {
            leader_gauge.set(i64::from(*leader_watch.borrow()));
            if leader_watch.changed().await.is_err() {
                return;
            }
        }
    });

    if args.trust_bundle {
        let ctb = discovery::cluster_trust_bundles(&client).await?;
        let mut tb = TrustBundleConfig::new(&config.signer_name);
        tb.suffix = args.trust_bundle_suffix.clone();
        tb.labels = tb_labels;
        tb.configmap_namespaces = args.trust_bundle_configmap_namespaces.clone();
        tb.configmap_name = args.trust_bundle_configmap_name.clone();
        info!(bundle = %tb.bundle_name(), version = %ctb.api_version, "publishing trust anchors");
        tokio::spawn(trust_bundle::run(
            client.clone(),
            ctb,
            tb,
            ca.clone(),
            leader_rx.clone(),
            shutdown.clone(),
        ));
    }

    let reporter = args.events.then(|| kube::runtime::events::Reporter {
        controller: "podcert-signer".into(),
        instance: args.identity.clone(),
    });
    let ctx = Arc::new(controller::Context::new(
        client, pcr, config, ca, metrics, leader_rx, reporter,
    ));
    controller::run(
        ctx,
        RunOptions {
            concurrency: args.concurrency,
            synced: synced_tx,
        },
        shutdown.clone(),
    )
    .await;

    if let Some(t) = leader_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    ca_task.abort();
    let _ = tokio::time::timeout(Duration::from_secs(2), http_task).await;
    Ok(())
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "podcert-signer".to_string()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
