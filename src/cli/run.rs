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

use crate::cli::ca::KeyTypeArg;
use podcert_core::ca::CaKeyType;
use podcert_core::key_type::KeyType;
use podcert_core::policy::SignerConfig;
use podcert_core::rotation::RotationPolicy;
use podcert_core::spiffe_id::TrustDomain;
use podcert_k8s::crd::SignerSettings;
use podcert_k8s::settings::{Bootstrap, CaSpec};
use podcert_k8s::trust_bundle::TrustBundleConfig;
use podcert_runtime::discovery;
use podcert_runtime::http::{self, Health};
use podcert_runtime::leader::{self, LeaderConfig};
use podcert_runtime::namespaces;
use podcert_runtime::signer_manager::{self, Instance, ManagerConfig, Shared};
use podcert_runtime::telemetry::{self, LogFormat, Metrics};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, env = "PODCERT_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The signer name to serve, e.g. example.com/spiffe (optional with --crd-signers).
    #[arg(
        long,
        env = "PODCERT_SIGNER_NAME",
        required_unless_present = "crd_signers",
        requires = "trust_domain"
    )]
    pub signer_name: Option<String>,
    /// SPIFFE trust domain of the issued IDs.
    #[arg(long, env = "PODCERT_TRUST_DOMAIN", requires = "signer_name")]
    pub trust_domain: Option<String>,

    /// Also serve every signer declared as a PodCertificateSigner object (install the CRD
    /// first: `podcert-signer crd | kubectl apply -f -`).
    #[arg(long, env = "PODCERT_CRD_SIGNERS", requires = "signer_domains")]
    pub crd_signers: bool,
    /// Signer-name domains PodCertificateSigner objects may use, e.g. podcert.dev (serves
    /// podcert.dev/*); comma-separated or repeated. Names outside them are reported not Ready.
    #[arg(
        long = "signer-domain",
        env = "PODCERT_SIGNER_DOMAINS",
        value_delimiter = ','
    )]
    pub signer_domains: Vec<String>,
    /// This deployment's namespace: CA Secrets of PodCertificateSigners are read from it
    /// (default: $POD_NAMESPACE, the service account's namespace, else "default").
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,

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
    /// CA files mode: load --ca-key even if group or others may read it (refused by default).
    #[arg(long, env = "PODCERT_ALLOW_INSECURE_KEY_PERMISSIONS")]
    pub allow_insecure_key_permissions: bool,
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
    pub log_format: LogFormatArg,
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

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormatArg {
    Json,
    Text,
}

impl From<LogFormatArg> for LogFormat {
    fn from(f: LogFormatArg) -> Self {
        match f {
            LogFormatArg::Json => LogFormat::Json,
            LogFormatArg::Text => LogFormat::Text,
        }
    }
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
    kube::Client::try_from(with_timeouts(config)).context("building the Kubernetes client")
}

/// A watch may sit silent until the apiserver ends it (kube-runtime asks for 290 s and gives
/// up itself after 295 s); the read timeout must not cut it short.
const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// Socket timeouts, so a dead connection fails a call instead of hanging it. They are a
/// backstop: leadership does not depend on them (the election bounds its own calls and ends
/// leadership on a local timer, see `leader`). TCP keepalive is not set: kube 5 builds its
/// connector internally and offers no knob for it; the read timeout covers a half-open peer.
fn with_timeouts(mut config: kube::Config) -> kube::Config {
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(READ_TIMEOUT);
    // Count the read timeout from when a request is sent, not from when its pooled connection
    // went idle.
    config.reset_reader_on_write = true;
    config.write_timeout = Some(Duration::from_secs(30));
    config
}

