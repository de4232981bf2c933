//! `podcert-testkit bench`: the API emulator in this process, the real `podcert-signer run` as
//! a child process, and emulated kubelets offering N requests as a burst or at a fixed rate.
//! Progress goes to stderr; the last line on stdout is one JSON object ([`BenchReport`]).

pub mod cluster;
pub mod core_rate;
pub mod proc_stats;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use podcert_core::ca::CaKeyType;
use serde::Serialize;

use crate::kubelet::{KeyType, KubeletConfig, KubeletVersion, Summary};
use cluster::Cluster;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Requests offered (one pod each).
    #[arg(long, default_value_t = 1000)]
    pub requests: usize,
    /// Subject key type of every request (ED25519, ECDSAP256, ..., RSA4096; MLDSA44/65/87 with
    /// --kube-version 1.38, served with the PodCertificateMLDSA gate on).
    #[arg(long, default_value = "ED25519")]
    pub key_type: KeyType,
    /// Key type of the CA the signer signs with.
    #[arg(long, default_value = "ecdsa-p256")]
    pub ca_key_type: CaKeyType,
    /// The signer's CA certificate instead of a generated CA (with --ca-key).
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// Its key: a PEM file or a PKCS#11 URI (`pkcs11:...`; the signer inherits SOFTHSM2_CONF).
    /// `ca_key_type` in the output is then --ca-key-type as given.
    #[arg(long, value_name = "FILE|PKCS11-URI", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// Requests offered per second; without it all are offered at once (a burst).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Emulated nodes the pods are spread over (one kubelet watch each).
    #[arg(long, default_value_t = 20)]
    pub nodes: usize,
    /// Namespaces the pods are spread over.
    #[arg(long, default_value_t = 10)]
    pub namespaces: usize,
    /// Emulated Kubernetes version of the kubelets (1.36+ send a stub PKCS#10 request, 1.34
    /// and 1.35 a key with a proof of possession).
    #[arg(long, default_value = "1.37")]
    pub kube_version: KubeletVersion,
    /// The signer binary (default: podcert-signer next to this binary).
    #[arg(long, value_name = "FILE")]
    pub signer_bin: Option<PathBuf>,
    /// Extra flag for `podcert-signer run` (repeatable), e.g. --signer-arg=--concurrency=64.
    #[arg(long = "signer-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub signer_args: Vec<String>,
    /// Give up waiting for the requests after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_seconds: u64,
    /// Seconds each in-process core loop runs (0: skip core_per_s, raw_sign_per_s and
    /// proof_per_s).
    #[arg(long, default_value_t = 3.0)]
    pub core_seconds: f64,
    /// Also write every issuance as CSV `acked_s,latency_ms` (seconds since the first request
    /// was offered): where in the run a latency tail happened.
    #[arg(long, value_name = "FILE")]
    pub latency_csv: Option<PathBuf>,
}

/// The bench's result: the JSON fields of the issue plus what identifies the run.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct BenchReport {
    pub requests: usize,
    pub issued: usize,
    pub denied: usize,
    pub failed: usize,
    pub pending: usize,
    /// First request offered -> last Issued seen.
    pub wall_s: f64,
    pub issued_per_s: f64,
    /// Create acknowledged -> Issued seen, per request.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub signer_cpu_s: f64,
    /// Signer CPU per issued certificate, microseconds.
    pub signer_cpu_per_issued_us: f64,
    /// `signer_cpu_per_issued_us` over the core's own microseconds per request (from
    /// `core_per_s` of the same run): what the signer costs beyond its cryptography and
    /// decision, as a multiple.
    pub cpu_vs_core: Option<f64>,
    pub signer_peak_rss_mib: f64,
    /// Decode, check the proof, decide, issue, encode, per second on one core (in-process).
    pub core_per_s: Option<f64>,
    /// Bare leaf issuance with the same CA and profile, per second on one core.
    pub raw_sign_per_s: Option<f64>,
    pub core_vs_raw: Option<f64>,
    /// Key extraction and proof (or stub CSR signature) verification alone, per second on one
    /// core: the part of the core that `raw` leaves out and no implementation can skip.
    pub proof_per_s: Option<f64>,
    /// The highest `core_vs_raw` possible with this proof cost, if decoding, policy and
    /// encoding were free: `proof / (proof + raw)` in rates.
    pub core_vs_raw_bound: Option<f64>,
    pub key_type: String,
    pub ca_key_type: String,
    /// Offered rate, requests per second (`null`: a burst).
    pub rate: Option<f64>,
    pub nodes: usize,
    /// `release` or `debug`: figures from a debug build are not representative.
    pub build: String,
}

