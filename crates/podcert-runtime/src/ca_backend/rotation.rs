//! Runs the rotation state machine ([`podcert_core::rotation`]) for one signer's CA source: installs
//! the signing CA and the roots to publish into the [`CaHandle`], keeps external material's
//! earlier roots published until their leaves expire, and reports every phase change (log,
//! Event on the CA Secret, metrics). The backends that feed it are its siblings ([`super::files`], [`super::secret`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use time::OffsetDateTime;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use podcert_core::ca::Material;
use podcert_core::ca::{CaError, GeneratedCa, KeyResolver, PemKeys};

use super::handle::{BundleContent, CaHandle};
use crate::tasks::Tasks;
use crate::telemetry::{CaLabels, Metrics, PhaseLabels, ReasonLabels};
use podcert_core::rotation::{
    encode_retained, handle_trigger, next_step_at, observe_external_with, parse_handled,
    parse_retained, published_anchors, retained_roots, signing_ca_with, step, CaOrigin, CaRecord,
    RetainedRoot, RotationPolicy, RotationState, Transition, TriggerOutcome,
    HANDLED_ROTATE_ANNOTATION, RETAINED_ROOTS_ANNOTATION,
};

/// How a CA source rotates and reports, per signer.
pub struct RotationOptions {
    /// The schedule of a bootstrapped CA; for external CAs only `max_leaf_lifetime` and
    /// `safety_margin` matter (how long a replaced root stays published).
    pub policy: RotationPolicy,
    /// Whether this replica leads: only the leader steps the state and writes it.
    pub leader: watch::Receiver<bool>,
    pub signer_name: String,
    pub metrics: Option<Arc<Metrics>>,
    /// Record an Event on the CA Secret for each phase change.
    pub events: Option<Reporter>,
    /// The ClusterTrustBundle this signer publishes: on start, an external CA keeps the
    /// still-valid roots found there that this signer recorded publishing, as retired until
    /// their recorded end ([`podcert_core::rotation::RETAINED_ROOTS_ANNOTATION`]); in files mode a
    /// rotation request is read from its annotations.
    pub bundle_name: Option<String>,
    /// Where Event writes run (the signer's scope).
    pub tasks: Tasks,
}

impl RotationOptions {
    /// Options for a replica that always leads, without metrics, Events or bundle adoption.
    pub fn new(policy: RotationPolicy, signer_name: &str) -> Self {
        RotationOptions {
            policy,
            leader: watch::channel(true).1,
            signer_name: signer_name.to_string(),
            metrics: None,
            events: None,
            bundle_name: None,
            tasks: Tasks::new(),
        }
    }
}

/// Installs states into the handle and reports their changes.
pub(crate) struct Rotator {
    pub(crate) opts: RotationOptions,
    recorder: Option<Recorder>,
    handle: Arc<CaHandle>,
    /// What is installed: signing fingerprint, published roots, the bundle's annotations.
    installed: Option<(String, Vec<String>, BTreeMap<String, String>)>,
    /// The ClusterTrustBundle resource, once discovered (files mode reads the bundle's
    /// rotation request every round).
    bundle_resource: Option<ApiResource>,
    /// The per-CA metric series set last (removed when their CA leaves).
    series: Vec<CaLabels>,
    /// Opens key references (a `pkcs11:` URI in place of a PEM key); PEM only by default.
    resolver: Arc<dyn KeyResolver>,
}

impl Rotator {
    pub(crate) fn new(
        opts: RotationOptions,
        client: Option<&kube::Client>,
        handle: Arc<CaHandle>,
    ) -> Self {
        let recorder = match (client, &opts.events) {
            (Some(c), Some(r)) => Some(Recorder::new(c.clone(), r.clone())),
            _ => None,
        };
        Rotator {
            opts,
            recorder,
            handle,
            installed: None,
            bundle_resource: None,
            series: Vec::new(),
            resolver: Arc::new(PemKeys),
        }
    }

    /// Loads keys through `resolver` (a token backend's) instead of as PEM only.
    pub(crate) fn with_resolver(mut self, resolver: Arc<dyn KeyResolver>) -> Self {
        self.resolver = resolver;
        self
    }

