//! `podcert-signer run`: the in-cluster controller.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cli::ca::KeyTypeArg;
use podcert_core::ca::CaKeyType;
use podcert_core::key_type::KeyType;
use podcert_core::policy::SignerConfig;
use podcert_core::rotation::RotationPolicy;
use podcert_k8s::crd::convert::{self, duration_text, SignerSpecError};
use podcert_k8s::crd::{self, PodCertificateSignerSpec, SignerSettings};
use podcert_k8s::settings::CaSpec;
use podcert_runtime::app::{self, AppConfig, HaMode, ObjectSigners};
use podcert_runtime::leader::LeaderConfig;
use podcert_runtime::telemetry::{self, LogFormat};

/// `podcert-signer run`: every flag, grouped (each flag keeps its name and `PODCERT_*`
/// variable; tests, the chart and the benchmarks use them).
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub signer: SignerArgs,
    #[command(flatten)]
    pub objects: ObjectArgs,
    #[command(flatten)]
    pub ca: CaArgs,
    #[command(flatten)]
    pub trust_bundle: TrustBundleArgs,
    #[command(flatten)]
    pub bundle_endpoint: BundleEndpointArgs,
    #[command(flatten)]
    pub leader: LeaderArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// The Kubernetes API.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, env = "PODCERT_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

/// The signer configured by flags (the chart's default signer).
#[derive(Debug, Args)]
pub struct SignerArgs {
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
    /// Longest certificate lifetime issued (a request's maxExpirationSeconds may lower it).
    #[arg(long, env = "PODCERT_MAX_LIFETIME", default_value = "24h", value_parser = super::parse_duration)]
    pub max_lifetime: time::Duration,
    /// Key types issued for (default: every type the API allows, ML-DSA included).
    #[arg(long, env = "PODCERT_KEY_TYPES", value_delimiter = ',')]
    pub key_types: Vec<KeyType>,
    /// Requests decided in parallel.
    #[arg(long, env = "PODCERT_CONCURRENCY", default_value_t = 32)]
    pub concurrency: u16,
}

/// Signers declared as PodCertificateSigner objects.
#[derive(Debug, Args)]
pub struct ObjectArgs {
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
}

/// The flag signer's CA: files, a Secret (optionally bootstrapped and rotated) or memory.
#[derive(Debug, Args)]
pub struct CaArgs {
    /// CA files mode: the signing certificate (+ intermediates), reloaded when it changes.
    #[arg(
        long,
        env = "PODCERT_CA_CERT",
        value_name = "FILE",
        requires = "ca_key"
    )]
    pub ca_cert: Option<PathBuf>,
    /// CA files mode: the signing key (PKCS#8, SEC1 or PKCS#1 PEM), or a key in a PKCS#11
    /// token (`pkcs11:token=...;object=...?module-path=...&pin-source=file:...`, RFC 7512).
    /// With --ca-secret --ca-bootstrap, a pkcs11: URI: generate the CA keys in that token
    /// (labelled <object>-<fingerprint>); the Secret holds certificates, state and key URIs.
    #[arg(long, env = "PODCERT_CA_KEY", value_name = "FILE|PKCS11-URI")]
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
}

/// Where the flag signer's trust anchors are published.
#[derive(Debug, Args)]
pub struct TrustBundleArgs {
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
    /// How long a root that does not sign yet (a rotation's next CA) is in the preview
    /// ClusterTrustBundle before the live one (default: half the propagation delay; 0s: no wait,
    /// both bundles hold the same roots).
    #[arg(
        long,
        env = "PODCERT_TRUST_BUNDLE_PREVIEW_DURATION",
        value_name = "DURATION"
    )]
    pub trust_bundle_preview_duration: Option<String>,
    #[arg(long, default_value = "podcert-trust-bundle")]
    pub trust_bundle_configmap_name: String,
}

