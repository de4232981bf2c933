//! `podcert-testkit kubelet`: the emulator against any API server from a kubeconfig. Node
//! identities come from impersonation (`system:node:<name>` in `system:nodes`), so the
//! kubeconfig's user needs the `impersonate` verb (cluster-admin has it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::config::{KubeletConfig, KubeletVersion, PcrVersion};
use super::keys::{KeySource, KeyType};
use super::Kubelet;

#[derive(Debug, Clone, clap::Args)]
pub struct KubeletArgs {
    /// Kubeconfig of the API server (default: KUBECONFIG, ~/.kube/config or in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
    #[arg(long, default_value_t = 10)]
    pub pods: usize,
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    #[arg(long, default_value_t = 1)]
    pub namespaces: usize,
    /// Service accounts per namespace.
    #[arg(long, default_value_t = 1)]
    pub service_accounts: usize,
    /// Key types given to pods round robin, comma separated (ED25519, ECDSAP256, ECDSAP384,
    /// ECDSAP521, RSA3072, RSA4096, or "all" for these six; MLDSA44, MLDSA65, MLDSA87 with
    /// --kube-version 1.38).
    #[arg(long, default_value = "ECDSAP256", value_delimiter = ',')]
    pub key_types: Vec<String>,
    /// The Kubernetes version the kubelets emulate (1.34 .. 1.38): picks the key carrier.
    #[arg(long, default_value = "1.37")]
    pub kube_version: KubeletVersion,
    /// The PodCertificateRequest version to write (default: discovered).
    #[arg(long)]
    pub pcr_version: Option<PcrVersion>,
    #[arg(long, default_value = "example.com/spiffe")]
    pub signer_name: String,
    #[arg(long)]
    pub max_expiration_seconds: Option<i32>,
    /// Write credential bundles to DIR/<namespace>/<pod>/credentialbundle.pem.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Exit once every pod is issued or permanently refused (non-zero if any was refused).
    #[arg(long)]
    pub once: bool,
    /// With --once: give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_seconds: u64,
    /// Prefix of namespace and node names.
    #[arg(long, default_value = "podcert")]
    pub name_prefix: String,
    /// unverifiedUserAnnotations for every pod (KEY=VALUE, repeatable; 1.35+).
    #[arg(long = "user-annotation", value_name = "KEY=VALUE")]
    pub user_annotations: Vec<String>,
    /// Upper bound of the jitter added to beginRefreshAt, in seconds.
    #[arg(long, default_value_t = 300)]
    pub refresh_jitter_seconds: u64,
    /// Recreate a request invisible for this many seconds after creation.
    #[arg(long, default_value_t = 600)]
    pub recreate_after_seconds: u64,
    /// Concurrent creates against the API server.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Reuse a pool of this many RSA keys per RSA type instead of a fresh key per request.
    #[arg(long)]
    pub rsa_pool: Option<usize>,
    /// Poll by listing instead of watching.
    #[arg(long)]
    pub no_watch: bool,
    /// Print a summary every this many seconds.
    #[arg(long, default_value_t = 10)]
    pub report_seconds: u64,
}

impl KubeletArgs {
    /// The emulator configuration these flags describe.
    pub fn to_config(&self) -> anyhow::Result<KubeletConfig> {
        let key_types = parse_key_types(&self.key_types)?;
        let mut annotations = BTreeMap::new();
        for kv in &self.user_annotations {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--user-annotation {kv:?} is not KEY=VALUE"))?;
            annotations.insert(k.to_string(), v.to_string());
        }
        Ok(KubeletConfig {
            nodes: self.nodes,
            pods: self.pods,
            namespaces: self.namespaces,
            service_accounts: self.service_accounts,
            key_types,
            kube_version: self.kube_version,
            pcr_version: self.pcr_version,
            signer_name: self.signer_name.clone(),
            max_expiration_seconds: self.max_expiration_seconds,
            out_dir: self.out.clone(),
            user_annotations: if annotations.is_empty() {
                Vec::new()
            } else {
                vec![annotations]
            },
            name_prefix: self.name_prefix.clone(),
            refresh_jitter: Duration::from_secs(self.refresh_jitter_seconds),
            recreate_after: Duration::from_secs(self.recreate_after_seconds),
            watch: !self.no_watch,
            create_concurrency: self.concurrency.max(1),
            keys: self.rsa_pool.map(KeySource::rsa_pool).unwrap_or_default(),
            ..KubeletConfig::default()
        })
    }
}

fn parse_key_types(list: &[String]) -> anyhow::Result<Vec<KeyType>> {
    let mut out = Vec::new();
    for s in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if s.eq_ignore_ascii_case("all") {
            out.extend(KeyType::ALL);
        } else {
            out.push(s.parse()?);
        }
    }
    anyhow::ensure!(!out.is_empty(), "--key-types names no key type");
    Ok(out)
}