    pub(crate) fn resolver(&self) -> &dyn KeyResolver {
        self.resolver.as_ref()
    }

    pub(crate) fn policy(&self) -> &RotationPolicy {
        &self.opts.policy
    }

    /// The bundle this process last published, when it publishes one at all (else the
    /// propagation cannot be confirmed and is assumed to take the configured delay).
    pub(crate) fn publication(&self) -> Option<Option<String>> {
        self.opts
            .bundle_name
            .as_ref()
            .map(|_| self.handle.published_pem())
    }

    pub(crate) fn is_leader(&self) -> bool {
        *self.opts.leader.borrow()
    }

    /// The leadership flag, to guard a write with [`crate::leader::while_leading`].
    pub(crate) fn leader(&self) -> &watch::Receiver<bool> {
        &self.opts.leader
    }

    /// Resolves when leadership changes; never, once the election is gone.
    pub(crate) async fn leader_changed(&mut self) {
        if self.opts.leader.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Signs with the state's active CA and publishes its roots, unless that is what is
    /// installed already; updates the metrics either way.
    pub(crate) fn install(
        &mut self,
        state: &RotationState,
        origin: &str,
        now: OffsetDateTime,
    ) -> Result<(), CaError> {
        self.update_metrics(state);
        let anchors = published_anchors(state);
        let annotations = bundle_annotations(state);
        let key = (
            state.active.fingerprint_sha256.clone(),
            anchors,
            annotations,
        );
        if self.installed.as_ref() == Some(&key) {
            return Ok(());
        }
        let ca = signing_ca_with(state, now, self.resolver.as_ref())?;
        info!(
            origin,
            fingerprint = %ca.fingerprint_sha256(),
            not_after = %podcert_core::request::wire::format_time(ca.not_after()),
            published_roots = key.1.len(),
            phase = state.phase().name(),
            "CA loaded"
        );
        self.handle.set_published(ca, key.1.clone(), key.2.clone());
        self.installed = Some(key);
        Ok(())
    }

    /// Logs each transition; the leader also records an Event on `reference` (the CA
    /// Secret) and counts it.
    pub(crate) fn report(&self, transitions: &[Transition], reference: Option<&ObjectReference>) {
        for t in transitions {
            if t.is_warning() {
                warn!(reason = t.reason(), signer = %self.opts.signer_name, "{t}");
            } else {
                info!(reason = t.reason(), signer = %self.opts.signer_name, "{t}");
            }
            if !self.is_leader() {
                continue;
            }
            if let Some(m) = &self.opts.metrics {
                m.rotation_transitions
                    .get_or_create(&ReasonLabels {
                        signer_name: self.opts.signer_name.clone(),
                        reason: t.reason().to_string(),
                    })
                    .inc();
            }
            self.event(t.is_warning(), t.reason(), &t.to_string(), reference);
        }
    }

    /// A Warning Event for a refused rotation request.
    pub(crate) fn refused(&self, reason: &str, reference: Option<&ObjectReference>) {
        warn!(signer = %self.opts.signer_name, "rotation request refused: {reason}");
        self.event(
            true,
            "CARotationRefused",
            &format!("rotation request refused: {reason}"),
            reference,
        );
    }

    fn event(&self, warning: bool, reason: &str, note: &str, reference: Option<&ObjectReference>) {
        let (Some(recorder), Some(reference)) = (self.recorder.clone(), reference.cloned()) else {
            return;
        };
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: "RotateCA".into(),
            secondary: None,
        };
        self.opts.tasks.spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                debug!(error = %e, "could not record a CA rotation event");
            }
        });
    }

    fn update_metrics(&mut self, state: &RotationState) {
        let Some(m) = &self.opts.metrics else { return };
        let signer = &self.opts.signer_name;
        let roles = [
            ("active", Some(&state.active)),
            ("next", state.next.as_ref()),
        ];
        let series: Vec<(CaLabels, i64)> = roles
            .into_iter()
            .filter_map(|(role, r)| r.map(|r| (role, r)))
            .chain(state.retired.iter().map(|r| ("retired", r)))
            .map(|(role, r)| {
                (
                    CaLabels {
                        signer_name: signer.clone(),
                        role: role.to_string(),
                        fingerprint: r.fingerprint_sha256.chars().take(16).collect(),
                    },
                    r.not_after.unix_timestamp(),
                )
            })
            .collect();
        for old in &self.series {
            if !series.iter().any(|(l, _)| l == old) {
                m.ca_role_not_after.remove(old);
            }
        }
        for (labels, not_after) in &series {
            m.ca_role_not_after.get_or_create(labels).set(*not_after);
        }
        self.series = series.into_iter().map(|(l, _)| l).collect();
        let current = state.phase().name();
        for phase in ["Stable", "Prepared", "Draining"] {
            m.rotation_phase
                .get_or_create(&PhaseLabels {
                    signer_name: signer.clone(),
                    phase: phase.to_string(),
                })
                .set(i64::from(phase == current));
        }
        m.rotation_next_step
            .get_or_create(&Metrics::signer(signer))
            .set(next_step_at(state, &self.opts.policy).map_or(0, |t| t.unix_timestamp()));
    }

    /// What the published ClusterTrustBundle says about this signer's earlier roots: the
    /// still-valid roots it holds that this signer recorded publishing, as retired records kept
    /// until their recorded retention end ([`retired_roots`]), and the last rotation request
    /// handled for an external CA. Empty when there is no bundle or it cannot be read (logged).
    pub(crate) async fn published_roots(
        &mut self,
        client: Option<&kube::Client>,
        now: OffsetDateTime,
    ) -> Seed {
        let Some(bundle) = self.read_published(client).await else {
            return Seed::default();
        };
        let bundle_name = self.opts.bundle_name.clone().unwrap_or_default();
        let (record, problem) = bundle
            .annotations
            .get(RETAINED_ROOTS_ANNOTATION)
            .map(|t| parse_retained(t))
            .unwrap_or_default();
        if let Some(p) = problem {
            warn!(bundle = %bundle_name, "ignoring part of the record of published roots: {p}");
        }
        let roots = retired_roots(&bundle.pem, &record, &self.opts.policy, now);
        let found = pem::parse_many(&bundle.pem).map_or(0, |b| b.len());
        if found > roots.len() {
            info!(
                bundle = %bundle_name,
                found,
                kept = roots.len(),
                "earlier roots in the trust bundle that this signer did not record publishing, or whose retention has ended, are not kept"
            );
        }
        Seed {
            roots,
            handled: bundle
                .annotations
                .get(HANDLED_ROTATE_ANNOTATION)
                .and_then(|h| parse_handled(h)),
        }
    }

    /// The published bundle's roots and annotations; None when there is none or it cannot
    /// be read (logged).
    pub(crate) async fn read_published(
        &mut self,
        client: Option<&kube::Client>,
    ) -> Option<BundleContent> {
        let (Some(client), Some(name)) = (client, self.opts.bundle_name.clone()) else {
            return None;
        };
        if self.bundle_resource.is_none() {
            match crate::discovery::cluster_trust_bundles(client).await {
                Ok(r) => self.bundle_resource = Some(r),
                Err(e) => {
                    warn!(error = %e, bundle = name, "could not find the ClusterTrustBundle API; earlier roots are not kept");
                    return None;
                }
            }
        }
        let resource = self.bundle_resource.as_ref()?;
        let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
        match api.get_opt(&name).await {
            Ok(Some(o)) => Some(BundleContent {
                pem: o.data["spec"]["trustBundle"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                annotations: o.metadata.annotations.unwrap_or_default(),
            }),
            Ok(None) => None,
            Err(e) => {
                warn!(error = %e, bundle = name, "could not read the published trust bundle");
                None
            }
        }
    }
}

