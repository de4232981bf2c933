//! Logs (tracing, json or text) and Prometheus metrics (prometheus-client).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` filter.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: log collectors must not receive escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

// Every per-signer series is labelled `signer_name`, as the kubelet's
// `kubelet_podcertificate_states{signer_name,state}` is, so the two join without relabelling.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignerLabels {
    pub signer_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub signer_name: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub signer_name: String,
    pub kind: String,
}

/// One CA of a signer's rotation state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CaLabels {
    pub signer_name: String,
    /// active, next or retired.
    pub role: String,
    /// The first 16 hex digits of the certificate's SHA-256.
    pub fingerprint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub signer_name: String,
    pub phase: String,
}

/// Every metric the signer exports.
pub struct Metrics {
    pub registry: Registry,
    pub issued: Family<SignerLabels, Counter>,
    pub denied: Family<ReasonLabels, Counter>,
    pub failed: Family<SignerLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub conflicts: Family<SignerLabels, Counter>,
    pub issue_duration: Family<SignerLabels, Histogram>,
    pub pending: Family<SignerLabels, Gauge>,
    pub oldest_pending_seconds: Family<SignerLabels, Gauge<f64, AtomicU64>>,
    pub ca_not_after: Family<SignerLabels, Gauge>,
    pub ca_reload_errors: Family<SignerLabels, Counter>,
    pub ca_role_not_after: Family<CaLabels, Gauge>,
    pub rotation_phase: Family<PhaseLabels, Gauge>,
    pub rotation_next_step: Family<SignerLabels, Gauge>,
    pub rotation_transitions: Family<ReasonLabels, Counter>,
    pub trust_bundle_errors: Family<SignerLabels, Counter>,
    pub leader: Gauge,
    /// Active-active: live members as this replica sees them (itself included).
    pub members: Gauge,
    /// Active-active: pending requests this replica owns.
    pub owned: Family<SignerLabels, Gauge>,
    /// Active-active: requests taken over from a live owner after the hedge delay.
    pub hedged: Family<SignerLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

fn latency_histogram() -> Histogram {
    // 5 ms .. ~80 s: a burst's queue can be long; a quiet cluster answers in milliseconds.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.005, 2.0, 15,
    ))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("podcert");
        let m = Metrics {
            issued: Family::default(),
            denied: Family::default(),
            failed: Family::default(),
            errors: Family::default(),
            conflicts: Family::default(),
            issue_duration: Family::new_with_constructor(latency_histogram),
            pending: Family::default(),
            oldest_pending_seconds: Family::default(),
            ca_not_after: Family::default(),
            ca_reload_errors: Family::default(),
            ca_role_not_after: Family::default(),
            rotation_phase: Family::default(),
            rotation_next_step: Family::default(),
            rotation_transitions: Family::default(),
            trust_bundle_errors: Family::default(),
            leader: Gauge::default(),
            members: Gauge::default(),
            owned: Family::default(),
            hedged: Family::default(),
            registry: Registry::default(),
        };
        registry.register("issued", "Certificates issued", m.issued.clone());
        registry.register("denied", "Requests denied, by reason", m.denied.clone());
        registry.register(
            "failed",
            "Requests marked Failed (never for transient problems)",
            m.failed.clone(),
        );
        registry.register(
            "errors",
            "Errors that were retried, by kind",
            m.errors.clone(),
        );
        registry.register(
            "status_conflicts",
            "Status writes refused with 409 (another writer decided)",
            m.conflicts.clone(),
        );
        registry.register(
            "issue_duration_seconds",
            "From the request's creation to its Issued status write",
            m.issue_duration.clone(),
        );
        registry.register(
            "pending_requests",
            "Requests not yet decided",
            m.pending.clone(),
        );
        registry.register(
            "oldest_pending_request_age_seconds",
            "Age of the oldest undecided request",
            m.oldest_pending_seconds.clone(),
        );
        registry.register(
            "ca_not_after_timestamp_seconds",
            "The active signing CA's notAfter, Unix seconds",
            m.ca_not_after.clone(),
        );
        registry.register(
            "ca_reload_errors",
            "New CA material refused (the old CA stays)",
            m.ca_reload_errors.clone(),
        );
        registry.register(
            "ca_certificate_not_after_timestamp_seconds",
            "Each published CA's notAfter by role (active, next, retired), Unix seconds",
            m.ca_role_not_after.clone(),
        );
        registry.register(
            "ca_rotation_phase",
            "1 for the CA rotation's current phase (Stable, Prepared, Draining), 0 for the others",
            m.rotation_phase.clone(),
        );
        registry.register(
            "ca_rotation_next_step_timestamp_seconds",
            "When the CA rotation next has something to do, Unix seconds (0: nothing scheduled)",
            m.rotation_next_step.clone(),
        );
        registry.register(
            "ca_rotation_transitions",
            "CA rotation phase changes recorded by the leader, by Event reason",
            m.rotation_transitions.clone(),
        );
        registry.register(
            "trust_bundle_publish_errors",
            "Failed attempts to write the ClusterTrustBundle or a trust-bundle ConfigMap (retried)",
            m.trust_bundle_errors.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            m.leader.clone(),
        );
        registry.register(
            "members",
            "Active-active: live replicas as this one sees them (itself included)",
            m.members.clone(),
        );
        registry.register(
            "owned_requests",
            "Active-active: pending requests this replica owns (rendezvous hashing of the UID)",
            m.owned.clone(),
        );
        registry.register(
            "hedged_takeovers",
            "Active-active: requests this replica decided for a live owner after the hedge delay",
            m.hedged.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the signer's version as a label",
            build_info,
        );
        Metrics { registry, ..m }
    }

    /// Creates a signer's counters at 0 (every denial reason and each of `error_kinds`), so
    /// that the first increment of each is a visible change to `rate()` and `increase()`: a
    /// series that appears at 1 has no earlier sample to differ from.
    pub fn register_signer(&self, name: &str, error_kinds: &[&str]) {
        let signer = Self::signer(name);
        for family in [
            &self.issued,
            &self.failed,
            &self.conflicts,
            &self.ca_reload_errors,
            &self.trust_bundle_errors,
            &self.hedged,
        ] {
            // (The returned guard is only for reading the value: drop it at once.)
            drop(family.get_or_create(&signer));
        }
        drop(self.issue_duration.get_or_create(&signer));
        for reason in podcert_core::policy::DenyReason::ALL {
            drop(self.denied.get_or_create(&ReasonLabels {
                signer_name: name.to_string(),
                reason: reason.as_str().to_string(),
            }));
        }
        for kind in error_kinds {
            drop(self.errors.get_or_create(&ErrorLabels {
                signer_name: name.to_string(),
                kind: kind.to_string(),
            }));
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn signer(name: &str) -> SignerLabels {
        SignerLabels {
            signer_name: name.to_string(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_line(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn exports_named_metrics_with_labels() {
        let m = Metrics::new();
        m.issued
            .get_or_create(&Metrics::signer("example.com/x"))
            .inc();
        m.denied
            .get_or_create(&ReasonLabels {
                signer_name: "example.com/x".into(),
                reason: "InvalidProof".into(),
            })
            .inc();
        m.issue_duration
            .get_or_create(&Metrics::signer("example.com/x"))
            .observe(0.2);
        m.leader.set(1);
        let text = m.encode();
        for line in [
            "podcert_issued_total{signer_name=\"example.com/x\"} 1",
            "podcert_denied_total{signer_name=\"example.com/x\",reason=\"InvalidProof\"} 1",
            "podcert_issue_duration_seconds_count{signer_name=\"example.com/x\"} 1",
            "podcert_leader 1",
        ] {
            assert!(has_line(&text, line), "{line} missing from\n{text}");
        }
        let version = format!(
            "podcert_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(has_line(&text, &version), "{text}");
    }

    #[test]
    fn a_registered_signer_exports_its_counters_at_zero() {
        let m = Metrics::new();
        m.register_signer("example.com/x", &["decode", "api_server_error"]);
        let text = m.encode();
        let s = "signer_name=\"example.com/x\"";
        for line in [
            format!("podcert_issued_total{{{s}}} 0"),
            format!("podcert_failed_total{{{s}}} 0"),
            format!("podcert_status_conflicts_total{{{s}}} 0"),
            format!("podcert_ca_reload_errors_total{{{s}}} 0"),
            format!("podcert_trust_bundle_publish_errors_total{{{s}}} 0"),
            format!("podcert_hedged_takeovers_total{{{s}}} 0"),
            format!("podcert_issue_duration_seconds_count{{{s}}} 0"),
            format!("podcert_denied_total{{{s},reason=\"InvalidProof\"}} 0"),
            format!("podcert_denied_total{{{s},reason=\"DnsNameNotAllowed\"}} 0"),
            format!("podcert_errors_total{{{s},kind=\"api_server_error\"}} 0"),
        ] {
            assert!(has_line(&text, &line), "{line} missing from\n{text}");
        }
        let denied = text
            .lines()
            .filter(|l| l.starts_with("podcert_denied_total{"))
            .count();
        assert_eq!(
            denied,
            podcert_core::policy::DenyReason::ALL.len(),
            "{text}"
        );
        // Another signer's series are its own.
        assert!(!text.contains("example.com/y"));
    }
}
