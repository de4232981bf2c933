//! A simulated cluster for the rotation tests: an injected clock, a deterministic CA
//! generator, real leaves issued with `issue_leaf`, and a record of every published bundle.
#![allow(dead_code)]

use podcert_core::ca::{generate_self_signed, CaError, CaKeyType, GeneratedCa};
use podcert_core::issue::{issue_leaf, LeafProfile};
use podcert_core::key_type::KeyType;
use podcert_core::proof::SubjectKey;
use podcert_core::rotation::{
    next_step_at, published_anchors, signing_ca, step, RotationPolicy, RotationState, Transition,
};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

pub const TRUST_DOMAIN: &str = "example.org";

/// The simulation's epoch.
pub const T0: OffsetDateTime = datetime!(2030-01-01 00:00 UTC);

pub fn at(minutes: i64) -> OffsetDateTime {
    T0 + Duration::minutes(minutes)
}

/// Short lifetimes so whole life cycles fit in a test: CA 10 h, leaves 2 h, propagation
/// 30 min, preparation at half-life, 5 min safety margin.
pub fn policy() -> RotationPolicy {
    RotationPolicy {
        ca_validity: Duration::hours(10),
        prepare_at_fraction: 0.5,
        propagation_delay: Duration::minutes(30),
        max_leaf_lifetime: Duration::hours(2),
        min_leaf_lifetime: Duration::hours(1),
        safety_margin: Duration::minutes(5),
    }
}

/// A P-256 CA for (now, validity), generated once per process and then reused, so that two
/// simulations of the same timeline hold byte-identical states.
pub fn generated(now: OffsetDateTime, validity: Duration) -> GeneratedCa {
    static CACHE: OnceLock<Mutex<HashMap<(i64, i64), GeneratedCa>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
    cache
        .entry((now.unix_timestamp(), validity.whole_seconds()))
        .or_insert_with(|| {
            generate_self_signed(CaKeyType::EcdsaP256, Some(TRUST_DOMAIN), validity, now).unwrap()
        })
        .clone()
}

pub fn generator() -> impl FnMut(OffsetDateTime, Duration) -> Result<GeneratedCa, CaError> {
    |now, validity| Ok(generated(now, validity))
}

/// A fresh CA that no other test shares (external material).
pub fn fresh_ca(now: OffsetDateTime, validity: Duration) -> GeneratedCa {
    generate_self_signed(CaKeyType::EcdsaP256, Some(TRUST_DOMAIN), validity, now).unwrap()
}

/// The requester's P-256 key from the repo's kubelet vectors.
pub fn subject_key() -> SubjectKey {
    use pkcs8::DecodePrivateKey;
    use spki::EncodePublicKey;
    let path = format!(
        "{}/testdata/kubelet-vectors/keys/{}.key.pem",
        env!("CARGO_MANIFEST_DIR"),
        KeyType::EcdsaP256.as_str()
    );
    let block = pem::parse(std::fs::read_to_string(path).unwrap()).unwrap();
    let spki = p256::SecretKey::from_pkcs8_der(block.contents())
        .unwrap()
        .public_key()
        .to_public_key_der()
        .unwrap();
    SubjectKey {
        key_type: KeyType::EcdsaP256,
        spki_der: spki.as_bytes().to_vec(),
    }
}

pub fn profile(max_lifetime: Duration) -> LeafProfile {
    LeafProfile {
        spiffe_id: format!("spiffe://{TRUST_DOMAIN}/ns/team-a/sa/web"),
        dns_names: vec![],
        max_lifetime,
        backdate: Duration::seconds(60),
        refresh_fraction: 0.5,
    }
}

/// DER of every CERTIFICATE block of `pem_text`.
pub fn pem_certs(pem_text: &str) -> Vec<Vec<u8>> {
    pem::parse_many(pem_text)
        .unwrap()
        .into_iter()
        .map(|p| {
            assert_eq!(p.tag(), "CERTIFICATE");
            p.into_contents()
        })
        .collect()
}

/// Verifies `chain` (leaf first) with rustls-webpki against `anchors`, for server auth.
pub fn webpki_verify(
    chain: &[Vec<u8>],
    anchors: &[Vec<u8>],
    at: OffsetDateTime,
) -> Result<(), webpki::Error> {
    use rustls::pki_types::{CertificateDer, UnixTime};
    let anchors: Vec<_> = anchors
        .iter()
        .map(|a| {
            webpki::anchor_from_trusted_cert(&CertificateDer::from(a.as_slice()))
                .unwrap()
                .to_owned()
        })
        .collect();
    let leaf = CertificateDer::from(chain[0].as_slice());
    let ee = webpki::EndEntityCert::try_from(&leaf)?;
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let time =
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.unix_timestamp() as u64));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        time,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map(|_| ())
}

/// A leaf issued during the simulation.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub chain: Vec<Vec<u8>>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Fingerprint of the CA that signed it.
    pub ca: String,
}

/// The state, the bundles published so far and the leaves issued so far.
pub struct Sim {
    pub state: RotationState,
    pub policy: RotationPolicy,
    /// (from when, anchors DER), in time order.
    pub bundles: Vec<(OffsetDateTime, Vec<Vec<u8>>)>,
    pub leaves: Vec<Leaf>,
    pub transitions: Vec<(OffsetDateTime, Transition)>,
    /// Serialise and deserialise the state at every step, as a restarted replica would.
    pub round_trip: bool,
    subject: SubjectKey,
}

