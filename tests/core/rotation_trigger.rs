//! Rotation requests by annotation: acted on once, recorded in the state, refused with a
//! reason when they cannot be carried out, retried when generation fails.

use std::collections::BTreeMap;

use crate::fixtures::rotation::*;
use podcert_core::ca::{CaError, GeneratedCa};
use podcert_core::rotation::{
    handle_trigger, published_anchors, requested, CaOrigin, RotationState, Transition, TriggerMode,
    TriggerOutcome, ROTATE_ANNOTATION, ROTATE_FINGERPRINT_ANNOTATION, ROTATE_MODE_ANNOTATION,
};
use time::Duration;

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn bootstrapped() -> RotationState {
    RotationState::bootstrap(&generated(at(0), policy().ca_validity), at(0)).unwrap()
}

#[test]
fn no_annotation_is_idle() {
    let s = bootstrapped();
    let out = handle_trigger(&BTreeMap::new(), &s, &policy(), at(10), &mut generator());
    assert!(matches!(out, TriggerOutcome::Idle));
    assert!(requested(&annotations(&[(ROTATE_ANNOTATION, " ")])).is_none());
}

#[test]
fn a_request_prepares_a_ca_once_and_is_recorded() {
    let s = bootstrapped();
    let a = annotations(&[(ROTATE_ANNOTATION, "2030-01-01T00:10:00Z")]);
    let TriggerOutcome::Done { state, transitions } =
        handle_trigger(&a, &s, &policy(), at(10), &mut generator())
    else {
        panic!("not carried out");
    };
    assert_eq!(
        state.handled_trigger.as_deref(),
        Some("2030-01-01T00:10:00Z")
    );
    let next = state.next.as_ref().expect("a prepared CA");
    assert_eq!(next.activate_at, Some(at(10) + policy().propagation_delay));
    assert!(matches!(transitions[0], Transition::Prepared { .. }));
    // The same value again (another read, a restart, a new leader) changes nothing.
    let again = handle_trigger(&a, &state, &policy(), at(11), &mut generator());
    assert!(matches!(again, TriggerOutcome::Idle));
    // A new value while prepared is recorded but starts nothing new.
    let b = annotations(&[(ROTATE_ANNOTATION, "second")]);
    let TriggerOutcome::Done {
        state: s2,
        transitions,
    } = handle_trigger(&b, &state, &policy(), at(12), &mut generator())
    else {
        panic!("not handled");
    };
    assert!(transitions.is_empty());
    assert_eq!(s2.next, state.next);
    assert_eq!(s2.handled_trigger.as_deref(), Some("second"));
}

#[test]
fn an_emergency_drops_the_active_root_now() {
    let s = bootstrapped();
    let old_root = published_anchors(&s);
    let a = annotations(&[
        (ROTATE_ANNOTATION, "x"),
        (ROTATE_MODE_ANNOTATION, "Emergency"),
    ]);
    let TriggerOutcome::Done { state, transitions } =
        handle_trigger(&a, &s, &policy(), at(10), &mut generator())
    else {
        panic!("not carried out");
    };
    assert_ne!(state.active.fingerprint_sha256, s.active.fingerprint_sha256);
    assert!(published_anchors(&state)
        .iter()
        .all(|r| !old_root.contains(r)));
    assert!(matches!(
        transitions[0],
        Transition::EmergencyDropped { .. }
    ));
    assert!(transitions[0].to_string().contains("stops verifying now"));
}

#[test]
fn an_emergency_may_name_a_retired_ca() {
    // Rotate fully, then drop the retired CA by fingerprint: signing is unaffected.
    let p = policy();
    let (s, _) =
        podcert_core::rotation::begin_manual(&bootstrapped(), &p, at(10), &mut generator())
            .unwrap();
    let (s, _) = podcert_core::rotation::step(&s, &p, at(41), &mut generator());
    let retired = s.retired[0].fingerprint_sha256.clone();
    let a = annotations(&[
        (ROTATE_ANNOTATION, "y"),
        (ROTATE_MODE_ANNOTATION, "emergency"),
        (ROTATE_FINGERPRINT_ANNOTATION, &retired.to_uppercase()),
    ]);
    let TriggerOutcome::Done { state, .. } = handle_trigger(&a, &s, &p, at(42), &mut generator())
    else {
        panic!("not carried out");
    };
    assert!(state.retired.is_empty());
    assert_eq!(state.active, s.active);
}

#[test]
fn impossible_requests_are_refused_once_with_a_reason() {
    let s = bootstrapped();
    let bad_mode = annotations(&[(ROTATE_ANNOTATION, "1"), (ROTATE_MODE_ANNOTATION, "now")]);
    assert_eq!(requested(&bad_mode).map(|r| r.is_err()), Some(true));
    let TriggerOutcome::Refused { state, reason } =
        handle_trigger(&bad_mode, &s, &policy(), at(1), &mut generator())
    else {
        panic!("not refused");
    };
    assert!(reason.contains("emergency"), "{reason}");
    assert_eq!(state.handled_trigger.as_deref(), Some("1"));
    assert_eq!(state.active, s.active);

    let unknown = annotations(&[
        (ROTATE_ANNOTATION, "2"),
        (ROTATE_MODE_ANNOTATION, "emergency"),
        (ROTATE_FINGERPRINT_ANNOTATION, "00ff"),
    ]);
    assert!(matches!(
        handle_trigger(&unknown, &s, &policy(), at(1), &mut generator()),
        TriggerOutcome::Refused { .. }
    ));

    let ext = fresh_ca(at(0), Duration::days(30));
    let external =
        RotationState::adopt(&ext.cert_pem, &ext.key_pem, None, CaOrigin::External, at(0)).unwrap();
    let TriggerOutcome::Refused { reason, .. } = handle_trigger(
        &annotations(&[(ROTATE_ANNOTATION, "3")]),
        &external,
        &policy(),
        at(1),
        &mut generator(),
    ) else {
        panic!("an external CA was rotated");
    };
    assert!(reason.contains("managed externally"), "{reason}");
}

#[test]
fn a_generation_failure_leaves_the_request_pending() {
    let s = bootstrapped();
    let mut failing = |_: time::OffsetDateTime, _: Duration| -> Result<GeneratedCa, CaError> {
        Err(CaError::Generate("no entropy".into()))
    };
    let a = annotations(&[(ROTATE_ANNOTATION, "1")]);
    assert!(matches!(
        handle_trigger(&a, &s, &policy(), at(1), &mut failing),
        TriggerOutcome::Retry(_)
    ));
    assert_eq!(requested(&a).unwrap().unwrap().mode, TriggerMode::Normal);
}