/// The SPIFFE bundle endpoint (federation: other trust domains fetch the flag signer's bundle).
#[derive(Debug, Args)]
pub struct BundleEndpointArgs {
    /// Serve the flag signer's trust bundle as a SPIFFE bundle endpoint (HTTPS) on ADDR.
    #[arg(long, env = "PODCERT_BUNDLE_ENDPOINT", value_name = "ADDR")]
    pub bundle_endpoint: Option<std::net::SocketAddr>,
    /// https_web profile: the endpoint's serving certificate chain (PEM), with --bundle-endpoint-key.
    #[arg(
        long,
        env = "PODCERT_BUNDLE_ENDPOINT_CERT",
        value_name = "FILE",
        requires = "bundle_endpoint_key"
    )]
    pub bundle_endpoint_cert: Option<PathBuf>,
    /// https_web profile: the serving certificate's private key (PEM).
    #[arg(
        long,
        env = "PODCERT_BUNDLE_ENDPOINT_KEY",
        value_name = "FILE",
        requires = "bundle_endpoint_cert"
    )]
    pub bundle_endpoint_key: Option<PathBuf>,
    /// https_spiffe profile (without a certificate): the endpoint's SPIFFE ID, in the signer's
    /// trust domain (default spiffe://<trust domain>/podcert-signer/bundle-endpoint).
    #[arg(
        long,
        env = "PODCERT_BUNDLE_ENDPOINT_SPIFFE_ID",
        value_name = "ID",
        conflicts_with = "bundle_endpoint_cert"
    )]
    pub bundle_endpoint_spiffe_id: Option<String>,
    /// spiffe_refresh_hint: how often peers should fetch the bundle.
    #[arg(long, env = "PODCERT_BUNDLE_ENDPOINT_REFRESH_HINT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub bundle_endpoint_refresh_hint: Duration,
}

/// The bundle endpoint's settings; None without --bundle-endpoint.
fn bundle_endpoint(
    args: &BundleEndpointArgs,
    trust_domain: Option<&str>,
) -> anyhow::Result<Option<podcert_runtime::bundle_endpoint::EndpointConfig>> {
    use podcert_runtime::bundle_endpoint::{EndpointConfig, EndpointTls};
    let Some(listen) = args.bundle_endpoint else {
        return Ok(None);
    };
    let Some(td) = trust_domain else {
        bail!("--bundle-endpoint serves the flag signer's bundle: it needs --signer-name and --trust-domain");
    };
    let tls = match (&args.bundle_endpoint_cert, &args.bundle_endpoint_key) {
        (Some(cert), Some(key)) => EndpointTls::Web {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ => {
            let id = args
                .bundle_endpoint_spiffe_id
                .clone()
                .unwrap_or_else(|| format!("spiffe://{td}/podcert-signer/bundle-endpoint"));
            let path = id
                .strip_prefix(&format!("spiffe://{td}/"))
                .unwrap_or_default();
            let segments_ok = !path.is_empty()
                && path.split('/').all(|seg| {
                    !seg.is_empty()
                        && seg != "."
                        && seg != ".."
                        && seg
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
                });
            if !segments_ok {
                bail!("--bundle-endpoint-spiffe-id {id:?} must be a SPIFFE ID in the signer's trust domain, spiffe://{td}/<path>");
            }
            EndpointTls::Spiffe { id }
        }
    };
    if args.bundle_endpoint_refresh_hint < Duration::from_secs(1) {
        bail!("--bundle-endpoint-refresh-hint must be at least 1s");
    }
    Ok(Some(EndpointConfig {
        listen,
        tls,
        refresh_hint: args.bundle_endpoint_refresh_hint,
    }))
}

/// Leader election.
#[derive(Debug, Args)]
pub struct LeaderArgs {
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
    /// With leader election, who decides requests: every replica (each its own share at
    /// once, another's after --hedge-delay) or only the leader.
    #[arg(
        long,
        env = "PODCERT_HA_MODE",
        value_enum,
        default_value = "active-active"
    )]
    pub ha_mode: HaModeArg,
    /// Active-active: how long a request waits for its live owner before another replica
    /// decides it.
    #[arg(long, env = "PODCERT_HEDGE_DELAY", default_value = "2s", value_parser = humantime::parse_duration)]
    pub hedge_delay: Duration,
}

/// Metrics, health, logs and Events.
#[derive(Debug, Args)]
pub struct TelemetryArgs {
    /// Address of /metrics, /livez and /readyz.
    #[arg(long, env = "PODCERT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    #[arg(long, env = "PODCERT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormatArg,
    /// Record an Event on each request when it is issued or denied.
    #[arg(long, env = "PODCERT_EVENTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub events: bool,
}

/// `--ha-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HaModeArg {
    ActiveActive,
    Leader,
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