impl Sim {
    pub fn new(state: RotationState, policy: RotationPolicy, now: OffsetDateTime) -> Sim {
        let mut sim = Sim {
            state,
            policy,
            bundles: Vec::new(),
            leaves: Vec::new(),
            transitions: Vec::new(),
            round_trip: false,
            subject: subject_key(),
        };
        sim.record_bundle(now);
        sim
    }

    /// A bootstrapped generated CA at `now`.
    pub fn bootstrap(now: OffsetDateTime) -> Sim {
        let policy = policy();
        let state = RotationState::bootstrap(&generated(now, policy.ca_validity), now).unwrap();
        Sim::new(state, policy, now)
    }

    pub fn current_bundle(&self) -> Vec<Vec<u8>> {
        anchors_der(&self.state)
    }

    /// The bundle that was published at `t` (the first one for instants before the start:
    /// the bootstrap bundle is taken as already propagated).
    pub fn bundle_at(&self, t: OffsetDateTime) -> &[Vec<u8>] {
        let i = self.bundles.partition_point(|(from, _)| *from <= t);
        &self.bundles[i.saturating_sub(1)].1
    }

    pub fn record_bundle(&mut self, now: OffsetDateTime) {
        let bundle = self.current_bundle();
        if self.bundles.last().map(|(_, b)| b) != Some(&bundle) {
            self.bundles.push((now, bundle));
        }
    }

    /// Replaces the state (after a manual or emergency call), recording its transitions.
    pub fn apply(&mut self, now: OffsetDateTime, (state, ts): (RotationState, Vec<Transition>)) {
        self.state = state;
        self.transitions.extend(ts.into_iter().map(|t| (now, t)));
        self.record_bundle(now);
    }

    /// One step at `now`, checking that it is idempotent and that nothing is left due.
    pub fn step(&mut self, now: OffsetDateTime) -> Vec<Transition> {
        if self.round_trip {
            let json = self.state.to_json().unwrap();
            self.state = RotationState::from_json(&json).unwrap();
        }
        let (state, ts) = step(&self.state, &self.policy, now, &mut generator());
        let (again, none) = step(&state, &self.policy, now, &mut generator());
        assert_eq!(again, state, "a second step at {now} changed the state");
        assert!(none.is_empty(), "a second step at {now} gave {none:?}");
        if let Some(next) = next_step_at(&state, &self.policy) {
            assert!(next > now, "next step {next} is not after {now}");
        }
        self.state = state;
        self.transitions
            .extend(ts.iter().cloned().map(|t| (now, t)));
        self.record_bundle(now);
        ts
    }

    /// Issues a leaf from the signing CA at `now`, checking its lifetime: never cut short
    /// (the full maximum with the backdate), never past its CA's notAfter.
    pub fn issue(&mut self, now: OffsetDateTime) -> Leaf {
        let max = self.policy.max_leaf_lifetime;
        let leaf = self.issue_with(now, max);
        assert_eq!(
            leaf.not_after - leaf.not_before,
            max,
            "leaf cut short at {now}"
        );
        leaf
    }

    /// Issues a leaf, checking only the one-hour floor and the CA's notAfter.
    pub fn issue_with(&mut self, now: OffsetDateTime, max: Duration) -> Leaf {
        let ca = signing_ca(&self.state, now).unwrap();
        let issued = issue_leaf(&ca, &self.subject, &profile(max), now).unwrap();
        assert!(issued.not_after - issued.not_before >= Duration::hours(1));
        assert!(issued.not_after <= ca.not_after(), "leaf outlives its CA");
        let leaf = Leaf {
            chain: pem_certs(&issued.chain_pem),
            not_before: issued.not_before,
            not_after: issued.not_after,
            ca: ca.fingerprint_sha256(),
        };
        self.leaves.push(leaf.clone());
        leaf
    }

    /// The leaves valid at `now`.
    pub fn live(&self, now: OffsetDateTime) -> impl Iterator<Item = &Leaf> {
        self.leaves
            .iter()
            .filter(move |l| l.not_before <= now && now < l.not_after)
    }

    /// The must-show invariant: every unexpired leaf verifies against the bundle published
    /// a propagation delay ago and against the current one.
    pub fn check(&self, now: OffsetDateTime) {
        let old = self.bundle_at(now - self.policy.propagation_delay);
        let current = self.current_bundle();
        for leaf in self.live(now) {
            if let Err(e) = webpki_verify(&leaf.chain, old, now) {
                panic!(
                    "at {now}, a leaf of CA {} (issued {}) fails against the bundle of {}: {e:?}",
                    leaf.ca,
                    leaf.not_before,
                    now - self.policy.propagation_delay
                );
            }
            if let Err(e) = webpki_verify(&leaf.chain, &current, now) {
                panic!(
                    "at {now}, a leaf of CA {} (issued {}) fails against the current bundle: {e:?}",
                    leaf.ca, leaf.not_before
                );
            }
        }
    }

    /// Steps, issues and checks every `tick` from `from` (inclusive) to `to` (exclusive).
    pub fn run(&mut self, from: OffsetDateTime, to: OffsetDateTime, tick: Duration) {
        let mut now = from;
        while now < to {
            self.step(now);
            self.issue(now);
            self.check(now);
            now += tick;
        }
    }

    pub fn count(&self, pred: impl Fn(&Transition) -> bool) -> usize {
        self.transitions.iter().filter(|(_, t)| pred(t)).count()
    }
}

pub fn anchors_der(state: &RotationState) -> Vec<Vec<u8>> {
    published_anchors(state)
        .iter()
        .map(|a| pem::parse(a).unwrap().into_contents())
        .collect()
}
