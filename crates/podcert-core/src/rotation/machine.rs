//! The rotation state machine: pure functions of a state, a policy and an injected `now`.
//!
//! A scheduled rotation goes Stable → Prepared (the next CA's root is published at once) →
//! after the propagation delay the next CA signs and the old one retires → once every leaf the
//! old CA could have signed has expired (its last signature + the maximum leaf lifetime,
//! capped by its notAfter, + the safety margin) its root leaves the bundle.

use time::{Duration, OffsetDateTime};

use super::schedule::RotationPolicy;
use super::state::{normalise_fingerprint, CaOrigin, CaRecord, RotationState};
use super::transition::{Role, Transition, Trigger};
use crate::ca::{CaError, GeneratedCa, KeyResolver, PemKeys};

/// Makes a fresh CA valid from `now` for the given validity (production:
/// [`crate::ca::generate_self_signed`] with the configured key type and trust domain).
pub type Generate<'a> = dyn FnMut(OffsetDateTime, Duration) -> Result<GeneratedCa, CaError> + 'a;

/// Why a requested rotation could not be carried out; the state is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("no published CA has the SHA-256 fingerprint {0}")]
    UnknownFingerprint(String),
    #[error("the active CA {0} is managed externally and cannot be rotated by this signer: replace its material instead (the new CA signs at once and the old root stays published), then drop the old root if it is compromised")]
    ExternallyManaged(String),
    #[error("could not generate a new CA: {0}")]
    Generate(#[source] CaError),
}

/// When the active CA's successor is prepared: at the policy's fraction of its life, and in
/// any case early enough that it signs (after the propagation delay) while the active CA can
/// still give a full-length leaf.
pub fn prepare_at(active: &CaRecord, policy: &RotationPolicy) -> OffsetDateTime {
    let life = active.not_after - active.not_before;
    // Only a validated policy reaches here in production; never panic on one that is not.
    let fraction = if policy.prepare_at_fraction.is_finite() {
        policy.prepare_at_fraction.clamp(0.0, 1.0)
    } else {
        RotationPolicy::DEFAULT_PREPARE_AT_FRACTION
    };
    let by_fraction = active.not_before + life * fraction;
    let latest = active.not_after
        - policy.max_leaf_lifetime
        - policy.safety_margin
        - policy.propagation_delay;
    by_fraction.min(latest)
}

/// From this instant the active CA is close to being unable to issue a one-hour leaf, so a
/// prepared CA signs even if its root has not propagated yet (only reached when the signer
/// was not stepped for a long time).
pub fn forced_activation_at(active: &CaRecord, policy: &RotationPolicy) -> OffsetDateTime {
    active.not_after - policy.min_leaf_lifetime - policy.safety_margin
}

fn activate_due(next: &CaRecord, policy: &RotationPolicy) -> OffsetDateTime {
    next.activate_at
        .unwrap_or(next.published_at + policy.propagation_delay)
}

/// Advances the state to `now`: prepares the next CA when due (generated CAs only), switches
/// signing to it when due, and drops retired roots whose leaves have all expired. Calling it
/// again at the same instant changes nothing. A generation failure leaves the rest of the step
/// done and is reported as [`Transition::PrepareFailed`]; [`next_step_at`] then stays at or
/// before `now`, so the caller retries (with its own backoff).
pub fn step(
    state: &RotationState,
    policy: &RotationPolicy,
    now: OffsetDateTime,
    generate: &mut Generate<'_>,
) -> (RotationState, Vec<Transition>) {
    let mut s = state.clone();
    let mut out = Vec::new();
    if s.next.is_none()
        && s.active.origin == CaOrigin::Generated
        && now >= prepare_at(&s.active, policy)
    {
        match prepare(&mut s, policy, now, generate, Trigger::Scheduled) {
            Ok(t) => out.push(t),
            Err(e) => out.push(Transition::PrepareFailed {
                error: e.to_string(),
            }),
        }
    }
    if let Some(next) = s.next.take() {
        let due = activate_due(&next, policy);
        if now >= due || now >= forced_activation_at(&s.active, policy) {
            out.push(activate(&mut s, next, policy, now, now < due));
        } else {
            s.next = Some(next);
        }
    }
    out.extend(drop_expired(&mut s, now));
    note_max_leaf_lifetime(&mut s.active, policy);
    (s, out)
}

/// Starts a rotation now, whatever the schedule: the next CA is prepared and published at
/// once and signs after the propagation delay, exactly as a scheduled rotation. A rotation
/// already in progress is left as it is (no transitions), so a repeated trigger is harmless.
pub fn begin_manual(
    state: &RotationState,
    policy: &RotationPolicy,
    now: OffsetDateTime,
    generate: &mut Generate<'_>,
) -> Result<(RotationState, Vec<Transition>), RotationError> {
    if state.active.origin == CaOrigin::External {
        return Err(RotationError::ExternallyManaged(
            state.active.fingerprint_sha256.clone(),
        ));
    }
    if state.next.is_some() {
        return Ok((state.clone(), Vec::new()));
    }
    let mut s = state.clone();
    let prepared = prepare(&mut s, policy, now, generate, Trigger::Manual)?;
    let (s, mut rest) = step(&s, policy, now, generate);
    rest.insert(0, prepared);
    Ok((s, rest))
}