/// The flag signer's CA: as a PodCertificateSigner's `ca` with the namespace of its Secret
/// (objects read theirs from the deployment's namespace; `--ca-secret` names its own), or an
/// in-memory CA, which no object can declare.
enum FlagCa {
    Spec(crd::CaSpec, String),
    Memory(CaSpec),
}

fn flag_ca(ca: &CaArgs, trust_domain: &str) -> anyhow::Result<FlagCa> {
    let none = crd::CaSpec {
        secret: None,
        files: None,
        pkcs11: None,
    };
    if let (None, Some(key)) = (&ca.ca_cert, &ca.ca_key) {
        if ca.ca_secret.is_none() || super::pkcs11_uri(key).is_none() {
            bail!("--ca-key needs --ca-cert (files mode), or is a pkcs11: URI with --ca-secret");
        }
    }
    if let (Some(cert), Some(key)) = (&ca.ca_cert, &ca.ca_key) {
        let uri = super::pkcs11_uri(key);
        let files = crd::CaFilesSpec {
            cert_file: cert.display().to_string(),
            key_file: uri.is_none().then(|| key.display().to_string()),
            trust_anchors_file: ca.trust_anchors.as_ref().map(|p| p.display().to_string()),
        };
        let spec = crd::CaSpec {
            files: Some(files),
            pkcs11: uri.map(|uri| crd::CaPkcs11Spec {
                uri: uri.to_string(),
                pin_secret_ref: None,
            }),
            ..none
        };
        return Ok(FlagCa::Spec(spec, String::new()));
    }
    if let Some(s) = &ca.ca_secret {
        let Some((ns, name)) = s
            .split_once('/')
            .filter(|(n, m)| !n.is_empty() && !m.is_empty())
        else {
            bail!("--ca-secret must be NAMESPACE/NAME, got {s:?}");
        };
        let secret = crd::CaSecretSpec {
            name: name.into(),
            bootstrap: ca.ca_bootstrap,
            key_type: CaKeyType::from(ca.ca_key_type).into(),
            validity: duration_text(ca.ca_validity),
            rotate_at_fraction: ca.ca_rotate_at_fraction,
            propagation_delay: duration_text(ca.ca_propagation_delay),
        };
        let spec =
            crd::CaSpec {
                secret: Some(secret),
                pkcs11: ca.ca_key.as_deref().and_then(super::pkcs11_uri).map(|uri| {
                    crd::CaPkcs11Spec {
                        uri: uri.to_string(),
                        pin_secret_ref: None,
                    }
                }),
                ..none
            };
        return Ok(FlagCa::Spec(spec, ns.to_string()));
    }
    if ca.ca_memory {
        return Ok(FlagCa::Memory(CaSpec::Memory {
            key_type: ca.ca_key_type.into(),
            trust_domain: trust_domain.to_string(),
            validity: ca.ca_validity,
        }));
    }
    bail!("no CA configured: give --ca-cert and --ca-key, --ca-secret NS/NAME [--ca-bootstrap], or --ca-memory")
}

/// The signer configured by flags as the PodCertificateSigner object that would declare it
/// (its `ca` empty for an in-memory CA). Flags cannot express the object-only fields
/// (selectors, service-account rules, DNS names): those keep their defaults.
fn flag_signer_spec(args: &RunArgs) -> anyhow::Result<Option<(PodCertificateSignerSpec, FlagCa)>> {
    let (Some(name), Some(td)) = (&args.signer.signer_name, &args.signer.trust_domain) else {
        return Ok(None);
    };
    let ca = flag_ca(&args.ca, td)?;
    let tb = &args.trust_bundle;
    let spec = PodCertificateSignerSpec {
        signer_name: name.clone(),
        trust_domain: td.clone(),
        spiffe_id: podcert_core::policy::DEFAULT_SPIFFE_PATH.into(),
        namespace_selector: None,
        pod_selector: None,
        service_accounts: None,
        dns_names: None,
        key_types: (!args.signer.key_types.is_empty())
            .then(|| args.signer.key_types.iter().map(|&k| k.into()).collect()),
        max_lifetime: duration_text(args.signer.max_lifetime),
        refresh_fraction: SignerConfig::DEFAULT_REFRESH_FRACTION,
        backdate: duration_text(SignerConfig::DEFAULT_BACKDATE),
        ca: match &ca {
            FlagCa::Spec(spec, _) => spec.clone(),
            FlagCa::Memory(_) => crd::CaSpec {
                secret: None,
                files: None,
                pkcs11: None,
            },
        },
        trust_bundle: crd::TrustBundleSpec {
            enabled: tb.trust_bundle,
            suffix: tb.trust_bundle_suffix.clone(),
            labels: labels(&tb.trust_bundle_labels)?,
            config_map_namespaces: tb.trust_bundle_configmap_namespaces.clone(),
            config_map_name: tb.trust_bundle_configmap_name.clone(),
            preview_duration: tb.trust_bundle_preview_duration.clone(),
        },
    };
    Ok(Some((spec, ca)))
}