/// The annotations the published bundle carries for `state`: the record of its roots and,
/// for an external CA (whose state is kept nowhere else), the last request handled.
fn bundle_annotations(state: &RotationState) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([(
        RETAINED_ROOTS_ANNOTATION.to_string(),
        encode_retained(&retained_roots(state)),
    )]);
    if state.active.origin == CaOrigin::External {
        if let Some(h) = &state.handled_trigger {
            a.insert(HANDLED_ROTATE_ANNOTATION.to_string(), h.clone());
        }
    }
    a
}

/// What the published bundle told a starting external CA.
#[derive(Debug, Default)]
pub(crate) struct Seed {
    /// This signer's earlier roots, as retired records.
    pub(crate) roots: Vec<CaRecord>,
    /// The last rotation request acted on.
    pub(crate) handled: Option<String>,
}

/// Holds a prepared CA back while this process has not confirmed its roots published (the
/// trust-bundle publisher failing, or a new leader's publisher not yet done): its activation
/// moves to a full propagation delay from `now`, so the delay counts from publication (to
/// within one step period) rather than running out unseen. None: nothing to hold back. The
/// machine still activates early if the active CA could otherwise no longer issue a leaf.
pub fn hold_back(
    state: &RotationState,
    published_pem: Option<&str>,
    policy: &RotationPolicy,
    now: OffsetDateTime,
) -> Option<RotationState> {
    let next = state.next.as_ref()?;
    let published = published_pem.map(der_blocks).unwrap_or_default();
    let out = next
        .anchors_pem
        .iter()
        .flat_map(|a| der_blocks(a))
        .all(|d| published.contains(&d));
    let due = now + policy.propagation_delay;
    if out || next.activate_at.is_some_and(|t| t >= due) {
        return None;
    }
    let mut s = state.clone();
    if let Some(n) = s.next.as_mut() {
        n.activate_at = Some(due);
    }
    Some(s)
}

