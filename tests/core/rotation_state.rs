//! The rotation policy's validation and the persisted state's format.

use crate::fixtures::rotation::*;
use podcert_core::rotation::{
    step, PolicyError, RotationPolicy, RotationState, StateError, STATE_KEY,
};
use time::Duration;

#[test]
fn defaults_are_valid_for_the_shipped_configuration() {
    let p = RotationPolicy::new(Duration::days(365), Duration::hours(24)).unwrap();
    assert_eq!(p.prepare_at_fraction, 0.5);
    assert_eq!(p.propagation_delay, Duration::hours(1));
    assert_eq!(p.min_leaf_lifetime, Duration::hours(1));
    assert_eq!(p.safety_margin, Duration::minutes(5));
    policy().validate().unwrap();
}

#[test]
fn inconsistent_policies_are_refused_with_a_clear_error() {
    let base = policy();
    let with = |f: &dyn Fn(&mut RotationPolicy)| {
        let mut p = base.clone();
        f(&mut p);
        p.validate().unwrap_err()
    };
    assert!(matches!(
        with(&|p| p.ca_validity = Duration::ZERO),
        PolicyError::Validity(_)
    ));
    assert!(matches!(
        with(&|p| p.ca_validity = Duration::days(36526)),
        PolicyError::ValidityTooLong(_)
    ));
    for fraction in [0.0, 1.0, -0.1, f64::NAN] {
        assert!(matches!(
            with(&|p| p.prepare_at_fraction = fraction),
            PolicyError::Fraction(_)
        ));
    }
    assert!(matches!(
        with(&|p| p.propagation_delay = Duration::minutes(-1)),
        PolicyError::PropagationDelay(_)
    ));
    assert!(matches!(
        with(&|p| p.safety_margin = Duration::seconds(-1)),
        PolicyError::SafetyMargin(_)
    ));
    assert!(matches!(
        with(&|p| p.min_leaf_lifetime = Duration::minutes(59)),
        PolicyError::MinLeafLifetime(_)
    ));
    assert!(matches!(
        with(&|p| p.max_leaf_lifetime = Duration::minutes(30)),
        PolicyError::MaxBelowMin { .. }
    ));
    // 10 h CA, 2 h leaves: signing must switch by 7h55 into its life; at 0.75 it would be 8h.
    let late = with(&|p| p.prepare_at_fraction = 0.75);
    assert!(matches!(late, PolicyError::RotatesTooLate { .. }));
    let message = late.to_string();
    assert!(message.contains("8h"), "{message}");
    assert!(message.contains("7h 55m"), "{message}");
    assert!(message.contains("lower prepare_at_fraction"), "{message}");
    // The default one-hour delay with 24 h leaves does not fit a 2-day CA prepared at half-life.
    assert!(matches!(
        RotationPolicy::new(Duration::days(2), Duration::hours(24)),
        Err(PolicyError::RotatesTooLate { .. })
    ));
    // The boundary itself is allowed: prepared at 5h, signing at 7h55.
    let mut edge = base.clone();
    edge.propagation_delay = Duration::minutes(175);
    edge.validate().unwrap();
    edge.propagation_delay = Duration::minutes(176);
    assert!(edge.validate().is_err());
}

#[test]
fn the_state_round_trips_through_json_and_keeps_keys_only_where_needed() {
    let mut sim = Sim::bootstrap(at(0));
    sim.step(at(300));
    sim.step(at(330));
    sim.step(at(380));
    // Prepared at 5h, active from 5h30: the new CA signs, the old one is retired.
    assert_eq!(sim.state.retired.len(), 1);
    let json = sim.state.to_json().unwrap();
    assert_eq!(RotationState::from_json(&json).unwrap(), sim.state);
    // Only the active CA's key is stored; the retired one's was discarded.
    assert_eq!(json.matches("PRIVATE KEY-----\\n").count(), 2, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["retired"][0].get("keyPem").is_none());
    assert_eq!(v["version"], 1);
    assert!(v["active"]["activatedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(STATE_KEY, "rotation.json");
}

#[test]
fn debug_output_never_shows_a_key() {
    let mut sim = Sim::bootstrap(at(0));
    sim.step(at(300));
    assert!(sim.state.next.is_some());
    let debug = format!("{:?}", sim.state);
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    let key_body = sim
        .state
        .active
        .key_pem
        .as_ref()
        .unwrap()
        .expose()
        .lines()
        .nth(1)
        .unwrap();
    assert!(!debug.contains(key_body));
    assert!(debug.contains("redacted"));
}

#[test]
fn a_damaged_state_is_refused() {
    let sim = Sim::bootstrap(at(0));
    let json = sim.state.to_json().unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();

    let mut wrong_version = v.clone();
    wrong_version["version"] = 2.into();
    let err = RotationState::from_json(&wrong_version.to_string()).unwrap_err();
    assert!(matches!(err, StateError::Version(2)), "{err}");

    let mut wrong_fp = v.clone();
    wrong_fp["active"]["fingerprintSha256"] = "00".into();
    let err = RotationState::from_json(&wrong_fp.to_string()).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not match its recorded fingerprint"),
        "{err}"
    );

    v["active"].as_object_mut().unwrap().remove("keyPem");
    let err = RotationState::from_json(&v.to_string()).unwrap_err();
    assert!(err.to_string().contains("private key is missing"), "{err}");

    assert!(matches!(
        RotationState::from_json("{"),
        Err(StateError::Json { .. })
    ));
}

#[test]
fn stepping_is_idempotent_at_every_instant_of_a_cycle() {
    let sim = Sim::bootstrap(at(0));
    let p = policy();
    let mut state = sim.state.clone();
    for minute in (0..12 * 60).step_by(7) {
        let (s1, _) = step(&state, &p, at(minute), &mut generator());
        let (s2, t2) = step(&s1, &p, at(minute), &mut generator());
        assert_eq!(s1, s2, "at minute {minute}");
        assert!(t2.is_empty());
        state = s1;
    }
}