fn ca_source(args: &RunArgs, trust_domain: &str) -> anyhow::Result<CaSpec> {
    let key_type: CaKeyType = args.ca_key_type.into();
    if let (Some(cert), Some(key)) = (&args.ca_cert, &args.ca_key) {
        return Ok(CaSpec::Files {
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
        return Ok(CaSpec::Secret {
            namespace: ns.into(),
            name: name.into(),
            bootstrap: args.ca_bootstrap.then(|| Bootstrap {
                key_type,
                trust_domain: trust_domain.to_string(),
                validity: args.ca_validity,
            }),
            poll: args.ca_reload_interval,
        });
    }
    if args.ca_memory {
        return Ok(CaSpec::Memory {
            key_type,
            trust_domain: trust_domain.to_string(),
            validity: args.ca_validity,
        });
    }
    bail!("no CA configured: give --ca-cert and --ca-key, --ca-secret NS/NAME [--ca-bootstrap], or --ca-memory")
}

/// The signer configured by flags, if any.
fn flag_signer(args: &RunArgs) -> anyhow::Result<Option<SignerSettings>> {
    let (Some(name), Some(td)) = (&args.signer_name, &args.trust_domain) else {
        return Ok(None);
    };
    let mut config = SignerConfig::new(name, TrustDomain::new(td)?)?;
    config.max_lifetime = args.max_lifetime;
    if !args.key_types.is_empty() {
        config.allowed_key_types = args.key_types.iter().copied().collect();
    }
    config.validate()?;
    let ca = ca_source(args, td)?;
    let rotation = RotationPolicy {
        ca_validity: args.ca_validity,
        prepare_at_fraction: args.ca_rotate_at_fraction,
        propagation_delay: args.ca_propagation_delay,
        max_leaf_lifetime: config.max_lifetime,
        min_leaf_lifetime: podcert_core::policy::MIN_LIFETIME,
        safety_margin: RotationPolicy::DEFAULT_SAFETY_MARGIN,
    };
    // Only a bootstrapped CA is rotated by the signer: its schedule must be safe.
    if args.ca_bootstrap {
        rotation.validate().context(
            "CA rotation schedule (--ca-validity, --ca-rotate-at-fraction, --ca-propagation-delay, --max-lifetime)",
        )?;
    }
    let trust_bundle = if args.trust_bundle {
        let mut tb = TrustBundleConfig::new(name);
        tb.suffix = args.trust_bundle_suffix.clone();
        tb.labels = labels(&args.trust_bundle_labels)?;
        tb.configmap_namespaces = args.trust_bundle_configmap_namespaces.clone();
        tb.configmap_name = args.trust_bundle_configmap_name.clone();
        Some(tb)
    } else {
        None
    };
    Ok(Some(SignerSettings {
        config,
        ca,
        trust_bundle,
        rotation,
    }))
}

fn own_namespace(explicit: Option<&String>) -> String {
    explicit
        .cloned()
        .or_else(|| {
            std::fs::read_to_string(SA_NAMESPACE_FILE)
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
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
    telemetry::init_logging(args.log_format.into());
    podcert_runtime::ca_files::allow_insecure_key_permissions(args.allow_insecure_key_permissions);
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
    let flag = flag_signer(&args)?;
    if args.crd_signers {
        for d in &args.signer_domains {
            if !podcert_core::policy::valid_signer_name(&format!("{d}/x")) {
                bail!("--signer-domain {d:?} is not a DNS domain like example.com");
            }
        }
    }

    let client = client(args.kubeconfig.as_ref()).await?;
    let metrics = Arc::new(Metrics::new());
    let (ca_loaded_tx, ca_loaded) = watch::channel(false);
    let (synced_tx, synced) = watch::channel(false);
    let (crd_synced_tx, crd_synced) = watch::channel(false);
    let mut checks = Vec::new();
    if flag.is_some() {
        checks.push(("ca-loaded", ca_loaded));
        checks.push(("watch-synced", synced));
    }
    if args.crd_signers {
        checks.push(("signers-synced", crd_synced));
    }

    let (bound, http_task) = http::serve(
        args.metrics_addr,
        Health {
            metrics: metrics.clone(),
            checks,
        },
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("listening on {}", args.metrics_addr))?;
    info!(addr = %bound, "serving /metrics, /livez and /readyz");

    let pcr = discovery::pod_certificate_requests(&client).await?;
    info!(version = %pcr.api_version, "PodCertificateRequest version chosen by discovery");
    let ctb = if args.trust_bundle {
        Some(discovery::cluster_trust_bundles(&client).await?)
    } else {
        None
    };

    let elect = args.leader_election.unwrap_or_else(in_cluster);
    let (leader_rx, leader_task) = if elect {
        let ns = own_namespace(
            args.leader_election_namespace
                .as_ref()
                .or(args.namespace.as_ref()),
        );
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

    let reporter = args.events.then(|| kube::runtime::events::Reporter {
        controller: "podcert-signer".into(),
        instance: args.identity.clone(),
    });
    let shared = Shared {
        client: client.clone(),
        metrics,
        leader: leader_rx,
        reporter,
        pcr,
        ctb,
        namespaces: args
            .crd_signers
            .then(|| namespaces::spawn(client.clone(), shutdown.clone())),
        concurrency: args.concurrency,
    };

    let flag_claims = flag
        .as_ref()
        .map(signer_manager::conflict::Claims::of_settings);
    let flag_instance = match flag {
        Some(settings) => {
            let i = Instance::start(&shared, settings)
                .await
                .context("loading the CA")?;
            forward_readiness(&i, ca_loaded_tx, synced_tx);
            Some(i)
        }
        None => None,
    };

    if args.crd_signers {
        let cfg = ManagerConfig {
            domains: args.signer_domains.clone(),
            own_namespace: own_namespace(args.namespace.as_ref()),
            poll: args.ca_reload_interval,
            flag: flag_claims.map(|claims| signer_manager::FlagSigner {
                claims,
                ca: flag_instance.as_ref().map(|i| i.ca().clone()),
            }),
        };
        signer_manager::run(shared, cfg, crd_synced_tx, shutdown.clone()).await;
    } else {
        let mut s = shutdown.clone();
        let _ = s.wait_for(|v| *v).await;
    }
    if let Some(i) = flag_instance {
        i.stop().await;
    }

    if let Some(t) = leader_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), http_task).await;
    Ok(())
}

/// Drives the flag signer's readiness checks from its instance.
fn forward_readiness(i: &Instance, ca_loaded: watch::Sender<bool>, synced: watch::Sender<bool>) {
    let mut ca_version = i.ca().subscribe();
    tokio::spawn(async move {
        if ca_version.wait_for(|v| *v > 0).await.is_ok() {
            let _ = ca_loaded.send(true);
        }
    });
    let mut s = i.synced();
    tokio::spawn(async move {
        if s.wait_for(|v| *v).await.is_ok() {
            let _ = synced.send(true);
        }
    });
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
