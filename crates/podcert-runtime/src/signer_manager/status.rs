//! A PodCertificateSigner's status: the Ready condition with its reason, and facts about the
//! CA and the bundle. Pure apart from the clock passed in.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use podcert_core::ca::Ca;
use podcert_core::request::wire::format_time;
use podcert_k8s::crd::PodCertificateSignerStatus;

/// Why a signer is not issuing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// One of the reasons documented on the CRD.
    pub reason: &'static str,
    pub message: String,
}

impl NotReady {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        NotReady {
            reason,
            message: message.into(),
        }
    }
}

pub const INVALID_SPEC: &str = "InvalidSpec";
pub const NAME_NOT_ALLOWED: &str = "SignerNameNotAllowed";
pub const NOT_PERMITTED: &str = "NotPermitted";
pub const CONFLICT: &str = "Conflict";
pub const CA_NOT_LOADED: &str = "CANotLoaded";
/// The CA's key is in a PKCS#11 token that cannot sign now (requests wait, none fail).
pub const CA_KEY_UNAVAILABLE: &str = "CAKeyUnavailable";
pub const READY: &str = "Ready";

/// The status to report. `previous` keeps lastTransitionTime when the condition did not flip.
pub fn build(
    generation: Option<i64>,
    verdict: Result<&Ca, &NotReady>,
    bundle_name: Option<String>,
    previous: Option<&PodCertificateSignerStatus>,
    now: Timestamp,
) -> PodCertificateSignerStatus {
    let (status, reason, message) = match verdict {
        Ok(ca) => (
            "True",
            READY,
            format!(
                "issuing with CA {} (valid until {})",
                ca.fingerprint_sha256(),
                format_time(ca.not_after())
            ),
        ),
        Err(nr) => ("False", nr.reason, nr.message.clone()),
    };
    let old = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == "Ready"))
        .filter(|c| c.status == status);
    let condition = Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message: message.chars().take(32 * 1024).collect(),
        observed_generation: generation,
        last_transition_time: old
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now)),
    };
    let ca = verdict.ok();
    PodCertificateSignerStatus {
        observed_generation: generation,
        conditions: vec![condition],
        ca_fingerprint: ca.map(|c| c.fingerprint_sha256()),
        ca_not_after: ca.map(|c| format_time(c.not_after())),
        trust_bundle_name: if ca.is_some() { bundle_name } else { None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_the_condition_flips() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let t1 = Timestamp::from_second(2_000_000).unwrap();
        let nr = NotReady::new(CONFLICT, "x");
        let a = build(Some(1), Err(&nr), None, None, t0);
        assert_eq!(a.conditions[0].status, "False");
        assert_eq!(a.conditions[0].reason, "Conflict");
        let nr2 = NotReady::new(NOT_PERMITTED, "y");
        let b = build(Some(2), Err(&nr2), None, Some(&a), t1);
        assert_eq!(b.conditions[0].last_transition_time, Time(t0));
        assert_eq!(b.observed_generation, Some(2));
        assert!(b.ca_fingerprint.is_none());
    }
}
