//! Emergency drops of a compromised CA and externally managed CA material changing.

use crate::fixtures::rotation::*;
use podcert_core::ca::CaError;
use podcert_core::rotation::{
    begin_manual, emergency_drop, next_step_at, observe_external, published_anchors, signing_ca,
    step, CaOrigin, Phase, Role, RotationError, RotationState, Transition,
};
use time::Duration;

const TICK: Duration = Duration::minutes(5);

/// A simulation in the middle of its first drain: CA 1 retired at 5h30 (root kept until
/// 7h35), CA 2 signing, leaves from both alive at 6h.
fn draining_sim() -> Sim {
    let mut sim = Sim::bootstrap(at(0));
    sim.run(at(30), at(6 * 60), TICK);
    assert!(matches!(sim.state.phase(), Phase::Draining { .. }));
    sim
}

/// Which live leaves verify against the current bundle, by CA.
fn failing_cas(sim: &Sim, now: time::OffsetDateTime) -> (Vec<String>, usize) {
    let bundle = sim.current_bundle();
    let mut failing = Vec::new();
    let mut ok = 0;
    for leaf in sim.live(now) {
        match webpki_verify(&leaf.chain, &bundle, now) {
            Ok(()) => ok += 1,
            Err(e) => {
                // Every generated CA has its own subject name, so a dropped CA's leaf finds no
                // issuer at all (not a same-named anchor with the wrong key).
                assert!(matches!(e, webpki::Error::UnknownIssuer), "{e:?}");
                failing.push(leaf.ca.clone());
            }
        }
    }
    (failing, ok)
}

#[test]
fn dropping_the_active_ca_switches_signing_at_once_and_breaks_exactly_its_leaves() {
    let mut sim = draining_sim();
    let now = at(6 * 60);
    let compromised = sim.state.active.fingerprint_sha256.clone();
    let retired = sim.state.retired[0].fingerprint_sha256.clone();
    let live_compromised = sim.live(now).filter(|l| l.ca == compromised).count();
    let live_retired = sim.live(now).filter(|l| l.ca == retired).count();
    assert!(live_compromised > 0 && live_retired > 0);

    // Fingerprints are accepted in upper case with colons, as tools print them.
    let colons = compromised
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    let result = emergency_drop(&sim.state, &policy(), &colons, now, &mut generator()).unwrap();
    let [Transition::EmergencyDropped {
        fingerprint,
        role: Role::Active,
        replaced_by: Some(fresh),
    }] = &result.1[..]
    else {
        panic!("{:?}", result.1)
    };
    assert_eq!(*fingerprint, compromised);
    let message = result.1[0].to_string();
    assert!(message.contains("stops verifying now"), "{message}");
    assert!(message.contains("next refresh"), "{message}");
    assert!(result.1[0].is_warning());
    let fresh = fresh.clone();
    sim.apply(now, result);

    // Its root is gone from the bundle at once; the retired root stays.
    let bundle = sim.current_bundle();
    let compromised_root = sim
        .leaves
        .iter()
        .find(|l| l.ca == compromised)
        .unwrap()
        .clone();
    assert!(webpki_verify(&compromised_root.chain, &bundle, now).is_err());
    assert_eq!(published_anchors(&sim.state).len(), 2);
    assert_eq!(sim.state.active.fingerprint_sha256, fresh);
    assert_eq!(
        signing_ca(&sim.state, now).unwrap().fingerprint_sha256(),
        fresh
    );

    // Exactly the compromised CA's live leaves fail; every other live leaf verifies.
    let (failing, ok) = failing_cas(&sim, now);
    assert_eq!(failing.len(), live_compromised);
    assert!(failing.iter().all(|ca| *ca == compromised));
    assert_eq!(ok, live_retired);

    // The fresh CA signs at once, full-length leaves that verify against the current bundle.
    let leaf = sim.issue(now);
    assert_eq!(leaf.ca, fresh);
    assert!(webpki_verify(&leaf.chain, &sim.current_bundle(), now).is_ok());
    // The compromised root never comes back.
    let mut t = now + TICK;
    while t < at(8 * 60) {
        sim.step(t);
        assert!(webpki_verify(&compromised_root.chain, &sim.current_bundle(), t).is_err());
        t += TICK;
    }
}

