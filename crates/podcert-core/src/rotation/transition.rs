//! What a call to the state machine changed: one value per phase change, each worth an Event
//! (`reason` is the Event reason, `Display` its message) and a log line.

use std::fmt;

use time::OffsetDateTime;

use crate::request::wire::format_time;

/// What started a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The active CA reached its preparation time.
    Scheduled,
    /// An operator asked for a rotation now.
    Manual,
}

/// The role a CA had when an emergency dropped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Active,
    Next,
    Retired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// A next CA was generated and its root published; it signs from `activate_at`.
    Prepared {
        fingerprint: String,
        trigger: Trigger,
        activate_at: OffsetDateTime,
        not_after: OffsetDateTime,
    },
    /// Generating the next CA failed; the next step tries again.
    PrepareFailed { error: String },
    /// Signing switched to the prepared CA; the previous one retired and its root stays
    /// published until `retired_drop_at`. `early`: the propagation delay had not elapsed, but
    /// the active CA could otherwise no longer issue one-hour leaves (the signer was not
    /// stepped in time); peers with stale bundles reject the new leaves until they refresh.
    Activated {
        fingerprint: String,
        retired: String,
        retired_drop_at: OffsetDateTime,
        early: bool,
    },
    /// A retired CA's roots left the bundle: every leaf it signed has expired.
    Dropped { fingerprint: String },
    /// An emergency removed a CA from the bundle at once (see [`super::emergency_drop`]).
    EmergencyDropped {
        fingerprint: String,
        role: Role,
        /// The fresh CA now signing, when the active CA was dropped.
        replaced_by: Option<String>,
    },
    /// External material replaced the active CA: it signs at once, the previous CA's roots
    /// stay published until `retired_drop_at`. `new_roots_unpublished`: the new CA's roots
    /// were not yet in the bundle, so peers reject its leaves until their bundles refresh.
    ExternalChanged {
        fingerprint: String,
        retired: String,
        retired_drop_at: OffsetDateTime,
        new_roots_unpublished: bool,
    },
}

impl Transition {
    /// A Kubernetes Event reason (CamelCase, matches the API's reason pattern).
    pub fn reason(&self) -> &'static str {
        match self {
            Transition::Prepared { .. } => "CAPrepared",
            Transition::PrepareFailed { .. } => "CAPrepareFailed",
            Transition::Activated { .. } => "CAActivated",
            Transition::Dropped { .. } => "CADropped",
            Transition::EmergencyDropped { .. } => "CAEmergencyDropped",
            Transition::ExternalChanged { .. } => "CAExternalChange",
        }
    }

    /// Whether this deserves a Warning Event rather than a Normal one.
    pub fn is_warning(&self) -> bool {
        match self {
            Transition::PrepareFailed { .. } | Transition::EmergencyDropped { .. } => true,
            Transition::Activated { early, .. } => *early,
            Transition::ExternalChanged {
                new_roots_unpublished,
                ..
            } => *new_roots_unpublished,
            Transition::Prepared { .. } | Transition::Dropped { .. } => false,
        }
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transition::Prepared {
                fingerprint,
                trigger,
                activate_at,
                not_after,
            } => write!(
                f,
                "{} rotation: prepared CA {fingerprint} (valid until {}) and published its root; it signs from {}",
                match trigger {
                    Trigger::Scheduled => "scheduled",
                    Trigger::Manual => "manual",
                },
                format_time(*not_after),
                format_time(*activate_at)
            ),
            Transition::PrepareFailed { error } => write!(
                f,
                "could not prepare the next CA ({error}); retrying"
            ),
            Transition::Activated {
                fingerprint,
                retired,
                retired_drop_at,
                early,
            } => {
                write!(
                    f,
                    "CA {fingerprint} now signs; CA {retired} retired, its root stays published until {}",
                    format_time(*retired_drop_at)
                )?;
                if *early {
                    f.write_str(" (activated before the propagation delay elapsed because the old CA was about to expire: peers with a stale trust bundle reject new certificates until it refreshes)")?;
                }
                Ok(())
            }
            Transition::Dropped { fingerprint } => write!(
                f,
                "retired CA {fingerprint} left the trust bundle: every certificate it signed has expired"
            ),
            Transition::EmergencyDropped {
                fingerprint,
                role,
                replaced_by,
            } => match role {
                Role::Active => write!(
                    f,
                    "emergency: active CA {fingerprint} was removed from the trust bundle at once and signing switched to the new CA {}; every unexpired certificate it signed stops verifying now, and its pods get a certificate from the new CA only at their next refresh (beginRefreshAt)",
                    replaced_by.as_deref().unwrap_or("(none)")
                ),
                Role::Next => write!(
                    f,
                    "emergency: prepared CA {fingerprint} was discarded; it had signed nothing, so no certificate is affected"
                ),
                Role::Retired => write!(
                    f,
                    "emergency: retired CA {fingerprint} was removed from the trust bundle at once; every unexpired certificate it signed stops verifying now, until its pod refreshes it"
                ),
            },
            Transition::ExternalChanged {
                fingerprint,
                retired,
                retired_drop_at,
                new_roots_unpublished,
            } => {
                write!(
                    f,
                    "external CA material changed: CA {fingerprint} now signs; the previous CA {retired}'s root stays published until {}",
                    format_time(*retired_drop_at)
                )?;
                if *new_roots_unpublished {
                    f.write_str("; the new CA's root was not published before, so peers reject its certificates until their trust bundles refresh (publish the new root in the trust anchors first to avoid this)")?;
                }
                Ok(())
            }
        }
    }
}