fn der_blocks(pem_text: &str) -> Vec<Vec<u8>> {
    pem::parse_many(pem_text)
        .unwrap_or_default()
        .into_iter()
        .map(|b| b.into_contents())
        .collect()
}

/// The roots in a published bundle text that this signer recorded publishing (`record`) and
/// that are still valid at `now`, as retired records. A root recorded with a retention end
/// keeps exactly that end (never extended by a restart); one recorded as in use (its CA was
/// signing when the record was written) is kept for the longest leaf lifetime from now (capped
/// by its notAfter) plus the margin. A root without a record (an unrelated CA's, or one added
/// by hand) is not kept, nor is one whose retention has ended.
pub fn retired_roots(
    bundle_pem: &str,
    record: &[RetainedRoot],
    policy: &RotationPolicy,
    now: OffsetDateTime,
) -> Vec<CaRecord> {
    let Ok(blocks) = pem::parse_many(bundle_pem) else {
        return Vec::new();
    };
    blocks
        .iter()
        .filter_map(|b| {
            let text = pem::encode_config(
                b,
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            );
            let probe = CaRecord::retired_anchor(&text, policy.max_leaf_lifetime, now, now)?;
            let entry = record
                .iter()
                .find(|r| r.sha256 == probe.fingerprint_sha256)?;
            let cap = probe.not_after + policy.safety_margin;
            let drop_at = match entry.retain_until {
                Some(t) => t.min(cap),
                None => {
                    (now + policy.max_leaf_lifetime).min(probe.not_after) + policy.safety_margin
                }
            };
            (probe.not_after > now && drop_at > now).then_some(CaRecord {
                drop_at: Some(drop_at),
                ..probe
            })
        })
        .collect()
}

/// An externally managed CA (files, or a Secret written by cert-manager or Vault), tracked in
/// memory: each replica observes the same material, so each computes the same bundle.
#[derive(Default)]
pub(crate) struct External {
    state: Option<RotationState>,
    last: Option<Material>,
}

impl External {
    pub(crate) fn state(&self) -> Option<&RotationState> {
        self.state.as_ref()
    }

    pub(crate) fn is_new(&self, m: &Material) -> bool {
        self.last.as_ref() != Some(m)
    }

