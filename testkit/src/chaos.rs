//! `podcert-testkit chaos`: K real signer replicas with leader election against the API
//! emulator while faults are injected (leader kills, 5xx, 429, 409, latency, watch drops).
//! Progress goes to stderr; the last line on stdout is one JSON object ([`ChaosReport`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use podcert_core::ca::CaKeyType;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::apiserver::store::WriteRecord;
use crate::apiserver::Faults;
use crate::bench::cluster::{self, Cluster, SignerProcess};
use crate::kubelet::{KeyType, KubeletConfig};

/// The default mix: the leader killed every 10 s, 5% of API requests answered 500, every
/// watch dropped every 3 s.
pub const DEFAULT_FAULTS: &str =
    "kill-every=10s,error-rate=0.05,error-code=500,drop-watch-every=3s";

#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// Requests offered (one pod each).
    #[arg(long, default_value_t = 1000)]
    pub requests: usize,
    /// Requests offered per second, so the faults and kills land while work is in flight
    /// (0: all at once).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Signer replicas (leader election on).
    #[arg(long, default_value_t = 2)]
    pub replicas: usize,
    /// Faults as KEY=VALUE,...: kill-every, error-rate, error-code (500, 503, 429),
    /// retry-after, conflict-rate, drop-watch-every, delay, delay-jitter, stall-rate,
    /// stall-for, seed; `none` for no faults. Default: the mix in DEFAULT_FAULTS.
    #[arg(long, default_value = DEFAULT_FAULTS)]
    pub faults: FaultSpec,
    /// Subject key type of every request.
    #[arg(long, default_value = "ED25519")]
    pub key_type: KeyType,
    #[arg(long, default_value_t = 20)]
    pub nodes: usize,
    /// The signer binary (default: podcert-signer next to this binary).
    #[arg(long, value_name = "FILE")]
    pub signer_bin: Option<PathBuf>,
    /// Give up waiting after this many seconds (what is undecided then counts as pending).
    #[arg(long, default_value_t = 600)]
    pub timeout_seconds: u64,
    /// Which replica kill-every SIGKILLs: any (a random one) or the leader (the Lease holder).
    #[arg(long, value_enum, default_value = "any")]
    pub kill: KillTarget,
    /// The signers' --ha-mode.
    #[arg(long, default_value = "active-active")]
    pub ha_mode: String,
}

/// `--kill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KillTarget {
    Any,
    Leader,
}

/// Parsed `--faults`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultSpec {
    /// Kill (SIGKILL) the leading replica this often, and start a replacement.
    pub kill_every: Option<Duration>,
    pub api: Faults,
    /// As given, for the report.
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FaultSpecError {
    #[error("fault {0:?} is not KEY=VALUE")]
    NotKeyValue(String),
    #[error("unknown fault {0:?}; expected kill-every, error-rate, error-code, retry-after, conflict-rate, drop-watch-every, delay, delay-jitter, stall-rate, stall-for or seed")]
    UnknownKey(String),
    #[error("invalid value {value:?} for fault {key}: {why}")]
    BadValue {
        key: String,
        value: String,
        why: String,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime_like(s)
}

/// `500ms`, `3s`, `2m` or plain seconds.
fn humantime_like(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| "expected a duration such as 500ms, 3s or 2m".to_string())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit {unit:?}; use ms, s or m")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err("must be a non-negative duration".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut spec = FaultSpec {
            text: s.trim().to_string(),
            ..FaultSpec::default()
        };
        if s.trim() == "none" {
            return Ok(spec);
        }
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| FaultSpecError::NotKeyValue(item.to_string()))?;
            let bad = |why: String| FaultSpecError::BadValue {
                key: key.to_string(),
                value: value.to_string(),
                why,
            };
            let rate = |v: &str| -> Result<f64, FaultSpecError> {
                let r: f64 = v.parse().map_err(|_| bad("expected a number".into()))?;
                if !(0.0..=1.0).contains(&r) {
                    return Err(bad("expected a fraction between 0 and 1".into()));
                }
                Ok(r)
            };
            let a = &mut spec.api;
            match key {
                "kill-every" => spec.kill_every = Some(parse_duration(value).map_err(bad)?),
                "error-rate" => a.error_rate = rate(value)?,
                "error-code" => {
                    a.error_code = match value.parse() {
                        Ok(c @ (500 | 503 | 429)) => c,
                        _ => return Err(bad("expected 500, 503 or 429".into())),
                    }
                }
                "retry-after" => {
                    a.retry_after_seconds = value
                        .parse()
                        .map_err(|_| bad("expected whole seconds".into()))?
                }
                "conflict-rate" => a.conflict_rate = rate(value)?,
                "drop-watch-every" => {
                    a.drop_watch_every = Some(parse_duration(value).map_err(bad)?)
                }
                "delay" => a.delay = parse_duration(value).map_err(bad)?,
                "delay-jitter" => a.delay_jitter = parse_duration(value).map_err(bad)?,
                "stall-rate" => a.stall_rate = rate(value)?,
                "stall-for" => a.stall_for = parse_duration(value).map_err(bad)?,
                "seed" => {
                    a.seed = value
                        .parse()
                        .map_err(|_| bad("expected an integer".into()))?
                }
                other => return Err(FaultSpecError::UnknownKey(other.to_string())),
            }
        }
        if spec.kill_every.is_some_and(|d| d.is_zero()) {
            return Err(FaultSpecError::BadValue {
                key: "kill-every".into(),
                value: "0".into(),
                why: "must be longer than zero".into(),
            });
        }
        Ok(spec)
    }
}