fn cpu_per_issued_us(cpu_s: f64, issued: usize) -> f64 {
    cpu_s * 1e6 / issued.max(1) as f64
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Runs the benchmark and returns its report (the CLI prints it).
pub async fn run(args: BenchArgs) -> anyhow::Result<BenchReport> {
    if args.requests == 0 {
        bail!("--requests must be at least 1");
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number of requests per second");
    }
    let signer_bin = match &args.signer_bin {
        Some(b) => b.clone(),
        None => cluster::default_signer_bin()?,
    };
    if !args.kube_version.knows_key_type(args.key_type) {
        bail!(
            "--key-type {} needs --kube-version 1.38 (kubelets before 1.38 know no ML-DSA)",
            args.key_type
        );
    }
    let ca_key_type = args.ca_key_type;
    let mut cluster =
        Cluster::start_for(signer_bin, ca_key_type, args.key_type.is_ml_dsa()).await?;
    if let (Some(cert), Some(key)) = (&args.ca_cert, &args.ca_key) {
        cluster.use_ca(cert.clone(), key.clone());
    }

    let cfg = KubeletConfig {
        pods: args.requests,
        nodes: args.nodes.max(1),
        namespaces: args.namespaces.max(1),
        key_types: vec![args.key_type],
        kube_version: args.kube_version,
        signer_name: cluster::SIGNER.into(),
        // Nothing is recreated or refreshed within a run: one request per pod.
        refresh_jitter: Duration::ZERO,
        recreate_after: Duration::from_secs(3600),
        recreate_jitter: Duration::ZERO,
        // Timers only start the first creates (and pace nothing): 100 ms keeps the emulator's
        // per-tick scan of every pod cheap.
        tick: Duration::from_millis(100),
        create_concurrency: 64,
        create_rate: args.rate,
        ..KubeletConfig::default()
    };
    let kubelet = cluster.kubelet(cfg);
    eprintln!("bench: creating {} pods", args.requests);
    let fleet = kubelet.prepare().await?;

    // One replica without election unless --signer-arg chooses (e.g. --leader-election=true for
    // the active-active path: member Lease, ownership checks, a one-member set).
    let chosen = args
        .signer_args
        .iter()
        .any(|a| a == "--leader-election" || a.starts_with("--leader-election="));
    let mut extra = Vec::new();
    if !chosen {
        extra.push("--leader-election=false".to_string());
    }
    extra.extend(args.signer_args.iter().cloned());
    let mut signer = cluster.spawn_signer("bench-signer", &extra)?;
    signer.wait_ready(Duration::from_secs(60)).await?;
    eprintln!(
        "bench: signer ready; offering {} {} requests {}",
        args.requests,
        args.key_type.as_str(),
        match args.rate {
            Some(r) => format!("at {r}/s"),
            None => "at once".into(),
        }
    );

    let started = Instant::now();
    let handle = kubelet.launch(fleet);
    let timeout = Duration::from_secs(args.timeout_seconds);
    let summary = match handle.wait_settled(timeout).await {
        Ok(s) => s,
        Err(_) => {
            eprintln!("bench: timed out after {timeout:?}");
            handle.summary()
        }
    };
    let wall = started.elapsed();
    if let Some(path) = &args.latency_csv {
        write_latency_csv(path, started, &handle.latency_samples())?;
    }
    let usage = signer
        .usage()
        .context("reading the signer's CPU time and peak memory")?;
    let log_tail = signer.log_tail(20);
    signer.kill();
    handle.shutdown().await;
    cluster.shutdown().await;
    if summary.issued < args.requests {
        eprintln!("bench: not all issued; last signer log lines:\n{log_tail}");
    }

    let rates = if args.core_seconds > 0.0 {
        eprintln!("bench: measuring the core in-process");
        let budget = Duration::from_secs_f64(args.core_seconds);
        let kt = args.key_type;
        Some(
            tokio::task::spawn_blocking(move || core_rate::measure(kt, ca_key_type, budget))
                .await??,
        )
    } else {
        None
    };
    Ok(report(&args, &summary, wall, usage, rates))
}

fn write_latency_csv(
    path: &std::path::Path,
    started: Instant,
    samples: &[(Instant, Duration)],
) -> anyhow::Result<()> {
    let mut out = String::from("acked_s,latency_ms\n");
    for (acked, latency) in samples {
        let at = acked.saturating_duration_since(started).as_secs_f64();
        out.push_str(&format!("{at:.4},{:.3}\n", latency.as_secs_f64() * 1e3));
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

fn report(
    args: &BenchArgs,
    summary: &Summary,
    wall: Duration,
    usage: proc_stats::ProcUsage,
    rates: Option<core_rate::CoreRates>,
) -> BenchReport {
    let wall_s = wall.as_secs_f64();
    BenchReport {
        requests: args.requests,
        issued: summary.issued,
        denied: summary.denied,
        failed: summary.failed + summary.invalid,
        pending: summary.pending,
        wall_s: round(wall_s, 3),
        issued_per_s: round(summary.issued as f64 / wall_s.max(1e-9), 1),
        p50_ms: ms(summary.latency.p50),
        p99_ms: ms(summary.latency.p99),
        max_ms: ms(summary.latency.max),
        signer_cpu_s: round(usage.cpu_s, 2),
        signer_cpu_per_issued_us: round(cpu_per_issued_us(usage.cpu_s, summary.issued), 1),
        cpu_vs_core: rates.filter(|_| summary.issued > 0).map(|r| {
            round(
                cpu_per_issued_us(usage.cpu_s, summary.issued) * r.core / 1e6,
                2,
            )
        }),
        signer_peak_rss_mib: round(usage.peak_rss_mib, 1),
        core_per_s: rates.map(|r| round(r.core, 1)),
        raw_sign_per_s: rates.map(|r| round(r.raw, 1)),
        core_vs_raw: rates.map(|r| round(r.core / r.raw.max(1e-9), 3)),
        proof_per_s: rates.map(|r| round(r.proof, 1)),
        core_vs_raw_bound: rates.map(|r| round(r.proof / (r.proof + r.raw).max(1e-9), 3)),
        key_type: args.key_type.as_str().to_string(),
        ca_key_type: args.ca_key_type.name().to_string(),
        rate: args.rate,
        nodes: args.nodes.max(1),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .to_string(),
    }
}