#[test]
fn dropping_the_active_ca_mid_rotation_discards_the_prepared_one() {
    let mut sim = Sim::bootstrap(at(0));
    sim.run(at(30), at(5 * 60 + 10), TICK);
    let next = sim.state.next.clone().unwrap().fingerprint_sha256;
    let active = sim.state.active.fingerprint_sha256.clone();
    let now = at(5 * 60 + 10);
    let (s, ts) = emergency_drop(&sim.state, &policy(), &active, now, &mut generator()).unwrap();
    assert!(matches!(
        &ts[..],
        [
            Transition::EmergencyDropped { role: Role::Active, .. },
            Transition::EmergencyDropped { role: Role::Next, fingerprint, .. },
        ] if *fingerprint == next
    ));
    assert!(ts[1].to_string().contains("no certificate is affected"));
    assert!(s.next.is_none());
    assert_eq!(published_anchors(&s).len(), 1);
    assert_eq!(s.phase(), Phase::Stable);
}

#[test]
fn dropping_a_retired_ca_breaks_exactly_its_live_leaves_and_keeps_signing() {
    let mut sim = draining_sim();
    let now = at(6 * 60);
    let active = sim.state.active.fingerprint_sha256.clone();
    let retired = sim.state.retired[0].fingerprint_sha256.clone();
    let live_retired = sim.live(now).filter(|l| l.ca == retired).count();
    let live_active = sim.live(now).filter(|l| l.ca == active).count();
    let result = emergency_drop(&sim.state, &policy(), &retired, now, &mut generator()).unwrap();
    assert!(matches!(
        &result.1[..],
        [Transition::EmergencyDropped {
            role: Role::Retired,
            replaced_by: None,
            ..
        }]
    ));
    assert!(result.1[0].to_string().contains("stops verifying now"));
    sim.apply(now, result);
    assert_eq!(sim.state.active.fingerprint_sha256, active);
    assert_eq!(sim.state.phase(), Phase::Stable);
    let (failing, ok) = failing_cas(&sim, now);
    assert_eq!(failing.len(), live_retired);
    assert!(failing.iter().all(|ca| *ca == retired));
    assert_eq!(ok, live_active);
}

#[test]
fn dropping_the_prepared_ca_affects_nothing_and_a_new_one_is_prepared() {
    let mut sim = Sim::bootstrap(at(0));
    sim.run(at(30), at(5 * 60 + 10), TICK);
    let next = sim.state.next.clone().unwrap().fingerprint_sha256;
    let now = at(5 * 60 + 10);
    let result = emergency_drop(&sim.state, &policy(), &next, now, &mut generator()).unwrap();
    assert!(matches!(
        &result.1[..],
        [Transition::EmergencyDropped {
            role: Role::Next,
            ..
        }]
    ));
    sim.apply(now, result);
    let (failing, _) = failing_cas(&sim, now);
    assert!(failing.is_empty());
    assert!(next_step_at(&sim.state, &policy()).unwrap() <= now);
    let ts = sim.step(now + Duration::seconds(1));
    assert!(matches!(ts[..], [Transition::Prepared { .. }]));
    assert_ne!(sim.state.next.as_ref().unwrap().fingerprint_sha256, next);
}

#[test]
fn an_unknown_fingerprint_or_a_failed_generation_changes_nothing() {
    let sim = draining_sim();
    let p = policy();
    let err = emergency_drop(&sim.state, &p, "00ff", at(360), &mut generator()).unwrap_err();
    assert!(matches!(err, RotationError::UnknownFingerprint(ref f) if f == "00ff"));
    assert!(err.to_string().contains("00ff"));
    let mut failing = |_, _| Err(CaError::Generate("no entropy".into()));
    let active = sim.state.active.fingerprint_sha256.clone();
    let err = emergency_drop(&sim.state, &p, &active, at(360), &mut failing).unwrap_err();
    assert!(matches!(err, RotationError::Generate(_)));
}

/// A state adopting external material X1 at 0 and issuing from it every 5 minutes.
fn external_sim() -> (Sim, podcert_core::ca::GeneratedCa) {
    let x1 = fresh_ca(at(0), Duration::hours(10));
    let state =
        RotationState::adopt(&x1.cert_pem, &x1.key_pem, None, CaOrigin::External, at(0)).unwrap();
    let mut sim = Sim::new(state, policy(), at(0));
    sim.run(at(30), at(3 * 60), TICK);
    (sim, x1)
}

