//! Whole life cycles of a generated CA under an injected clock: scheduled and manual
//! rotations, restarts mid-rotation, late steps and generation failures.

use crate::fixtures::rotation::*;
use podcert_core::ca::CaError;
use podcert_core::rotation::{
    begin_manual, next_step_at, published_anchors, signing_ca, step, Phase, RotationState,
    Transition, Trigger,
};
use time::Duration;

const TICK: Duration = Duration::minutes(5);

#[test]
fn three_scheduled_rotations_never_break_a_leaf() {
    let mut sim = Sim::bootstrap(at(0));
    let mut phases = std::collections::BTreeSet::new();
    let mut now = at(0);
    // Leaves from the first propagation delay on: the bootstrap bundle has propagated by then.
    while now < at(27 * 60) {
        sim.step(now);
        phases.insert(sim.state.phase().name());
        if now >= at(30) {
            sim.issue(now);
        }
        sim.check(now);
        // Never more than the active, the prepared and one retired root.
        assert!(published_anchors(&sim.state).len() <= 3);
        now += TICK;
    }
    let activations: Vec<_> = sim
        .transitions
        .iter()
        .filter_map(|(at, t)| match t {
            Transition::Activated { early, .. } => Some((*at, *early)),
            _ => None,
        })
        .collect();
    assert!(activations.len() >= 4, "{activations:?}");
    assert!(activations.iter().all(|(_, early)| !early));
    // The first rotation: prepared at half-life (notBefore is backdated 60 s), signing 30 min
    // later, the old root dropped 2 h + 5 min after its last signature.
    assert_eq!(activations[0].0, at(5 * 60 + 30));
    let dropped_at: Vec<_> = sim
        .transitions
        .iter()
        .filter(|(_, t)| matches!(t, Transition::Dropped { .. }))
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(dropped_at[0], at(5 * 60 + 30 + 125));
    assert!(dropped_at.len() >= 3);
    assert_eq!(phases.len(), 3, "{phases:?}");
    // Every leaf's CA signed only after its root had been published for the delay.
    let distinct_cas: std::collections::BTreeSet<_> = sim.leaves.iter().map(|l| &l.ca).collect();
    assert!(distinct_cas.len() >= 5);
}

#[test]
fn the_schedule_is_what_next_step_at_says() {
    let sim = Sim::bootstrap(at(0));
    let p = policy();
    // Half of (10 h + the 60 s backdate of the CA's notBefore), from that notBefore.
    assert_eq!(
        next_step_at(&sim.state, &p),
        Some(at(0) + Duration::seconds(-60 + 18030))
    );
    let (s, ts) = step(&sim.state, &p, at(300), &mut generator());
    assert!(matches!(
        ts[..],
        [Transition::Prepared {
            trigger: Trigger::Scheduled,
            ..
        }]
    ));
    assert_eq!(
        s.phase(),
        Phase::Prepared {
            published_at: at(300),
            activate_at: at(330)
        }
    );
    assert_eq!(next_step_at(&s, &p), Some(at(330)));
    // Still the old CA signs until the activation time.
    let old = sim.state.active.fingerprint_sha256.clone();
    assert_eq!(signing_ca(&s, at(329)).unwrap().fingerprint_sha256(), old);
    let (s2, ts) = step(&s, &p, at(329), &mut generator());
    assert!(ts.is_empty());
    assert_eq!(s2, s);
    let (s3, ts) = step(&s, &p, at(330), &mut generator());
    assert!(matches!(
        ts[..],
        [Transition::Activated { early: false, .. }]
    ));
    assert_ne!(signing_ca(&s3, at(330)).unwrap().fingerprint_sha256(), old);
    assert_eq!(
        s3.phase(),
        Phase::Draining {
            drop_at: at(330 + 125)
        }
    );
    assert_eq!(next_step_at(&s3, &p), Some(at(330 + 125)));
    // The retired CA keeps no key.
    assert!(s3.retired[0].key_pem.is_none());
    let (s4, ts) = step(&s3, &p, at(330 + 125), &mut generator());
    assert_eq!(ts, vec![Transition::Dropped { fingerprint: old }]);
    assert_eq!(s4.phase(), Phase::Stable);
    assert_eq!(published_anchors(&s4).len(), 1);
}

#[test]
fn a_replica_restarted_at_every_step_behaves_identically() {
    let mut steady = Sim::bootstrap(at(0));
    let mut restarted = Sim::bootstrap(at(0));
    restarted.round_trip = true;
    let mut now = at(0);
    while now < at(17 * 60) {
        let a = steady.step(now);
        let b = restarted.step(now);
        assert_eq!(a, b, "at {now}");
        assert_eq!(steady.state, restarted.state, "at {now}");
        if now >= at(30) {
            restarted.issue(now);
        }
        restarted.check(now);
        now += Duration::minutes(10);
    }
    assert!(restarted.count(|t| matches!(t, Transition::Activated { .. })) >= 2);
}

#[test]
fn a_failover_mid_rotation_continues_where_it_was() {
    let mut sim = Sim::bootstrap(at(0));
    sim.run(at(30), at(5 * 60 + 10), TICK);
    assert!(matches!(sim.state.phase(), Phase::Prepared { .. }));
    let p = policy();
    let stored = sim.state.to_json().unwrap();
    // Another replica takes over 12 minutes later from the stored JSON alone.
    let other = RotationState::from_json(&stored).unwrap();
    assert_eq!(other, sim.state);
    assert_eq!(next_step_at(&other, &p), next_step_at(&sim.state, &p));
    assert_eq!(other.phase(), sim.state.phase());
    sim.state = other;
    sim.run(at(5 * 60 + 22), at(9 * 60), TICK);
    assert_eq!(sim.count(|t| matches!(t, Transition::Prepared { .. })), 1);
    assert_eq!(sim.count(|t| matches!(t, Transition::Activated { .. })), 1);
    assert_eq!(sim.count(|t| matches!(t, Transition::Dropped { .. })), 1);
}