/// The client configuration from `--kubeconfig`/`--context`, or inferred.
async fn load_config(args: &KubeletArgs) -> anyhow::Result<Config> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .with_context(|| format!("loading kubeconfig {}", path.display()))
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .context("loading the default kubeconfig"),
        None => Config::infer().await.context("finding a kubeconfig"),
    }
}

/// `config` acting as node `node` through impersonation.
pub fn impersonate_node(config: &Config, node: &str) -> Config {
    let mut c = config.clone();
    c.auth_info.impersonate = Some(format!("system:node:{node}"));
    c.auth_info.impersonate_groups =
        Some(vec!["system:nodes".into(), "system:authenticated".into()]);
    c
}

pub async fn run(args: KubeletArgs) -> anyhow::Result<()> {
    let cfg = args.to_config()?;
    let config = load_config(&args).await?;
    let admin = Client::try_from(config.clone()).context("building the API client")?;
    // Build every node's client up front so the closure cannot fail later.
    let mut node_clients = std::collections::HashMap::new();
    for j in 0..cfg.nodes {
        let name = cfg.node_name(j);
        let client = Client::try_from(impersonate_node(&config, &name))
            .with_context(|| format!("building the client of node {name}"))?;
        node_clients.insert(name, client);
    }
    let fallback = admin.clone();
    let kubelet = Kubelet::new(cfg, admin, move |n| {
        node_clients
            .get(n)
            .cloned()
            .unwrap_or_else(|| fallback.clone())
    });
    let handle = kubelet.start().await?;
    eprintln!(
        "kubelet emulator: writing PodCertificateRequests as certificates.k8s.io/{}",
        handle.pcr_version().as_str()
    );
    let report = Duration::from_secs(args.report_seconds.max(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_seconds);
    let outcome = loop {
        if args.once {
            let settled = handle.wait_settled(report).await.is_ok();
            let summary = handle.summary();
            println!("{summary}");
            if settled {
                break Ok(summary);
            }
            if tokio::time::Instant::now() >= deadline {
                break Err(anyhow::anyhow!(
                    "not every pod settled within {} s: {summary}",
                    args.timeout_seconds
                ));
            }
        } else {
            let stop = tokio::select! {
                _ = tokio::signal::ctrl_c() => true,
                _ = tokio::time::sleep(report) => false,
            };
            let summary = handle.summary();
            println!("{summary}");
            if stop {
                break Ok(summary);
            }
        }
    };
    for s in handle.states() {
        match &s.phase {
            super::Phase::Denied { reason, message } | super::Phase::Failed { reason, message } => {
                eprintln!("{}/{}: {reason}: {message}", s.namespace, s.pod)
            }
            super::Phase::Invalid { message } => {
                eprintln!("{}/{}: invalid issuance: {message}", s.namespace, s.pod)
            }
            _ => {}
        }
    }
    handle.shutdown().await;
    let summary = outcome?;
    anyhow::ensure!(
        summary.denied + summary.failed + summary.invalid == 0,
        "{} pod(s) were refused a certificate",
        summary.denied + summary.failed + summary.invalid
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: KubeletArgs,
    }

    #[test]
    fn flags_build_the_config() {
        let cli = Cli::try_parse_from([
            "x",
            "--pods",
            "12",
            "--nodes",
            "3",
            "--key-types",
            "ED25519,RSA3072",
            "--kube-version",
            "1.35",
            "--user-annotation",
            "example.com/a=b",
            "--once",
        ])
        .unwrap();
        let cfg = cli.args.to_config().unwrap();
        assert_eq!((cfg.pods, cfg.nodes), (12, 3));
        assert_eq!(cfg.key_types, vec![KeyType::Ed25519, KeyType::Rsa3072]);
        assert_eq!(cfg.kube_version, KubeletVersion::V1_35);
        assert_eq!(cfg.user_annotations[0]["example.com/a"], "b");
        assert_eq!(parse_key_types(&["all".into()]).unwrap().len(), 6);
        assert!(Cli::try_parse_from(["x", "--kube-version", "1.33"]).is_err());
    }

    #[test]
    fn impersonation_names_the_node() {
        let c = Config::new("http://127.0.0.1:1".parse().unwrap());
        let n = impersonate_node(&c, "node-a");
        assert_eq!(
            n.auth_info.impersonate.as_deref(),
            Some("system:node:node-a")
        );
        assert_eq!(n.auth_info.impersonate_groups.unwrap()[0], "system:nodes");
    }
}