/// The chaos run's result.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ChaosReport {
    pub requests: usize,
    pub issued: usize,
    pub denied: usize,
    pub failed: usize,
    /// Never decided before the run ended.
    pub pending: usize,
    /// Requests whose status was written more than once (from the emulator's write log).
    pub double_issued: usize,
    /// Leader kills followed by another replica taking the Lease.
    pub failovers: usize,
    /// Longest kill -> another replica holds the Lease, seconds.
    pub max_failover_s: f64,
    /// Kills after which no other replica took over before the run ended.
    pub failovers_unfinished: usize,
    pub status_writes: usize,
    /// Create acknowledged -> Issued seen, over every issuance.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Decisions whose status write lost the race (refused for a stale resourceVersion), as
    /// a fraction of requests: signatures made for nothing.
    pub duplicate_work: f64,
    pub kills: usize,
    pub kill: String,
    pub ha_mode: String,
    pub replicas: usize,
    pub wall_s: f64,
    pub faults: String,
}

/// Requests whose status was successfully written more than once.
pub fn double_written(log: &[WriteRecord]) -> usize {
    let mut writes: HashMap<(&str, &str), usize> = HashMap::new();
    for w in log {
        if w.resource == "podcertificaterequests" && w.subresource == "status" {
            *writes.entry((&w.namespace, &w.name)).or_default() += 1;
        }
    }
    writes.values().filter(|n| **n > 1).count()
}

fn status_writes(log: &[WriteRecord]) -> usize {
    log.iter()
        .filter(|w| w.resource == "podcertificaterequests" && w.subresource == "status")
        .count()
}

/// The `q` quantile (nearest rank) of `d`, in milliseconds to 0.1 (0 when empty).
fn percentile_ms(d: &mut [Duration], q: f64) -> f64 {
    if d.is_empty() {
        return 0.0;
    }
    d.sort_unstable();
    let rank = ((q * d.len() as f64).ceil() as usize).clamp(1, d.len());
    (d[rank - 1].as_secs_f64() * 10_000.0).round() / 10.0
}