#[test]
fn external_material_signs_at_once_and_the_old_root_stays_until_its_leaves_expire() {
    let (mut sim, x1) = external_sim();
    let p = policy();
    let old = sim.state.active.fingerprint_sha256.clone();
    // External CAs are never rotated by the signer.
    assert_eq!(next_step_at(&sim.state, &p), None);
    assert!(matches!(
        begin_manual(&sim.state, &p, at(60), &mut generator()),
        Err(RotationError::ExternallyManaged(_))
    ));
    assert!(matches!(
        emergency_drop(&sim.state, &p, &old, at(60), &mut generator()),
        Err(RotationError::ExternallyManaged(_))
    ));

    // The same material again changes nothing.
    let (same, ts) =
        observe_external(&sim.state, &p, &x1.cert_pem, &x1.key_pem, None, at(3 * 60)).unwrap();
    assert!(ts.is_empty());
    assert_eq!(same, sim.state);

    let now = at(3 * 60);
    let x2 = fresh_ca(now, Duration::hours(10));
    let result = observe_external(&sim.state, &p, &x2.cert_pem, &x2.key_pem, None, now).unwrap();
    let [Transition::ExternalChanged {
        retired,
        retired_drop_at,
        new_roots_unpublished,
        ..
    }] = &result.1[..]
    else {
        panic!("{:?}", result.1)
    };
    assert_eq!(*retired, old);
    assert_eq!(*retired_drop_at, now + Duration::minutes(125));
    assert!(new_roots_unpublished);
    assert!(result.1[0].is_warning());
    sim.apply(now, result);
    assert_ne!(sim.state.active.fingerprint_sha256, old);
    assert_eq!(published_anchors(&sim.state).len(), 2);

    // The old CA's leaves keep verifying against the current bundle until they expire.
    let mut t = now;
    while t < at(6 * 60) {
        sim.step(t);
        sim.issue(t);
        for leaf in sim.live(t) {
            assert!(
                webpki_verify(&leaf.chain, &sim.current_bundle(), t).is_ok(),
                "at {t}"
            );
        }
        let old_published = sim.state.records().any(|r| r.fingerprint_sha256 == old);
        assert_eq!(old_published, t < at(5 * 60 + 5), "at {t}");
        t += TICK;
    }
    assert_eq!(sim.state.phase(), Phase::Stable);
}

#[test]
fn a_root_published_ahead_makes_an_external_switch_seamless() {
    let (mut sim, x1) = external_sim();
    let p = policy();
    let now = at(3 * 60);
    let x3 = fresh_ca(now, Duration::hours(10));
    // First the owner adds X3's root to the trust anchors while X1 keeps signing.
    let anchors = format!("{}{}", x1.cert_pem, x3.cert_pem);
    let result = observe_external(
        &sim.state,
        &p,
        &x1.cert_pem,
        &x1.key_pem,
        Some(&anchors),
        now,
    )
    .unwrap();
    assert!(matches!(
        &result.1[..],
        [Transition::ExternalChanged { .. }]
    ));
    sim.apply(now, result);
    assert_eq!(published_anchors(&sim.state).len(), 2);
    sim.run(now, at(3 * 60 + 30), TICK);
    // Then switches: X3's leaves verify against the bundle of a propagation delay ago.
    let now = at(3 * 60 + 30);
    let result = observe_external(&sim.state, &p, &x3.cert_pem, &x3.key_pem, None, now).unwrap();
    let [Transition::ExternalChanged {
        new_roots_unpublished: false,
        ..
    }] = &result.1[..]
    else {
        panic!("{:?}", result.1)
    };
    assert!(!result.1[0].is_warning());
    sim.apply(now, result);
    sim.run(now, at(7 * 60), TICK);
    assert_eq!(published_anchors(&sim.state).len(), 1);
}

#[test]
fn a_retired_root_never_outlives_its_ca() {
    let x1 = fresh_ca(at(0), Duration::minutes(150));
    let p = policy();
    let state =
        RotationState::adopt(&x1.cert_pem, &x1.key_pem, None, CaOrigin::External, at(0)).unwrap();
    let mut sim = Sim::new(state, p.clone(), at(0));
    // X1 ends at 2h30: leaves issued at 1h are cut to its notAfter, still over one hour.
    let leaf = sim.issue_with(at(60), p.max_leaf_lifetime);
    assert_eq!(leaf.not_after, at(150));
    let x2 = fresh_ca(at(60), Duration::hours(10));
    let (s, ts) =
        observe_external(&sim.state, &p, &x2.cert_pem, &x2.key_pem, None, at(60)).unwrap();
    let [Transition::ExternalChanged {
        retired_drop_at, ..
    }] = &ts[..]
    else {
        panic!("{ts:?}")
    };
    assert_eq!(*retired_drop_at, at(155));
    let (s, ts) = step(&s, &p, at(155), &mut generator());
    assert!(matches!(ts[..], [Transition::Dropped { .. }]));
    assert_eq!(published_anchors(&s).len(), 1);
}

#[test]
fn a_refused_external_material_changes_nothing() {
    let (sim, x1) = external_sim();
    let x2 = fresh_ca(at(0), Duration::hours(10));
    let err = observe_external(
        &sim.state,
        &policy(),
        &x2.cert_pem,
        &x1.key_pem,
        None,
        at(180),
    )
    .unwrap_err();
    assert!(matches!(err, CaError::KeyMismatch));
}
