//! When a bootstrapped CA is rotated: the schedule's parameters and the checks that make the
//! schedule safe (no leaf ever cut below one hour, none ever outliving its CA).

use time::Duration;

use crate::policy::MIN_LIFETIME;

/// How a generated CA is rotated. Build it with [`RotationPolicy::new`] (defaults for the
/// rest) and adjust fields, then call [`RotationPolicy::validate`]; the state machine assumes
/// a validated policy (it stays safe but may cut leaves short otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct RotationPolicy {
    /// Validity of every generated CA.
    pub ca_validity: Duration,
    /// The next CA is prepared (and its root published) at this fraction of the active CA's
    /// life, measured on its certificate (notBefore to notAfter).
    pub prepare_at_fraction: f64,
    /// Time between publishing the next CA's root and signing with it, so that every
    /// projected trust bundle holds the root before the first leaf it signs is presented.
    pub propagation_delay: Duration,
    /// The signer's maximum leaf lifetime ([`crate::policy::SignerConfig::max_lifetime`]):
    /// a retired CA's root stays published this long after its last signature.
    pub max_leaf_lifetime: Duration,
    /// The shortest leaf the signer may issue; Kubernetes refuses anything under one hour.
    pub min_leaf_lifetime: Duration,
    /// Slack for clock skew between replicas, apiserver and verifiers: added to every drop
    /// time and kept free before every activation deadline.
    pub safety_margin: Duration,
}

/// Why a rotation policy was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("the CA validity {} must be positive", human(*.0))]
    Validity(Duration),
    #[error("the CA validity {} is longer than the 100 years this signer supports", human(*.0))]
    ValidityTooLong(Duration),
    #[error("prepare_at_fraction {0} must lie strictly between 0 and 1")]
    Fraction(f64),
    #[error("the propagation delay {} must not be negative", human(*.0))]
    PropagationDelay(Duration),
    #[error("the safety margin {} must not be negative", human(*.0))]
    SafetyMargin(Duration),
    #[error("the minimum leaf lifetime {} is below the one hour Kubernetes requires of every certificate", human(*.0))]
    MinLeafLifetime(Duration),
    #[error("the maximum leaf lifetime {} is below the minimum leaf lifetime {}", human(*.max), human(*.min))]
    MaxBelowMin { max: Duration, min: Duration },
    #[error(
        "the next CA would start signing {} into the active CA's life (prepared at {} plus a propagation delay of {}), \
         but it must sign by {} (CA validity {} minus maximum leaf lifetime {} minus safety margin {}) \
         or leaves would be cut short; lower prepare_at_fraction or the propagation delay, \
         or lengthen the CA validity",
        human(*.activate_after), human(*.prepare_after), human(*.propagation_delay),
        human(*.latest), human(*.ca_validity), human(*.max_leaf_lifetime), human(*.safety_margin)
    )]
    RotatesTooLate {
        prepare_after: Duration,
        propagation_delay: Duration,
        activate_after: Duration,
        latest: Duration,
        ca_validity: Duration,
        max_leaf_lifetime: Duration,
        safety_margin: Duration,
    },
}

impl RotationPolicy {
    /// Rotate at half of the CA's life, like SPIRE.
    pub const DEFAULT_PREPARE_AT_FRACTION: f64 = 0.5;
    /// One hour. The kubelet re-projects a ClusterTrustBundle into pod volumes on its pod
    /// sync, within about a minute; the rest is headroom for what a minute does not cover: a
    /// trust-bundle publisher retrying through an apiserver outage, informer lag, and
    /// workloads that poll their bundle file every few minutes. (A pod's own credential,
    /// refreshed at beginRefreshAt, carries no trust bundle, so it plays no part here; it
    /// governs how long a retired root must stay, which `max_leaf_lifetime` covers.) The cost
    /// of a long delay is only that the old CA signs a little longer.
    pub const DEFAULT_PROPAGATION_DELAY: Duration = Duration::hours(1);
    /// Five minutes: the skew the apiserver itself tolerates on a leaf's notBefore.
    pub const DEFAULT_SAFETY_MARGIN: Duration = Duration::minutes(5);

    /// The longest CA validity accepted.
    pub const MAX_CA_VALIDITY: Duration = Duration::days(36525);

    /// A policy with the defaults for everything but the CA validity and the signer's maximum
    /// leaf lifetime, validated.
    pub fn new(ca_validity: Duration, max_leaf_lifetime: Duration) -> Result<Self, PolicyError> {
        let policy = RotationPolicy {
            ca_validity,
            prepare_at_fraction: Self::DEFAULT_PREPARE_AT_FRACTION,
            propagation_delay: Self::DEFAULT_PROPAGATION_DELAY,
            max_leaf_lifetime,
            min_leaf_lifetime: MIN_LIFETIME,
            safety_margin: Self::DEFAULT_SAFETY_MARGIN,
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Refuses a policy under which a rotation could not complete before leaves have to be
    /// cut short: the next CA must sign by `ca_validity - max_leaf_lifetime - safety_margin`
    /// into the active CA's life (so the active CA can always give a full-length leaf).
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !self.ca_validity.is_positive() {
            return Err(PolicyError::Validity(self.ca_validity));
        }
        // The bound keeps every date the schedule computes representable; the check below
        // bounds every other duration by the validity.
        if self.ca_validity > Self::MAX_CA_VALIDITY {
            return Err(PolicyError::ValidityTooLong(self.ca_validity));
        }
        if !(self.prepare_at_fraction > 0.0 && self.prepare_at_fraction < 1.0) {
            return Err(PolicyError::Fraction(self.prepare_at_fraction));
        }
        if self.propagation_delay.is_negative() {
            return Err(PolicyError::PropagationDelay(self.propagation_delay));
        }
        if self.safety_margin.is_negative() {
            return Err(PolicyError::SafetyMargin(self.safety_margin));
        }
        if self.min_leaf_lifetime < MIN_LIFETIME {
            return Err(PolicyError::MinLeafLifetime(self.min_leaf_lifetime));
        }
        if self.max_leaf_lifetime < self.min_leaf_lifetime {
            return Err(PolicyError::MaxBelowMin {
                max: self.max_leaf_lifetime,
                min: self.min_leaf_lifetime,
            });
        }
        let prepare_after = self.ca_validity * self.prepare_at_fraction;
        let activate_after = prepare_after + self.propagation_delay;
        let latest = self.ca_validity - self.max_leaf_lifetime - self.safety_margin;
        if activate_after > latest {
            return Err(PolicyError::RotatesTooLate {
                prepare_after,
                propagation_delay: self.propagation_delay,
                activate_after,
                latest,
                ca_validity: self.ca_validity,
                max_leaf_lifetime: self.max_leaf_lifetime,
                safety_margin: self.safety_margin,
            });
        }
        Ok(())
    }
}

/// "2h 30m" rather than "9000s"; negative durations keep their sign.
pub(crate) fn human(d: Duration) -> String {
    let text = humantime::format_duration(std::time::Duration::from_secs(
        d.whole_seconds().unsigned_abs(),
    ))
    .to_string();
    if d.is_negative() {
        format!("-{text}")
    } else {
        text
    }
}