/// A kill and when (if) another replica took the Lease.
struct Kill {
    victim: String,
    at: Instant,
    taken_over: Option<Duration>,
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<ChaosReport> {
    let faults_text = args.faults.text.clone();
    if args.requests == 0 || args.replicas == 0 {
        bail!("--requests and --replicas must be at least 1");
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        bail!("--rate must be a non-negative number of requests per second");
    }
    let signer_bin = match &args.signer_bin {
        Some(b) => b.clone(),
        None => cluster::default_signer_bin()?,
    };
    let cluster = Cluster::start(signer_bin, CaKeyType::EcdsaP256).await?;
    let cfg = KubeletConfig {
        pods: args.requests,
        nodes: args.nodes.max(1),
        namespaces: 10,
        key_types: vec![args.key_type],
        signer_name: cluster::SIGNER.into(),
        refresh_jitter: Duration::ZERO,
        recreate_after: Duration::from_secs(3600),
        recreate_jitter: Duration::ZERO,
        tick: Duration::from_millis(50),
        create_rate: (args.rate > 0.0).then_some(args.rate),
        ..KubeletConfig::default()
    };
    let kubelet = cluster.kubelet(cfg);
    eprintln!("chaos: creating {} pods", args.requests);
    let fleet = kubelet.prepare().await?;

    let flags = [
        "--leader-election=true".to_string(),
        format!("--ha-mode={}", args.ha_mode),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.faults.api.seed);
    let mut kill_count = 0usize;
    let mut generation = 0usize;
    let mut spawn = |cluster: &Cluster, slot: usize| -> anyhow::Result<SignerProcess> {
        generation += 1;
        cluster.spawn_signer(&format!("replica-{slot}-{generation}"), &flags)
    };
    let mut replicas: Vec<SignerProcess> = Vec::new();
    for slot in 0..args.replicas {
        replicas.push(spawn(&cluster, slot)?);
    }
    for r in &mut replicas {
        // Standbys are ready too: /readyz reports a synced cache, not leadership.
        r.wait_ready(Duration::from_secs(60)).await?;
    }
    eprintln!(
        "chaos: {} replicas ready; faults {faults_text}",
        args.replicas
    );
    cluster.server.set_faults(args.faults.api.clone());

    let started = Instant::now();
    let handle = kubelet.launch(fleet);
    let timeout = Duration::from_secs(args.timeout_seconds);
    let mut kills: Vec<Kill> = Vec::new();
    let mut next_kill = args.faults.kill_every.map(|d| started + d);
    let mut last_report = Instant::now();
    let summary = loop {
        let settled = handle.settled() >= args.requests;
        // A failover in progress is seen through, so every kill gets its measurement.
        let failing_over = kills.last().is_some_and(|k| k.taken_over.is_none());
        if (settled && !failing_over) || started.elapsed() > timeout {
            break handle.summary();
        }
        let holder = cluster.lease_holder();
        if let (Some(k), Some(h)) = (kills.last_mut(), holder.as_ref()) {
            if k.taken_over.is_none() && *h != k.victim {
                k.taken_over = Some(k.at.elapsed());
                eprintln!(
                    "chaos: {} took over {:.1}s after {} was killed",
                    h,
                    k.at.elapsed().as_secs_f64(),
                    k.victim
                );
            }
        }
        let previous_done = kills.last().is_none_or(|k| k.taken_over.is_some());
        if let (Some(t), Some(h)) = (next_kill, holder) {
            // No kills once everything is decided: the run is winding down.
            if Instant::now() >= t && previous_done && !settled {
                let slot = match args.kill {
                    KillTarget::Leader => replicas.iter().position(|r| r.identity == h),
                    KillTarget::Any => Some(rng.gen_range(0..replicas.len())),
                };
                if let Some(slot) = slot {
                    let victim = replicas[slot].identity.clone();
                    let leader = victim == h;
                    eprintln!(
                        "chaos: killing {}{victim}",
                        if leader { "leader " } else { "" }
                    );
                    replicas[slot].kill();
                    kill_count += 1;
                    // Failover is measured for the Lease holder only.
                    if leader {
                        kills.push(Kill {
                            victim,
                            at: Instant::now(),
                            taken_over: None,
                        });
                    }
                    // The replacement pod (a new name, as a Deployment would give it).
                    replicas[slot] = spawn(&cluster, slot)?;
                }
                next_kill = args.faults.kill_every.map(|d| Instant::now() + d);
            }
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "chaos: {:.0}s {}",
                started.elapsed().as_secs_f64(),
                handle.summary()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let wall = started.elapsed();
    // Let in-flight writes land before reading the log, then stop everything.
    cluster.server.set_faults(Faults::default());
    for r in &mut replicas {
        r.kill();
    }
    let mut latencies = handle.latencies();
    handle.shutdown().await;
    let log = cluster.server.store().writes();
    // An identity holding more than one member Lease is how a dead member once stayed live.
    let mut per_holder: HashMap<String, usize> = HashMap::new();
    for lease in cluster.server.store().list("coordination.k8s.io", "leases") {
        if lease["metadata"]["labels"]["podcert.dev/member-of"].is_string() {
            let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or("");
            *per_holder.entry(holder.to_string()).or_default() += 1;
        }
    }
    let multi: Vec<_> = per_holder
        .iter()
        .filter(|(h, n)| !h.is_empty() && **n > 1)
        .collect();
    eprintln!(
        "chaos: {} member leases; holders of more than one: {multi:?}",
        per_holder.values().sum::<usize>()
    );
    let stale = cluster
        .server
        .store()
        .stale_writes("podcertificaterequests", "status");
    cluster.shutdown().await;

    let finished: Vec<Duration> = kills.iter().filter_map(|k| k.taken_over).collect();
    Ok(ChaosReport {
        requests: args.requests,
        issued: summary.issued,
        denied: summary.denied,
        failed: summary.failed + summary.invalid,
        pending: summary.pending,
        double_issued: double_written(&log),
        failovers: finished.len(),
        max_failover_s: finished
            .iter()
            .map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
            .fold(0.0, f64::max),
        failovers_unfinished: kills.len() - finished.len(),
        status_writes: status_writes(&log),
        p50_ms: percentile_ms(&mut latencies, 0.50),
        p99_ms: percentile_ms(&mut latencies, 0.99),
        max_ms: percentile_ms(&mut latencies, 1.0),
        duplicate_work: ((stale as f64 / args.requests as f64) * 10_000.0).round() / 10_000.0,
        kills: kill_count,
        kill: format!("{:?}", args.kill).to_lowercase(),
        ha_mode: args.ha_mode.clone(),
        replicas: args.replicas,
        wall_s: (wall.as_secs_f64() * 1000.0).round() / 1000.0,
        faults: faults_text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mix_parses() {
        let s: FaultSpec = DEFAULT_FAULTS.parse().unwrap();
        assert_eq!(s.kill_every, Some(Duration::from_secs(10)));
        assert_eq!(s.api.error_rate, 0.05);
        assert_eq!(s.api.error_code, 500);
        assert_eq!(s.api.drop_watch_every, Some(Duration::from_secs(3)));
    }

    #[test]
    fn every_key_and_none() {
        let s: FaultSpec = "error-code=429,retry-after=2,conflict-rate=0.1,delay=5ms,delay-jitter=1ms,stall-rate=0.01,stall-for=2s,seed=7"
            .parse()
            .unwrap();
        assert_eq!(s.api.error_code, 429);
        assert_eq!(s.api.retry_after_seconds, 2);
        assert_eq!(s.api.conflict_rate, 0.1);
        assert_eq!(s.api.delay, Duration::from_millis(5));
        assert_eq!(s.api.delay_jitter, Duration::from_millis(1));
        assert_eq!(s.api.stall_for, Duration::from_secs(2));
        assert_eq!(s.api.seed, 7);
        assert_eq!(s.kill_every, None);
        let none: FaultSpec = "none".parse().unwrap();
        assert_eq!((none.kill_every, none.api), (None, Faults::default()));
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(matches!(
            "bogus=1".parse::<FaultSpec>(),
            Err(FaultSpecError::UnknownKey(_))
        ));
        assert!(matches!(
            "error-rate".parse::<FaultSpec>(),
            Err(FaultSpecError::NotKeyValue(_))
        ));
        assert!("error-rate=2".parse::<FaultSpec>().is_err());
        assert!("error-code=404".parse::<FaultSpec>().is_err());
        assert!("kill-every=0s".parse::<FaultSpec>().is_err());
    }

    fn rec(subresource: &str, name: &str) -> WriteRecord {
        WriteRecord {
            verb: "patch".into(),
            group: "certificates.k8s.io".into(),
            resource: "podcertificaterequests".into(),
            subresource: subresource.into(),
            namespace: "ns".into(),
            name: name.into(),
            username: "signer".into(),
            resource_version: 1,
        }
    }

    #[test]
    fn double_writes_count_per_request() {
        let log = vec![
            rec("", "a"),
            rec("status", "a"),
            rec("status", "b"),
            rec("status", "b"),
            rec("status", "b"),
            rec("status", "c"),
        ];
        assert_eq!(double_written(&log), 1);
        assert_eq!(status_writes(&log), 5);
    }
}
