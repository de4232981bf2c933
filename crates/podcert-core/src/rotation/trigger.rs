//! Rotation requested by an operator through annotations (on the CA Secret, or on any object
//! that carries the same annotations, such as a PodCertificateSigner): `podcert.dev/rotate`
//! holds an opaque request value (`podcert-signer ca rotate` writes the current time); a new
//! value is acted on once, and the value is recorded in the state
//! ([`RotationState::handled_trigger`]) in the same write as the rotation, so a repeated read,
//! a restart or a failover never rotates twice for one request.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::machine::{begin_manual, emergency_drop, Generate, RotationError};
use super::schedule::RotationPolicy;
use super::state::RotationState;
use super::transition::Transition;

/// A new value starts a rotation (any text; `ca rotate` writes an RFC 3339 time).
pub const ROTATE_ANNOTATION: &str = "podcert.dev/rotate";
/// `emergency` drops a compromised CA from the bundle at once; absent or `normal`: a
/// rotation with the usual propagation delay.
pub const ROTATE_MODE_ANNOTATION: &str = "podcert.dev/rotate-mode";
/// Emergency only: the SHA-256 fingerprint of the CA to drop (default: the active CA).
pub const ROTATE_FINGERPRINT_ANNOTATION: &str = "podcert.dev/rotate-fingerprint";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerMode {
    /// Prepare a next CA now; it signs after the propagation delay.
    Normal,
    /// Drop a CA from the bundle now (see [`emergency_drop`]).
    Emergency,
}

impl TriggerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerMode::Normal => "normal",
            TriggerMode::Emergency => "emergency",
        }
    }
}

/// A rotation request read from annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationRequest {
    /// The value of [`ROTATE_ANNOTATION`]: identifies the request.
    pub value: String,
    pub mode: TriggerMode,
    /// Emergency only: the CA to drop (None: the active CA).
    pub fingerprint: Option<String>,
}

/// What [`handle_trigger`] did.
#[derive(Debug)]
pub enum TriggerOutcome {
    /// No request, or it was handled before.
    Idle,
    /// Carried out; `state` records the request as handled. Persist it before acting on it.
    Done {
        state: RotationState,
        transitions: Vec<Transition>,
    },
    /// The request cannot be carried out (an unknown mode or fingerprint, an external CA);
    /// `state` records it as handled so it is not retried. Persist it and report `reason`.
    Refused {
        state: RotationState,
        reason: String,
    },
    /// Generating a CA failed; nothing changed and the request stays pending (retry).
    Retry(RotationError),
}

/// The rotation request in `annotations`, if any. An unknown mode is returned as an error
/// message (the request is malformed and will be refused).
pub fn requested(
    annotations: &BTreeMap<String, String>,
) -> Option<Result<RotationRequest, String>> {
    let value = annotations.get(ROTATE_ANNOTATION)?.trim();
    if value.is_empty() {
        return None;
    }
    let mode = match annotations
        .get(ROTATE_MODE_ANNOTATION)
        .map(|m| m.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("normal") => TriggerMode::Normal,
        Some("emergency") => TriggerMode::Emergency,
        Some(other) => {
            return Some(Err(format!(
                "{ROTATE_MODE_ANNOTATION} is {other:?}; use \"normal\" or \"emergency\""
            )))
        }
    };
    let fingerprint = annotations
        .get(ROTATE_FINGERPRINT_ANNOTATION)
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty());
    Some(Ok(RotationRequest {
        value: value.to_string(),
        mode,
        fingerprint,
    }))
}

/// Acts on a rotation request in `annotations` that `state` has not handled yet: a normal
/// request is [`begin_manual`], an emergency one [`emergency_drop`] (of the named CA, or the
/// active one). Only the leader calls this, and it must persist the returned state before
/// publishing or signing with it.
pub fn handle_trigger(
    annotations: &BTreeMap<String, String>,
    state: &RotationState,
    policy: &RotationPolicy,
    now: OffsetDateTime,
    generate: &mut Generate<'_>,
) -> TriggerOutcome {
    let Some(value) = annotations
        .get(ROTATE_ANNOTATION)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    else {
        return TriggerOutcome::Idle;
    };
    if state.handled_trigger.as_deref() == Some(value) {
        return TriggerOutcome::Idle;
    }
    let handled = |mut s: RotationState| {
        s.handled_trigger = Some(value.to_string());
        s
    };
    let request = match requested(annotations) {
        Some(Ok(r)) => r,
        Some(Err(reason)) => {
            return TriggerOutcome::Refused {
                state: handled(state.clone()),
                reason,
            }
        }
        None => return TriggerOutcome::Idle,
    };
    let result = match request.mode {
        TriggerMode::Normal => begin_manual(state, policy, now, generate),
        TriggerMode::Emergency => {
            let fingerprint = request
                .fingerprint
                .unwrap_or_else(|| state.active.fingerprint_sha256.clone());
            emergency_drop(state, policy, &fingerprint, now, generate)
        }
    };
    match result {
        Ok((s, transitions)) => TriggerOutcome::Done {
            state: handled(s),
            transitions,
        },
        Err(e @ RotationError::Generate(_)) => TriggerOutcome::Retry(e),
        Err(e) => TriggerOutcome::Refused {
            state: handled(state.clone()),
            reason: e.to_string(),
        },
    }
}