/// Emergency removal of a compromised CA, named by the SHA-256 fingerprint of its signing
/// certificate or of one of its roots. Its roots leave the published bundle at once:
///
/// - the active CA: a fresh CA is generated and signs immediately, without a propagation
///   delay (its root is published in the same write). The prepared CA, if any, is discarded
///   too (its key was stored next to the compromised one; it had signed nothing).
///   **Consequence:** every unexpired leaf the dropped CA signed stops verifying at once, and
///   its pods get a certificate from the new CA only at their next refresh (beginRefreshAt);
///   until then their peers reject them, and peers whose projected bundle has not yet picked
///   up the new root also reject the new leaves for about a minute.
/// - a retired CA: the same consequence for its unexpired leaves; signing is unaffected.
/// - the prepared CA: discarded; it signed nothing, so nothing breaks, and the next step
///   prepares another one.
///
/// Each removed CA is reported as a [`Transition::EmergencyDropped`] whose message states
/// the consequence. A generation failure changes nothing (the caller retries). An external
/// active CA cannot be replaced here: its owner must replace the material first.
pub fn emergency_drop(
    state: &RotationState,
    policy: &RotationPolicy,
    fingerprint: &str,
    now: OffsetDateTime,
    generate: &mut Generate<'_>,
) -> Result<(RotationState, Vec<Transition>), RotationError> {
    let wanted = normalise_fingerprint(fingerprint);
    if !state.records().any(|r| r.matches(&wanted)) {
        return Err(RotationError::UnknownFingerprint(wanted));
    }
    let mut s = state.clone();
    let mut out = Vec::new();
    if s.active.matches(&wanted) {
        if s.active.origin == CaOrigin::External {
            return Err(RotationError::ExternallyManaged(
                s.active.fingerprint_sha256.clone(),
            ));
        }
        let fresh = generate(now, policy.ca_validity).map_err(RotationError::Generate)?;
        let mut fresh = CaRecord::from_generated(&fresh, now).map_err(RotationError::Generate)?;
        fresh.activated_at = Some(now);
        note_max_leaf_lifetime(&mut fresh, policy);
        let dropped = std::mem::replace(&mut s.active, fresh);
        out.push(Transition::EmergencyDropped {
            fingerprint: dropped.fingerprint_sha256,
            role: Role::Active,
            replaced_by: Some(s.active.fingerprint_sha256.clone()),
        });
        if let Some(next) = s.next.take() {
            out.push(Transition::EmergencyDropped {
                fingerprint: next.fingerprint_sha256,
                role: Role::Next,
                replaced_by: None,
            });
        }
    }
    if let Some(next) = s.next.take_if(|n| n.matches(&wanted)) {
        out.push(Transition::EmergencyDropped {
            fingerprint: next.fingerprint_sha256,
            role: Role::Next,
            replaced_by: None,
        });
    }
    let (dropped, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut s.retired)
        .into_iter()
        .partition(|r| r.matches(&wanted));
    s.retired = kept;
    out.extend(dropped.into_iter().map(|r| Transition::EmergencyDropped {
        fingerprint: r.fingerprint_sha256,
        role: Role::Retired,
        replaced_by: None,
    }));
    Ok((s, out))
}

/// External CA material (files, a Secret written by cert-manager or Vault) as read now. New
/// material (another certificate, or other trust anchors) signs at once; the previous CA
/// retires, its roots staying published until every leaf it signed can have expired. A
/// prepared CA is discarded (it signed nothing). The same material again changes nothing.
///
/// Signing at once means the new CA's leaves are trusted only by peers whose bundle already
/// holds its root: if the root is new, owners should first add it to the trust anchors
/// (published at once, while the old CA keeps signing), then switch the signing material.
/// [`Transition::ExternalChanged`] says whether the new root was already published.
pub fn observe_external(
    state: &RotationState,
    policy: &RotationPolicy,
    cert_pem: &str,
    key_pem: &str,
    trust_anchors_pem: Option<&str>,
    now: OffsetDateTime,
) -> Result<(RotationState, Vec<Transition>), CaError> {
    observe_external_with(
        state,
        policy,
        cert_pem,
        key_pem,
        trust_anchors_pem,
        now,
        &PemKeys,
    )
}