/// The flag signer, through the same conversion as PodCertificateSigner objects.
fn flag_signer(args: &RunArgs) -> anyhow::Result<Option<SignerSettings>> {
    let Some((spec, ca)) = flag_signer_spec(args)? else {
        return Ok(None);
    };
    match ca {
        FlagCa::Spec(_, secret_namespace) => {
            convert::settings(&spec, &secret_namespace, args.ca.ca_reload_interval)
        }
        FlagCa::Memory(ca) => convert::settings_with_ca(&spec, ca),
    }
    .map(Some)
    .map_err(flag_error)
}

/// A conversion error, named by the flags that set the field.
fn flag_error(e: SignerSpecError) -> anyhow::Error {
    let flags = match e.field.as_str() {
        "signerName" => "--signer-name",
        "trustDomain" => "--trust-domain",
        "maxLifetime" => "--max-lifetime",
        "keyTypes" => "--key-types",
        "ca.secret" => "CA rotation schedule (--ca-validity, --ca-rotate-at-fraction, --ca-propagation-delay, --max-lifetime)",
        "ca.secret.validity" => "--ca-validity",
        "ca.secret.propagationDelay" => "--ca-propagation-delay",
        f if f.starts_with("trustBundle") => "--trust-bundle-*",
        _ => return anyhow::anyhow!("{e}"),
    };
    anyhow::anyhow!("{flags}: {}", e.message)
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

/// What `run`'s flags configure, resolved for the runtime.
pub fn app_config(args: &RunArgs) -> anyhow::Result<AppConfig> {
    let signer = flag_signer(args)?;
    let objects = if args.objects.crd_signers {
        for d in &args.objects.signer_domains {
            if !podcert_core::policy::valid_signer_name(&format!("{d}/x")) {
                bail!("--signer-domain {d:?} is not a DNS domain like example.com");
            }
        }
        Some(ObjectSigners {
            domains: args.objects.signer_domains.clone(),
            namespace: own_namespace(args.objects.namespace.as_ref()),
            poll: args.ca.ca_reload_interval,
        })
    } else {
        None
    };
    let leader = &args.leader;
    let leader_election = leader.leader_election.unwrap_or_else(in_cluster).then(|| {
        let ns = own_namespace(
            leader
                .leader_election_namespace
                .as_ref()
                .or(args.objects.namespace.as_ref()),
        );
        let identity = leader.identity.clone().unwrap_or_else(default_identity);
        LeaderConfig::new(&ns, &leader.leader_election_lease, &identity)
    });
    Ok(AppConfig {
        kubeconfig: args.client.kubeconfig.clone(),
        signer,
        objects,
        leader_election,
        ha_mode: match leader.ha_mode {
            HaModeArg::ActiveActive => HaMode::ActiveActive {
                hedge: leader.hedge_delay,
            },
            HaModeArg::Leader => HaMode::Leader,
        },
        identity: leader.identity.clone(),
        metrics_addr: args.telemetry.metrics_addr,
        concurrency: args.signer.concurrency,
        events: args.telemetry.events,
        trust_bundles: args.trust_bundle.trust_bundle,
        bundle_endpoint: bundle_endpoint(
            &args.bundle_endpoint,
            args.signer.trust_domain.as_deref(),
        )?,
    })
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init_logging(args.telemetry.log_format.into());
    podcert_runtime::ca_files::allow_insecure_key_permissions(
        args.ca.allow_insecure_key_permissions,
    );
    let config = app_config(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let app = app::run(config, shutdown.clone());
        tokio::pin!(app);
        tokio::select! {
            // A startup error ends it before any signal.
            result = &mut app => return result,
            _ = wait_for_signal() => {}
        }
        info!("shutting down");
        shutdown.cancel();
        app.await
    })
}