    /// Material as read now. The first material is adopted, keeping `seed` (this signer's
    /// roots found published) as retired unless they are its own; later material replaces the
    /// active CA at once and retires the previous one ([`podcert_core::rotation::observe_external`]). Refused material
    /// changes nothing (the previous CA keeps signing).
    pub(crate) fn observe(
        &mut self,
        m: &Material,
        seed: Seed,
        policy: &RotationPolicy,
        now: OffsetDateTime,
        resolver: &dyn KeyResolver,
    ) -> Result<Vec<Transition>, CaError> {
        self.last = Some(m.clone());
        let (state, transitions) = match &self.state {
            None => {
                let mut s = RotationState::adopt_with(
                    &m.cert,
                    &m.key,
                    m.anchors.as_deref(),
                    CaOrigin::External,
                    now,
                    resolver,
                )?;
                let own = published_anchors(&s);
                s.handled_trigger = seed.handled;
                s.retired = seed
                    .roots
                    .into_iter()
                    .filter(|r| !r.anchors_pem.iter().all(|a| own.contains(a)))
                    .collect();
                (s, Vec::new())
            }
            Some(s) => observe_external_with(
                s,
                policy,
                &m.cert,
                &m.key,
                m.anchors.as_deref(),
                now,
                resolver,
            )?,
        };
        self.state = Some(state);
        Ok(transitions)
    }

    /// Drops retired roots whose leaves have all expired.
    pub(crate) fn tick(&mut self, policy: &RotationPolicy, now: OffsetDateTime) -> Vec<Transition> {
        let Some(s) = &self.state else {
            return Vec::new();
        };
        let (next, transitions) = step(s, policy, now, &mut no_generation);
        self.state = Some(next);
        transitions
    }

    /// Acts on a rotation request in `annotations` not handled yet: an emergency drop of an
    /// earlier root removes it from the bundle at once; anything else (a normal rotation, the
    /// active CA) is refused, since only the CA's owner can replace it. Every replica acts on
    /// it (each computes its own bundle); the handled value is published on the bundle.
    pub(crate) fn trigger(
        &mut self,
        annotations: &BTreeMap<String, String>,
        policy: &RotationPolicy,
        now: OffsetDateTime,
    ) -> TriggerOutcome {
        let Some(s) = &self.state else {
            return TriggerOutcome::Idle;
        };
        let outcome = handle_trigger(annotations, s, policy, now, &mut no_generation);
        if let TriggerOutcome::Done { state, .. } | TriggerOutcome::Refused { state, .. } = &outcome
        {
            self.state = Some(state.clone());
        }
        outcome
    }
}

/// An external active CA is never rotated here, so generation is never called.
fn no_generation(_: OffsetDateTime, _: time::Duration) -> Result<GeneratedCa, CaError> {
    Err(CaError::Generate(
        "an external CA is not rotated by this signer".into(),
    ))
}

