//! `podcert-signer sign`: the controller's decision for one request, offline.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use time::OffsetDateTime;

use super::{services_file, signer_file};
use podcert_core::ca::Ca;
use podcert_core::key_type::KeyType;
use podcert_core::pipeline;
use podcert_core::policy::{valid_label_key, valid_label_value, PodFacts, PodInfo, SignerConfig};
use podcert_core::request::wire;
use podcert_core::spiffe_id::TrustDomain;
use podcert_runtime::ca_files as files;

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The signing certificate, followed by any intermediates (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: PathBuf,
    /// The signing key: PKCS#8, SEC1 or PKCS#1 PEM, or a key in a PKCS#11 token
    /// (`pkcs11:token=...;object=...?module-path=...&pin-source=file:...`, RFC 7512).
    #[arg(long, value_name = "FILE|PKCS11-URI")]
    pub ca_key: PathBuf,
    /// Root certificate(s) the chain leads to, when the signing CA is an intermediate.
    #[arg(long, value_name = "FILE")]
    pub trust_anchors: Option<PathBuf>,
    /// SPIFFE trust domain of the issued IDs.
    #[arg(long, required_unless_present = "signer")]
    pub trust_domain: Option<String>,
    /// The signer name this signer answers for (e.g. example.com/spiffe).
    #[arg(long, required_unless_present = "signer")]
    pub signer_name: Option<String>,
    /// Longest lifetime issued (the request's maxExpirationSeconds may lower it).
    #[arg(long, default_value = "24h", value_parser = super::parse_duration, conflicts_with = "signer")]
    pub max_lifetime: time::Duration,
    /// Key types issued for (default: every type the API allows, ML-DSA included).
    #[arg(long, value_delimiter = ',', conflicts_with = "signer")]
    pub key_types: Vec<KeyType>,
    /// Apply this PodCertificateSigner's policy (YAML or JSON) instead of the flags above, to
    /// test a policy before applying it to the cluster. Its CA settings are not used: give
    /// --ca-cert and --ca-key.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["trust_domain", "signer_name"])]
    pub signer: Option<PathBuf>,
    /// Labels of the request's namespace, KEY=VALUE (comma-separated or repeated), for a
    /// signer with a namespaceSelector. kubernetes.io/metadata.name is added, as the apiserver does.
    #[arg(long, value_name = "KEY=VALUE", value_delimiter = ',')]
    pub namespace_labels: Option<Vec<String>>,
    /// Labels of the request's pod, KEY=VALUE (comma-separated or repeated), for a signer
    /// whose policy reads them (pod labels in templates, podSelector, dnsNames.fromServices).
    /// The pod is taken to be the request's (the controller checks its UID).
    #[arg(long, value_name = "KEY=VALUE", value_delimiter = ',')]
    pub pod_labels: Option<Vec<String>>,
    /// Service objects (YAML or JSON: one Service, or a List as `kubectl get services -o yaml`
    /// prints), for a signer with dnsNames.fromServices. A Service without a namespace is
    /// taken to be in the request's namespace.
    #[arg(long, value_name = "FILE")]
    pub services: Option<PathBuf>,
    /// Load --ca-key even if group or others may read it (refused by default, as ssh does).
    #[arg(long)]
    pub allow_insecure_key_permissions: bool,
}

