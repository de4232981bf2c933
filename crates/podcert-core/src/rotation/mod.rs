//! CA rotation without breaking a connection: which CA signs, which roots are published, and
//! when that changes. Pure and synchronous (no Kubernetes client, no clock): the caller
//! passes `now`, persists [`RotationState`] (JSON under [`STATE_KEY`] in the CA Secret),
//! publishes [`published_anchors`] and signs with [`signing_ca`].
//!
//! Invariants, given a validated [`RotationPolicy`] and a [`step`] at least every few minutes:
//! a CA signs only once its root has been published for the propagation delay; a root stays
//! published until every leaf its CA signed has expired; the active CA can always issue a
//! full-length leaf (so no leaf is cut short, let alone below one hour).
//!
//! Wiring (for the caller): only the leader steps; write the new state to the Secret (with a
//! resourceVersion precondition) *before* publishing its bundle or signing with its active CA,
//! so a CA whose leaves exist can never be lost in a failover; publish [`published_anchors`]
//! after every change; step again at [`next_step_at`] (and every few minutes regardless). The
//! propagation delay counts from the state change, so a trust-bundle publisher that cannot
//! write should hold the step back rather than let the delay run out unseen.

mod machine;
mod retained;
mod schedule;
mod state;
mod transition;
mod trigger;

pub use machine::{
    begin_manual, emergency_drop, forced_activation_at, next_step_at, observe_external,
    observe_external_with, prepare_at, step, Generate, RotationError,
};
pub use retained::{
    encode_retained, parse_handled, parse_retained, retained_roots, RecordProblem, RetainedRoot,
    HANDLED_ROTATE_ANNOTATION, MAX_RETAINED_ROOTS, RETAINED_ROOTS_ANNOTATION,
};
pub use schedule::{PolicyError, RotationPolicy};
pub use state::{CaOrigin, CaRecord, KeyPem, RotationState, StateError, STATE_KEY, STATE_VERSION};
pub use transition::{Role, Transition, Trigger};
pub use trigger::{
    handle_trigger, requested, RotationRequest, TriggerMode, TriggerOutcome, ROTATE_ANNOTATION,
    ROTATE_FINGERPRINT_ANNOTATION, ROTATE_MODE_ANNOTATION,
};

use time::OffsetDateTime;

use crate::ca::{Ca, CaError};

/// Where a rotation stands, derived from the stored times (so it can never disagree with
/// them). When a prepared CA and retired roots coexist, `Prepared` is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// One CA signs and its roots are the only ones published.
    Stable,
    /// The next CA's root is published; it signs from `activate_at`.
    Prepared {
        published_at: OffsetDateTime,
        activate_at: OffsetDateTime,
    },
    /// A retired CA's roots are still published until `drop_at` (the earliest).
    Draining { drop_at: OffsetDateTime },
}

impl Phase {
    /// A stable label for metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Stable => "Stable",
            Phase::Prepared { .. } => "Prepared",
            Phase::Draining { .. } => "Draining",
        }
    }
}

impl RotationState {
    pub fn phase(&self) -> Phase {
        if let Some(next) = &self.next {
            return Phase::Prepared {
                published_at: next.published_at,
                activate_at: next.activate_at.unwrap_or(next.published_at),
            };
        }
        match self
            .retired
            .iter()
            .map(|r| r.drop_at.unwrap_or(r.not_after))
            .min()
        {
            Some(drop_at) => Phase::Draining { drop_at },
            None => Phase::Stable,
        }
    }
}

/// The CA that signs now, loaded (and checked at `now`) from the active record.
pub fn signing_ca(state: &RotationState, now: OffsetDateTime) -> Result<Ca, CaError> {
    signing_ca_with(state, now, &crate::ca::PemKeys)
}

/// As [`signing_ca`], the key possibly a reference `resolver` knows (a `pkcs11:` URI).
pub fn signing_ca_with(
    state: &RotationState,
    now: OffsetDateTime,
    resolver: &dyn crate::ca::KeyResolver,
) -> Result<Ca, CaError> {
    let key = state.active.key_pem.as_ref().ok_or(CaError::NoKey)?;
    Ca::load(
        &state.active.cert_pem,
        key.expose(),
        Some(&state.active.anchors_pem.concat()),
        now,
        resolver,
    )
}

/// Every root to publish, one PEM CERTIFICATE block each, without duplicates: the active CA's
/// first, then the prepared CA's, then the retired ones' (newest first).
pub fn published_anchors(state: &RotationState) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for anchor in state.records().flat_map(|r| r.anchors_pem.iter()) {
        if !out.contains(anchor) {
            out.push(anchor.clone());
        }
    }
    out
}

/// SHA-256 of one PEM CERTIFICATE block's DER, lowercase hex (None if it is not one).
pub fn anchor_sha256(anchor_pem: &str) -> Option<String> {
    state::anchor_fingerprint(anchor_pem)
}

/// [`published_anchors`] as one PEM text (a ClusterTrustBundle's `trustBundle`).
pub fn published_bundle_pem(state: &RotationState) -> String {
    published_anchors(state).concat()
}