impl Rotator {
    /// Reports what [`External::trigger`] did: transitions as usual, a refusal as a warning
    /// (and, on the leader, an Event on `reference`).
    pub(crate) fn report_trigger(
        &self,
        outcome: TriggerOutcome,
        reference: Option<&ObjectReference>,
    ) {
        match outcome {
            TriggerOutcome::Idle => {}
            TriggerOutcome::Done { transitions, .. } => self.report(&transitions, reference),
            TriggerOutcome::Refused { reason, .. } if self.is_leader() => {
                self.refused(&reason, reference)
            }
            TriggerOutcome::Refused { reason, .. } => {
                warn!(signer = %self.opts.signer_name, "rotation request refused: {reason}")
            }
            TriggerOutcome::Retry(e) => {
                warn!(error = %e, "could not act on the rotation request; retrying")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podcert_core::ca::{generate_self_signed, CaKeyType};
    use time::Duration;

    fn policy() -> RotationPolicy {
        RotationPolicy::new(Duration::days(30), Duration::hours(24)).unwrap()
    }

    fn material(now: OffsetDateTime, validity: Duration) -> Material {
        let g =
            generate_self_signed(CaKeyType::EcdsaP256, Some("example.org"), validity, now).unwrap();
        Material {
            cert: g.cert_pem,
            key: g.key_pem,
            anchors: None,
        }
    }

    fn recorded(pem_text: &str, retain_until: Option<OffsetDateTime>) -> RetainedRoot {
        RetainedRoot {
            sha256: podcert_core::rotation::anchor_sha256(pem_text).unwrap(),
            retain_until,
        }
    }

    fn seed(roots: Vec<CaRecord>) -> Seed {
        Seed {
            roots,
            handled: None,
        }
    }

    #[test]
    fn only_recorded_roots_are_kept_and_only_until_their_recorded_end() {
        let now = OffsetDateTime::now_utc();
        let [old, short, own, fixed, unrelated, ended] = [30, 0, 30, 30, 30, 30].map(|d| match d {
            0 => material(now, Duration::hours(2)),
            d => material(now, Duration::days(d)),
        });
        let bundle = [&own, &old, &short, &fixed, &unrelated, &ended]
            .map(|m| m.cert.clone())
            .concat();
        let until = now + Duration::hours(7);
        let record = vec![
            recorded(&own.cert, None),
            recorded(&old.cert, None),
            recorded(&short.cert, None),
            recorded(&fixed.cert, Some(until)),
            recorded(&ended.cert, Some(now - Duration::minutes(1))),
        ];
        let kept = retired_roots(&bundle, &record, &policy(), now);
        assert_eq!(
            kept.len(),
            4,
            "the unrelated and the ended roots are not kept"
        );
        // Recorded in use: the longest leaf lifetime from now, plus the margin.
        assert_eq!(
            kept[1].drop_at,
            Some(now + Duration::hours(24) + Duration::minutes(5))
        );
        // A root expiring sooner is kept only until it expires (plus the margin).
        assert_eq!(
            kept[2].drop_at,
            Some(kept[2].not_after + Duration::minutes(5))
        );
        // A recorded retention end is kept as it is, however late the restart.
        assert_eq!(kept[3].drop_at, Some(until));
        let later = retired_roots(&bundle, &record, &policy(), now + Duration::hours(3));
        assert_eq!(
            later
                .iter()
                .find(|r| r.cert_pem == kept[3].cert_pem)
                .unwrap()
                .drop_at,
            Some(until)
        );
        assert!(kept.iter().all(|r| r.key_pem.is_none()));
        assert!(retired_roots(&bundle, &[], &policy(), now).is_empty());

        // Adopting the current material keeps the other roots, not a duplicate of its own.
        let mut ext = External::default();
        assert!(ext
            .observe(&own, seed(kept), &policy(), now, &PemKeys)
            .unwrap()
            .is_empty());
        let s = ext.state().unwrap();
        assert_eq!(s.active.origin, CaOrigin::External);
        assert_eq!(s.retired.len(), 3);
        assert_eq!(published_anchors(s).len(), 4);
        // The record the bundle gets: the active root open-ended, the others with their end.
        let r = retained_roots(s);
        assert_eq!(r[0].retain_until, None);
        assert_eq!(r[3].retain_until, Some(until));
        // Once their time has come, they leave the bundle.
        let t = ext.tick(&policy(), now + Duration::hours(25));
        assert_eq!(t.len(), 3);
        assert_eq!(published_anchors(ext.state().unwrap()).len(), 1);
    }

    #[test]
    fn an_emergency_drops_an_earlier_external_root_but_not_the_active_one() {
        let now = OffsetDateTime::now_utc();
        let (a, b) = (
            material(now, Duration::days(30)),
            material(now, Duration::days(30)),
        );
        let mut ext = External::default();
        ext.observe(&a, Seed::default(), &policy(), now, &PemKeys)
            .unwrap();
        ext.observe(&b, Seed::default(), &policy(), now, &PemKeys)
            .unwrap();
        let request = |value: &str, fp: &str| {
            BTreeMap::from([
                (
                    podcert_core::rotation::ROTATE_ANNOTATION.to_string(),
                    value.to_string(),
                ),
                (
                    podcert_core::rotation::ROTATE_MODE_ANNOTATION.to_string(),
                    "emergency".to_string(),
                ),
                (
                    podcert_core::rotation::ROTATE_FINGERPRINT_ANNOTATION.to_string(),
                    fp.to_string(),
                ),
            ])
        };
        let fp = |m: &Material| podcert_core::rotation::anchor_sha256(&m.cert).unwrap();
        let out = ext.trigger(&request("1", &fp(&b)), &policy(), now);
        assert!(matches!(out, TriggerOutcome::Refused { .. }), "{out:?}");
        assert_eq!(published_anchors(ext.state().unwrap()).len(), 2);
        let out = ext.trigger(&request("2", &fp(&a)), &policy(), now);
        assert!(matches!(out, TriggerOutcome::Done { .. }), "{out:?}");
        let s = ext.state().unwrap();
        assert_eq!(published_anchors(s), vec![b.cert.clone()]);
        assert_eq!(
            bundle_annotations(s)
                .get(HANDLED_ROTATE_ANNOTATION)
                .map(String::as_str),
            Some("2")
        );
        // Handled once.
        assert!(matches!(
            ext.trigger(&request("2", &fp(&a)), &policy(), now),
            TriggerOutcome::Idle
        ));
    }

    #[test]
    fn new_external_material_signs_at_once_and_keeps_the_old_root() {
        let now = OffsetDateTime::now_utc();
        let (a, b) = (
            material(now, Duration::days(30)),
            material(now, Duration::days(30)),
        );
        let mut ext = External::default();
        ext.observe(&a, Seed::default(), &policy(), now, &PemKeys)
            .unwrap();
        assert!(!ext.is_new(&a) && ext.is_new(&b));
        let t = ext
            .observe(&b, Seed::default(), &policy(), now, &PemKeys)
            .unwrap();
        assert!(matches!(t[0], Transition::ExternalChanged { .. }));
        let s = ext.state().unwrap();
        assert_eq!(s.active.cert_pem, b.cert);
        assert!(podcert_core::rotation::signing_ca(s, now).is_ok());
        assert_eq!(published_anchors(s).len(), 2);
        // Bad material changes nothing.
        let bad = Material {
            cert: "garbage".into(),
            ..b.clone()
        };
        assert!(ext
            .observe(&bad, Seed::default(), &policy(), now, &PemKeys)
            .is_err());
        assert_eq!(published_anchors(ext.state().unwrap()).len(), 2);
    }

    #[test]
    fn a_prepared_ca_waits_for_its_root_to_be_published() {
        let now = OffsetDateTime::now_utc();
        let p = policy();
        let m = material(now, Duration::days(30));
        let s = RotationState::adopt(&m.cert, &m.key, None, CaOrigin::Generated, now).unwrap();
        let mut gen = |at: OffsetDateTime, v: Duration| {
            generate_self_signed(CaKeyType::EcdsaP256, Some("example.org"), v, at)
        };
        let (prepared, _) = podcert_core::rotation::begin_manual(&s, &p, now, &mut gen).unwrap();
        let old_bundle = m.cert.clone();
        let full = podcert_core::rotation::published_bundle_pem(&prepared);
        // Not stepped on: nothing prepared, or the root is out.
        assert!(hold_back(&s, None, &p, now).is_none());
        assert!(hold_back(&prepared, Some(&full), &p, now + Duration::minutes(10)).is_none());
        // Just prepared (activation a full delay away): nothing to move.
        assert!(hold_back(&prepared, Some(&old_bundle), &p, now).is_none());
        // Ten minutes on and still not out: activation moves to a full delay from now.
        let later = now + Duration::minutes(10);
        let held = hold_back(&prepared, Some(&old_bundle), &p, later).unwrap();
        let next = held.next.as_ref().unwrap();
        assert_eq!(next.activate_at, Some(later + p.propagation_delay));
        let held = hold_back(&prepared, None, &p, later).unwrap();
        assert_eq!(
            held.next.unwrap().activate_at,
            Some(later + p.propagation_delay)
        );
    }

    #[test]
    fn material_debug_never_shows_the_key() {
        let m = material(OffsetDateTime::now_utc(), Duration::days(1));
        assert!(!format!("{m:?}").contains(&m.key));
    }
}