#[test]
fn manual_rotation_starts_now_and_respects_the_propagation_delay() {
    let mut sim = Sim::bootstrap(at(0));
    sim.run(at(30), at(60), TICK);
    let old = sim.state.active.fingerprint_sha256.clone();
    let p = policy();
    let result = begin_manual(&sim.state, &p, at(60), &mut generator()).unwrap();
    assert!(matches!(
        result.1[..],
        [Transition::Prepared {
            trigger: Trigger::Manual,
            ..
        }]
    ));
    sim.apply(at(60), result);
    assert_eq!(
        sim.state.phase(),
        Phase::Prepared {
            published_at: at(60),
            activate_at: at(90)
        }
    );
    // A second trigger while the rotation runs changes nothing.
    let (again, ts) = begin_manual(&sim.state, &p, at(61), &mut generator()).unwrap();
    assert!(ts.is_empty());
    assert_eq!(again, sim.state);
    // The old CA still signs until then.
    sim.issue(at(85));
    assert_eq!(sim.leaves.last().unwrap().ca, old);
    sim.run(at(65), at(6 * 60), TICK);
    let activated: Vec<_> = sim
        .transitions
        .iter()
        .filter(|(_, t)| matches!(t, Transition::Activated { .. }))
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(activated[0], at(90));
    let dropped = sim
        .transitions
        .iter()
        .find(|(_, t)| matches!(t, Transition::Dropped { fingerprint } if *fingerprint == old))
        .unwrap();
    assert_eq!(dropped.0, at(90 + 125));
}

#[test]
fn a_late_step_activates_early_rather_than_stop_issuing() {
    // Nobody stepped the signer until the active CA had barely more than an hour left.
    let sim = Sim::bootstrap(at(0));
    let p = policy();
    let late = at(10 * 60 - 64);
    let (s, ts) = step(&sim.state, &p, late, &mut generator());
    assert!(
        matches!(
            ts[..],
            [
                Transition::Prepared { .. },
                Transition::Activated { early: true, .. }
            ]
        ),
        "{ts:?}"
    );
    assert!(ts[1].is_warning());
    assert!(
        ts[1].to_string().contains("stale trust bundle"),
        "{}",
        ts[1]
    );
    let mut sim = Sim::new(s, p, late);
    sim.issue(late);
    // A step just before the forced time keeps to the propagation delay.
    let sim2 = Sim::bootstrap(at(0));
    let (s, _) = step(&sim2.state, &policy(), at(8 * 60), &mut generator());
    let (s, ts) = step(&s, &policy(), at(8 * 60 + 29), &mut generator());
    assert!(ts.is_empty());
    let (_, ts) = step(&s, &policy(), at(8 * 60 + 30), &mut generator());
    assert!(matches!(
        ts[..],
        [Transition::Activated { early: false, .. }]
    ));
}

#[test]
fn a_generation_failure_is_reported_and_retried() {
    let p = policy();
    let (base, _) = step(&Sim::bootstrap(at(0)).state, &p, at(0), &mut generator());
    let mut failing = |_, _| Err(CaError::Generate("no entropy".into()));
    let (s, ts) = step(&base, &p, at(300), &mut failing);
    assert_eq!(s, base);
    let [Transition::PrepareFailed { error }] = &ts[..] else {
        panic!("{ts:?}")
    };
    assert!(error.contains("no entropy"), "{error}");
    assert!(ts[0].is_warning());
    // Still due: the caller retries.
    assert!(next_step_at(&s, &p).unwrap() <= at(300));
    let (s, ts) = step(&s, &p, at(301), &mut generator());
    assert!(matches!(ts[..], [Transition::Prepared { .. }]));
    assert!(s.next.is_some());
    let err = begin_manual(&base, &p, at(10), &mut failing).unwrap_err();
    assert!(err.to_string().contains("no entropy"), "{err}");
}

#[test]
fn lowering_the_leaf_lifetime_does_not_drop_a_root_early() {
    let sim = Sim::bootstrap(at(0));
    let p = policy();
    // Two-hour leaves are issued while the CA is active...
    let (s, _) = step(&sim.state, &p, at(60), &mut generator());
    // ...then the operator lowers the maximum to one hour before the rotation.
    let mut lower = p.clone();
    lower.max_leaf_lifetime = Duration::hours(1);
    let (s, _) = step(&s, &lower, at(300), &mut generator());
    let (s, ts) = step(&s, &lower, at(330), &mut generator());
    let [Transition::Activated {
        retired_drop_at, ..
    }] = &ts[..]
    else {
        panic!("{ts:?}")
    };
    // The old root stays for the two hours its leaves may still live, not one.
    assert_eq!(*retired_drop_at, at(330 + 125));
    // The new CA only ever issued one-hour leaves: its root will leave an hour after it retires.
    let (s, _) = step(&s, &lower, at(331), &mut generator());
    assert_eq!(s.active.max_leaf_lifetime_seconds, Some(3600));
}
