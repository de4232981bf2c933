//! podcert-testkit: the API server emulator (and, from other tasks, the kubelet emulator,
//! the demo, the benchmark and chaos runs).

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use podcert_testkit::apiserver::{Faults, KubeVersion, ServerConfig, TestServer};
use podcert_testkit::rules::UserInfo;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "podcert-testkit",
    version,
    about = "Test instruments for podcert-signer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Kubernetes API emulator until SIGINT/SIGTERM.
    Apiserver(ApiserverArgs),
    /// Behave like kubelets: create Pods and PodCertificateRequests, wait, write bundles, refresh.
    Kubelet(podcert_testkit::kubelet::cli::KubeletArgs),
    /// Everything in one process: emulated cluster, the signer, kubelets and an mTLS exchange.
    Demo(podcert_testkit::demo::DemoArgs),
    /// Benchmark: the real signer as a child process against emulated kubelets; prints JSON.
    Bench(podcert_testkit::bench::BenchArgs),
    /// Signer replicas under injected faults and leader kills; prints JSON.
    Chaos(podcert_testkit::chaos::ChaosArgs),
}

/// Parses `15m`, `30s`, `2h`, `500ms` or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 30s, 15m, 2h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}: use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn parse_version(s: &str) -> Result<KubeVersion, String> {
    KubeVersion::parse(s).ok_or_else(|| {
        format!("unsupported Kubernetes version {s:?}: use 1.34, 1.35, 1.36, 1.37 or 1.38")
    })
}

#[derive(Args)]
struct ApiserverArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Where to write the administrator's kubeconfig (mode 0600).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Emulated Kubernetes version.
    #[arg(long, default_value = "1.37", value_parser = parse_version)]
    kube_version: KubeVersion,
    /// Served PodCertificateRequest versions, e.g. v1beta1,v1 (default: the version's).
    #[arg(long, value_delimiter = ',')]
    pcr_versions: Option<Vec<String>>,
    /// Served ClusterTrustBundle versions (default: the version's).
    #[arg(long, value_delimiter = ',')]
    ctb_versions: Option<Vec<String>>,
    /// PodCertificateRequests older than this are deleted by the cleaner.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    cleaner_max_age: Duration,
    /// How often the cleaner runs.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    cleaner_interval: Duration,
    /// Watch events kept for resuming; older resourceVersions get 410 Gone.
    #[arg(long, default_value_t = 1000)]
    watch_history: usize,
    /// YAML files loaded as the administrator at start (e.g. RBAC).
    #[arg(long = "load")]
    load: Vec<PathBuf>,
    /// kube-apiserver's ClusterTrustBundleProjection gate (false: pods' clusterTrustBundle
    /// projected sources are dropped on create).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    cluster_trust_bundle_projection: bool,
    /// kube-apiserver's PodCertificateMLDSA gate (1.38 only; off by default): pods may ask for
    /// MLDSA44/MLDSA65/MLDSA87 podCertificate keys.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pod_certificate_mldsa: bool,
    #[command(flatten)]
    faults: FaultArgs,
}

#[derive(Args)]
struct FaultArgs {
    /// Seed of the fault generator.
    #[arg(long, default_value_t = 0)]
    fault_seed: u64,
    /// Close every watch this often (e.g. 30s).
    #[arg(long, value_parser = parse_duration)]
    drop_watch_every: Option<Duration>,
    /// Delay every request by this much.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    delay: Duration,
    /// Plus a random jitter up to this much.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    delay_jitter: Duration,
    /// Fraction of requests answered with --error-code.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// 500, 503 or 429.
    #[arg(long, default_value_t = 503)]
    error_code: u16,
    /// Retry-After seconds on 429 answers.
    #[arg(long, default_value_t = 1)]
    retry_after: u64,
    /// Fraction of writes answered with 409 Conflict.
    #[arg(long, default_value_t = 0.0)]
    conflict_rate: f64,
    /// Fraction of requests stalled for --stall-for.
    #[arg(long, default_value_t = 0.0)]
    stall_rate: f64,
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    stall_for: Duration,
    /// Shift the server clock by this many seconds (may be negative).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    clock_offset_seconds: i64,
}

impl FaultArgs {
    fn faults(&self) -> Faults {
        Faults {
            seed: self.fault_seed,
            drop_watch_every: self.drop_watch_every,
            delay: self.delay,
            delay_jitter: self.delay_jitter,
            error_rate: self.error_rate,
            error_code: self.error_code,
            retry_after_seconds: self.retry_after,
            conflict_rate: self.conflict_rate,
            stall_rate: self.stall_rate,
            stall_for: self.stall_for,
        }
    }
}

async fn apiserver(a: ApiserverArgs) -> anyhow::Result<()> {
    let cfg = ServerConfig {
        version: a.kube_version,
        pcr_versions: a.pcr_versions,
        ctb_versions: a.ctb_versions,
        cleaner_max_age: a.cleaner_max_age,
        cleaner_interval: a.cleaner_interval,
        watch_history: a.watch_history,
        faults: a.faults.faults(),
        listen: a.listen,
        cluster_trust_bundle_projection: a.cluster_trust_bundle_projection,
        pod_certificate_mldsa: a.pod_certificate_mldsa,
        ..ServerConfig::default()
    };
    let server = TestServer::start(cfg).await?;
    server.set_clock_offset(time::Duration::seconds(a.faults.clock_offset_seconds));
    for f in &a.load {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        server
            .load_yaml(&text)
            .with_context(|| format!("loading {}", f.display()))?;
    }
    server.write_kubeconfig(&a.kubeconfig, &UserInfo::admin())?;
    println!(
        "serving {} (kubeconfig {})",
        server.url(),
        a.kubeconfig.display()
    );
    wait_for_signal().await?;
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The demo, bench and chaos print their own summaries; component logs only when
    // something is wrong.
    let default = match cli.command {
        Command::Demo(_) => "warn",
        // Injected 5xx are expected: kube's client would log each one as an error.
        Command::Bench(_) | Command::Chaos(_) => "warn,kube_client::client::builder=off",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Apiserver(a) => apiserver(a).await,
        Command::Kubelet(a) => podcert_testkit::kubelet::cli::run(a).await,
        Command::Demo(a) => podcert_testkit::demo::run(a).await,
        Command::Bench(a) => {
            let report = podcert_testkit::bench::run(a).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Chaos(a) => {
            let report = podcert_testkit::chaos::run(a).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}