/// As [`observe_external`], the key possibly a reference `resolver` knows (a `pkcs11:` URI).
pub fn observe_external_with(
    state: &RotationState,
    policy: &RotationPolicy,
    cert_pem: &str,
    key_pem: &str,
    trust_anchors_pem: Option<&str>,
    now: OffsetDateTime,
    resolver: &dyn KeyResolver,
) -> Result<(RotationState, Vec<Transition>), CaError> {
    let mut new = CaRecord::from_material_with(
        cert_pem,
        key_pem,
        trust_anchors_pem,
        CaOrigin::External,
        now,
        resolver,
    )?;
    let mut s = state.clone();
    if new.fingerprint_sha256 == s.active.fingerprint_sha256
        && new.anchors_pem == s.active.anchors_pem
    {
        // Same CA, perhaps re-encoded or with other intermediates: no rotation.
        s.active.cert_pem = new.cert_pem;
        s.active.key_pem = new.key_pem;
        s.active.origin = CaOrigin::External;
        return Ok((s, Vec::new()));
    }
    let published = super::published_anchors(state);
    let new_roots_unpublished = new.anchors_pem.iter().any(|a| !published.contains(a));
    s.next = None;
    new.activated_at = Some(now);
    note_max_leaf_lifetime(&mut new, policy);
    let mut old = std::mem::replace(&mut s.active, new);
    retire(&mut old, policy, now);
    let t = Transition::ExternalChanged {
        fingerprint: s.active.fingerprint_sha256.clone(),
        retired: old.fingerprint_sha256.clone(),
        retired_drop_at: old.drop_at.unwrap_or(now),
        new_roots_unpublished,
    };
    s.retired.insert(0, old);
    Ok((s, vec![t]))
}

/// The next instant at which [`step`] has something to do (for scheduling and a metric), or
/// None when nothing is scheduled (an external CA with no retired roots).
pub fn next_step_at(state: &RotationState, policy: &RotationPolicy) -> Option<OffsetDateTime> {
    let rotation = match &state.next {
        Some(next) => {
            Some(activate_due(next, policy).min(forced_activation_at(&state.active, policy)))
        }
        None if state.active.origin == CaOrigin::Generated => {
            Some(prepare_at(&state.active, policy))
        }
        None => None,
    };
    state.retired.iter().map(drop_time).chain(rotation).min()
}

fn prepare(
    s: &mut RotationState,
    policy: &RotationPolicy,
    now: OffsetDateTime,
    generate: &mut Generate<'_>,
    trigger: Trigger,
) -> Result<Transition, RotationError> {
    let generated = generate(now, policy.ca_validity).map_err(RotationError::Generate)?;
    let mut next = CaRecord::from_generated(&generated, now).map_err(RotationError::Generate)?;
    let activate_at = now + policy.propagation_delay;
    next.activate_at = Some(activate_at);
    let t = Transition::Prepared {
        fingerprint: next.fingerprint_sha256.clone(),
        trigger,
        activate_at,
        not_after: next.not_after,
    };
    s.next = Some(next);
    Ok(t)
}

fn activate(
    s: &mut RotationState,
    mut next: CaRecord,
    policy: &RotationPolicy,
    now: OffsetDateTime,
    early: bool,
) -> Transition {
    next.activated_at = Some(now);
    let mut old = std::mem::replace(&mut s.active, next);
    retire(&mut old, policy, now);
    let t = Transition::Activated {
        fingerprint: s.active.fingerprint_sha256.clone(),
        retired: old.fingerprint_sha256.clone(),
        retired_drop_at: drop_time(&old),
        early,
    };
    s.retired.insert(0, old);
    t
}

/// The CA stops signing at `now`: its last leaf expires by `now + max_leaf_lifetime` (notBefore
/// is backdated, never forward-dated) and never after its own notAfter.
fn retire(r: &mut CaRecord, policy: &RotationPolicy, now: OffsetDateTime) {
    note_max_leaf_lifetime(r, policy);
    let longest = Duration::seconds(r.max_leaf_lifetime_seconds.unwrap_or(0));
    r.retired_at = Some(now);
    r.drop_at = Some((now + longest).min(r.not_after) + policy.safety_margin);
    r.key_pem = None;
}

/// Remembers the longest leaf lifetime a CA may have issued while active.
fn note_max_leaf_lifetime(r: &mut CaRecord, policy: &RotationPolicy) {
    let current = policy.max_leaf_lifetime.whole_seconds();
    if r.max_leaf_lifetime_seconds.is_none_or(|s| s < current) {
        r.max_leaf_lifetime_seconds = Some(current);
    }
}

/// A retired record without a drop time (hand-edited state) stays until its CA has expired.
fn drop_time(r: &CaRecord) -> OffsetDateTime {
    r.drop_at.unwrap_or(r.not_after)
}

fn drop_expired(s: &mut RotationState, now: OffsetDateTime) -> Vec<Transition> {
    let (dropped, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut s.retired)
        .into_iter()
        .partition(|r| now >= drop_time(r));
    s.retired = kept;
    dropped
        .into_iter()
        .map(|r| Transition::Dropped {
            fingerprint: r.fingerprint_sha256,
        })
        .collect()
}