pub fn run(args: SignArgs) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let cfg = config(&args)?;
    let ca = load_ca(&args, now)?;

    let input = files::read_bounded(std::io::stdin().lock(), files::MAX_INPUT_BYTES)
        .context("reading the request from stdin")?;
    let obj = wire::decode(&input).context("reading the PodCertificateRequest on stdin")?;
    let labels = namespace_labels(&args, &obj.request.namespace)?;
    let pod = args
        .pod_labels
        .as_ref()
        .map(|pairs| -> anyhow::Result<PodInfo> {
            Ok(PodInfo {
                uid: obj.request.pod_uid.clone(),
                labels: key_values("--pod-labels", pairs)?,
            })
        })
        .transpose()?;
    let services = args
        .services
        .as_ref()
        .map(|p| services_file::load(p, &obj.request.namespace))
        .transpose()?;
    let facts = pipeline::Facts {
        namespace_labels: labels.as_ref(),
        pod: pod.as_ref().map_or(PodFacts::Unknown, PodFacts::Found),
        services: services.as_deref(),
    };
    let outcome = match pipeline::process_with(&obj.request, &cfg, &ca, now, facts) {
        Err(pipeline::NotDecided::NamespaceUnknown(_)) => bail!(
            "signer {} has a namespaceSelector: give the labels of namespace {} with --namespace-labels",
            cfg.signer_name,
            obj.request.namespace
        ),
        Err(pipeline::NotDecided::PodUnknown(_)) => bail!(
            "signer {} reads the pod (pod labels, podSelector or dnsNames.fromServices): give the labels of pod {}/{} with --pod-labels (an empty string for none)",
            cfg.signer_name,
            obj.request.namespace,
            obj.request.pod_name
        ),
        Err(pipeline::NotDecided::ServicesUnknown(_)) => bail!(
            "signer {} has dnsNames.fromServices: give the Services with --services FILE (a List with no items for none)",
            cfg.signer_name
        ),
        Err(pipeline::NotDecided::WaitingForService { retry_after, message }) => bail!(
            "not decided: the controller would leave this request pending ({message}) for up to {retry_after} more, then deny it"
        ),
        other => other?,
    };
    let out = wire::with_status(&obj.raw, &outcome.status, now);
    let text = serde_json::to_string_pretty(&out).context("encoding the result")?;
    println!("{text}");
    Ok(())
}

fn namespace_labels(
    args: &SignArgs,
    namespace: &str,
) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    let Some(pairs) = &args.namespace_labels else {
        return Ok(None);
    };
    let mut labels = key_values("--namespace-labels", pairs)?;
    labels.insert(
        "kubernetes.io/metadata.name".to_string(),
        namespace.to_string(),
    );
    Ok(Some(labels))
}

/// `KEY=VALUE` pairs (empty entries skipped), keys and values checked as Kubernetes checks
/// labels.
fn key_values(flag: &str, pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for p in pairs.iter().filter(|p| !p.is_empty()) {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("{flag} takes KEY=VALUE, got {p:?}"))?;
        if !valid_label_key(k) || !(v.is_empty() || valid_label_value(v)) {
            bail!("{flag}: {p:?} is not a label Kubernetes would accept");
        }
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

fn config(args: &SignArgs) -> anyhow::Result<SignerConfig> {
    if let Some(path) = &args.signer {
        return signer_file::load(path);
    }
    let (Some(td), Some(name)) = (&args.trust_domain, &args.signer_name) else {
        bail!("give --trust-domain and --signer-name, or --signer FILE");
    };
    let td = TrustDomain::new(td)?;
    let mut cfg = SignerConfig::new(name, td)?;
    cfg.max_lifetime = args.max_lifetime;
    if !args.key_types.is_empty() {
        cfg.allowed_key_types = args.key_types.iter().copied().collect();
    }
    cfg.validate()?;
    Ok(cfg)
}

fn load_ca(args: &SignArgs, now: OffsetDateTime) -> anyhow::Result<Ca> {
    files::allow_insecure_key_permissions(args.allow_insecure_key_permissions);
    let read = |p: &PathBuf, is_key: bool| {
        files::read_ca_file(p, is_key).with_context(|| format!("reading {}", p.display()))
    };
    let cert = read(&args.ca_cert, false)?;
    let anchors = args
        .trust_anchors
        .as_ref()
        .map(|p| read(p, false))
        .transpose()?;
    if let Some(uri) = super::pkcs11_uri(&args.ca_key) {
        let resolver = podcert_pkcs11::Pkcs11Resolver::new(None, 1);
        return Ca::load(&cert, uri, anchors.as_deref(), now, &resolver).with_context(|| {
            format!(
                "loading the CA from {} and the PKCS#11 key {uri}",
                args.ca_cert.display()
            )
        });
    }
    let key = read(&args.ca_key, true)?;
    Ca::from_pem(&cert, &key, anchors.as_deref(), now).with_context(|| {
        format!(
            "loading the CA from {} and {}",
            args.ca_cert.display(),
            args.ca_key.display()
        )
    })
}
