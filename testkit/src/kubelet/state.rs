//! What the emulator reports: per-pod state, issuance latencies and a summary.

use std::time::Duration;

use time::OffsetDateTime;

use super::keys::KeyType;

/// Where one pod's podCertificate volume stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// No credential yet (a request is outstanding or about to be created).
    Pending,
    /// A credential was written; a refresh request may be in flight.
    Issued {
        not_after: OffsetDateTime,
        refresh_at: OffsetDateTime,
        issued_count: u32,
    },
    /// Permanent: the signer denied a request.
    Denied { reason: String, message: String },
    /// Permanent: the signer marked a request Failed.
    Failed { reason: String, message: String },
    /// Permanent: an Issued status the emulator refuses (wrong key, inconsistent times, bad
    /// chain). A real kubelet would project it anyway; the emulator flags the signer bug.
    Invalid { message: String },
}

impl Phase {
    /// Issued at least once, or permanently refused.
    pub fn is_settled(&self) -> bool {
        !matches!(self, Phase::Pending)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    pub namespace: String,
    pub pod: String,
    pub node: String,
    pub key_type: KeyType,
    pub phase: Phase,
    /// PodCertificateRequests created for this pod (initial, refreshes and recreations).
    pub requests_created: u32,
    /// The request currently awaited, if any.
    pub current_request: Option<String>,
    /// Create acknowledged -> Issued seen, for the latest issuance.
    pub last_latency: Option<Duration>,
    /// The latest error (a refused create, a write failure), kept for diagnosis.
    pub last_error: Option<String>,
}

/// Latency statistics over every issuance seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyStats {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl LatencyStats {
    /// Nearest-rank percentiles.
    pub fn from_samples(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut s = samples.to_vec();
        s.sort_unstable();
        let rank = |p: f64| s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
        LatencyStats {
            count: s.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: s[s.len() - 1],
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub pods: usize,
    pub pending: usize,
    pub issued: usize,
    pub denied: usize,
    pub failed: usize,
    pub invalid: usize,
    pub requests_created: u64,
    pub issuances: u64,
    pub latency: LatencyStats,
}

impl Summary {
    pub fn from_states(states: &[PodState], latencies: &[Duration]) -> Self {
        let mut s = Summary {
            pods: states.len(),
            ..Default::default()
        };
        for st in states {
            s.requests_created += u64::from(st.requests_created);
            match &st.phase {
                Phase::Pending => s.pending += 1,
                Phase::Issued { .. } => s.issued += 1,
                Phase::Denied { .. } => s.denied += 1,
                Phase::Failed { .. } => s.failed += 1,
                Phase::Invalid { .. } => s.invalid += 1,
            }
        }
        s.issuances = latencies.len() as u64;
        s.latency = LatencyStats::from_samples(latencies);
        s
    }

    /// Every pod issued or permanently refused.
    pub fn all_settled(&self) -> bool {
        self.pending == 0
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pods={} issued={} pending={} denied={} failed={} invalid={} requests={} issuances={} latency p50={:?} p99={:?} max={:?}",
            self.pods,
            self.issued,
            self.pending,
            self.denied,
            self.failed,
            self.invalid,
            self.requests_created,
            self.issuances,
            self.latency.p50,
            self.latency.p99,
            self.latency.max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = LatencyStats::from_samples(&samples);
        assert_eq!(s.count, 100);
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(LatencyStats::from_samples(&[]), LatencyStats::default());
    }
}