/// Parses `run` flags from a list (tests of the flag handling).
#[cfg(test)]
fn parse_args<I, T>(args: I) -> anyhow::Result<RunArgs>
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(flags: &[&str]) -> anyhow::Result<SignerSettings> {
        let mut all = vec![
            "--signer-name",
            "example.com/spiffe",
            "--trust-domain",
            "td.test",
        ];
        all.extend_from_slice(flags);
        Ok(flag_signer(&parse_args(all)?)?.expect("a flag signer"))
    }

    #[test]
    fn a_flag_signer_converts_like_the_object_that_declares_it() {
        let flags = settings(&[
            "--ca-secret",
            "ops/root-ca",
            "--ca-bootstrap",
            "--ca-key-type",
            "ed25519",
            "--ca-validity",
            "30d",
            "--ca-rotate-at-fraction",
            "0.6",
            "--ca-propagation-delay",
            "90m",
            "--max-lifetime",
            "12h",
            "--key-types",
            "ED25519,ECDSAP256",
            "--trust-bundle-suffix",
            "edge",
            "--trust-bundle-label",
            "team=a",
        ])
        .unwrap();
        let spec: PodCertificateSignerSpec = serde_json::from_value(serde_json::json!({
            "signerName": "example.com/spiffe",
            "trustDomain": "td.test",
            "keyTypes": ["ED25519", "ECDSAP256"],
            "maxLifetime": "12h",
            "ca": {"secret": {"name": "root-ca", "bootstrap": true, "keyType": "ED25519",
                   "validity": "30d", "rotateAtFraction": 0.6, "propagationDelay": "90m"}},
            "trustBundle": {"suffix": "edge", "labels": {"team": "a"}},
        }))
        .unwrap();
        let object = convert::settings(&spec, "ops", Duration::from_secs(5)).unwrap();
        assert_eq!(flags.ca, object.ca);
        assert_eq!(flags.rotation, object.rotation);
        assert_eq!(flags.trust_bundle, object.trust_bundle);
        // SignerConfig has no PartialEq (its templates and selectors compare by meaning).
        assert_eq!(
            format!("{:?}", flags.config),
            format!("{:?}", object.config)
        );
        let CaSpec::Secret {
            namespace,
            bootstrap: Some(b),
            ..
        } = &flags.ca
        else {
            panic!("a bootstrapped Secret CA: {:?}", flags.ca)
        };
        assert_eq!(namespace, "ops");
        assert_eq!(b.validity, time::Duration::days(30));
        assert_eq!(flags.rotation.prepare_at_fraction, 0.6);
        assert_eq!(
            flags.rotation.propagation_delay,
            time::Duration::minutes(90)
        );
    }

    #[test]
    fn files_and_memory_flags_name_their_ca() {
        let files = settings(&["--ca-cert", "/ca/tls.crt", "--ca-key", "/ca/tls.key"]).unwrap();
        assert!(
            matches!(&files.ca, CaSpec::Files { cert, trust_anchors: None, .. } if cert == std::path::Path::new("/ca/tls.crt")),
            "{:?}",
            files.ca
        );
        let memory = settings(&["--ca-memory", "--ca-validity", "2d"]).unwrap();
        assert_eq!(
            memory.ca,
            CaSpec::Memory {
                key_type: CaKeyType::EcdsaP256,
                trust_domain: "td.test".into(),
                validity: time::Duration::days(2),
            }
        );
        // The defaults an object gets are the flag signer's too.
        assert_eq!(memory.config.backdate, SignerConfig::DEFAULT_BACKDATE);
        assert!(memory.trust_bundle.is_some());
    }

    #[test]
    fn a_refused_flag_signer_names_the_flags() {
        let e = settings(&[
            "--ca-secret",
            "ops/ca",
            "--ca-bootstrap",
            "--ca-validity",
            "2d",
            "--max-lifetime",
            "24h",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("CA rotation schedule (--ca-validity"), "{e}");
        let e = settings(&["--ca-memory", "--max-lifetime", "10m"])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--max-lifetime: "), "{e}");
        let e = settings(&["--ca-secret", "no-slash"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("NAMESPACE/NAME"), "{e}");
        let e = settings(&[]).unwrap_err().to_string();
        assert!(e.starts_with("no CA configured"), "{e}");
    }
}
