//! Serving the signers declared as PodCertificateSigner objects: one [`Instance`] per valid,
//! permitted object, started, updated in place (policy edits) or restarted (CA or bundle
//! edits) as the objects change, and stopped when an object goes away or stops being valid.
//! Each object's status says whether it is served and, if not, why.
//!
//! Level-triggered over the whole set (objects are few): every watch event and every 10 s the
//! desired set is recomputed from the cache. That makes conflicts (two signers sharing a
//! signer name, a trust domain or a CA: [`conflict`]) simple: the flag signer, then the oldest
//! object wins, deterministically on every replica.

pub mod access;
pub mod conflict;
pub mod instance;
pub mod status;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

use podcert_k8s::settings::CaSpec;

use crate::ca_backend::CaHandle;
use crate::context::AppContext;
use conflict::{Age, Claims, Holder};
pub use instance::Instance;
use podcert_core::rotation::{
    ROTATE_ANNOTATION, ROTATE_FINGERPRINT_ANNOTATION, ROTATE_MODE_ANNOTATION,
};
use podcert_k8s::crd::{convert, PodCertificateSigner, SignerSettings};
use status::NotReady;

/// How the PodCertificateSigner objects are served.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Signer-name domains this deployment may serve (`example.com` serves `example.com/*`).
    pub domains: Vec<String>,
    /// The namespace CA Secrets are read from (the signer's own).
    pub own_namespace: String,
    /// How often CA material is re-read.
    pub poll: Duration,
    /// The signer configured by command-line flags: it is older than every object.
    pub flag: Option<FlagSigner>,
}

/// What the manager knows of the signer configured by flags.
#[derive(Clone)]
pub struct FlagSigner {
    pub claims: Claims,
    /// Its CA, for the fingerprint comparison.
    pub ca: Option<Arc<CaHandle>>,
}

impl std::fmt::Debug for FlagSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagSigner")
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

const TRIGGER_KEYS: [&str; 3] = [
    ROTATE_ANNOTATION,
    ROTATE_MODE_ANNOTATION,
    ROTATE_FINGERPRINT_ANNOTATION,
];

const RESYNC: Duration = Duration::from_secs(10);
const PERMISSION_TTL: Duration = Duration::from_secs(60);

struct Manager {
    shared: AppContext,
    cfg: ManagerConfig,
    api: Api<PodCertificateSigner>,
    running: HashMap<String, Instance>,
    /// Wakes the sync loop (watch events, CA changes).
    notify: Arc<Notify>,
    permissions: HashMap<(String, bool), (Instant, Option<&'static str>)>,
}

/// Runs until the process's scope (`shared.tasks`) is cancelled, then stops every signer it
/// started; `synced` turns true once the objects have been listed.
pub async fn run(shared: AppContext, cfg: ManagerConfig, synced: watch::Sender<bool>) {
    let tasks = shared.tasks.child();
    let api: Api<PodCertificateSigner> = Api::all(shared.client.clone());
    let (reader, writer) = reflector::store();
    let notify = Arc::new(Notify::new());
    let events = notify.clone();
    let stream = reflector::reflector(
        writer,
        watcher(api.clone(), watcher::Config::default()).default_backoff(),
    );
    tasks.spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(_) => events.notify_one(),
                Err(e) => {
                    warn!(error = %e, "watching PodCertificateSigners failed (is the CRD installed? `podcert-signer crd | kubectl apply -f -`); retrying")
                }
            }
        }
    });
    info!(domains = ?cfg.domains, "serving PodCertificateSigner objects");
    // A flag CA that loads (or changes) late may now clash with an object's.
    if let Some(ca) = cfg.flag.as_ref().and_then(|f| f.ca.clone()) {
        let notify = notify.clone();
        tasks.spawn(async move {
            let mut changes = ca.subscribe();
            while changes.changed().await.is_ok() {
                notify.notify_one();
            }
        });
    }
    let mut m = Manager {
        shared,
        cfg,
        api,
        running: HashMap::new(),
        notify: notify.clone(),
        permissions: HashMap::new(),
    };
    let mut leader = m.shared.leader.clone();
    loop {
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
            _ = leader.changed() => {}
            _ = tasks.cancelled() => break,
        }
        if !ready(&reader).await {
            continue;
        }
        if !*synced.borrow() {
            let _ = synced.send(true);
            info!("PodCertificateSigner cache synced");
        }
        m.sync(&reader).await;
    }
    for (_, i) in m.running.drain() {
        i.stop().await;
    }
    tasks.stop(Duration::from_secs(5)).await;
}

async fn ready(store: &Store<PodCertificateSigner>) -> bool {
    // The store's ready signal wakes one waiter only; a short poll sees the memoized value.
    tokio::time::timeout(Duration::from_millis(5), store.wait_until_ready())
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Who is older: creation time (unknown sorts last), then name.
fn age(o: &PodCertificateSigner) -> Age {
    let created = o
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(i64::MAX);
    (created, o.name_any())
}

impl Manager {
    async fn sync(&mut self, store: &Store<PodCertificateSigner>) {
        let mut objs = store.state();
        objs.sort_by_key(|o| age(o));
        // Objects outside this deployment's domains are someone else's: they claim nothing here.
        let claims: Vec<(Age, Claims)> = objs
            .iter()
            .filter(|o| access::in_domains(&o.spec.signer_name, &self.cfg.domains))
            .map(|o| (age(o), Claims::of_spec(&o.spec, &self.cfg.own_namespace)))
            .collect();
        let mut conflicts: BTreeMap<String, (Holder, Vec<String>)> = claims
            .iter()
            .zip(conflict::static_conflicts(
                self.cfg.flag.as_ref().map(|f| &f.claims),
                &claims,
            ))
            .filter_map(|((a, _), c)| Some((a.1.clone(), c?)))
            .collect();
        // Loaded CAs, oldest signer first.
        let mut loaded: Vec<(Holder, String)> = Vec::new();
        if let Some(f) = &self.cfg.flag {
            if let Some(ca) = f.ca.as_ref().and_then(|h| h.get()) {
                loaded.push((
                    Holder::Flags(f.claims.signer_name.clone()),
                    ca.fingerprint_sha256(),
                ));
            }
        }
        let mut seen = HashSet::new();
        for obj in &objs {
            let name = obj.name_any();
            seen.insert(name.clone());
            let verdict = self.evaluate(obj, conflicts.remove(&name)).await;
            let Some(verdict) = verdict else {
                // Undecided: still its CA counts against younger signers.
                if let Some(ca) = self.running.get(&name).and_then(|i| i.ca().get()) {
                    loaded.push((Holder::Object(name.clone()), ca.fingerprint_sha256()));
                }
                continue;
            };
            let result = match verdict {
                Ok(settings) => {
                    self.forward_rotation_request(obj, &settings).await;
                    match self.ensure_running(&name, settings).await {
                        Ok(()) => self.admit_unless_ca_taken(&name, &mut loaded).await,
                        Err(nr) => Err(nr),
                    }
                }
                Err(nr) => {
                    if let Some(i) = self.running.remove(&name) {
                        info!(object = %name, signer = %i.settings().config.signer_name, reason = nr.reason, "no longer serving this signer: {}", nr.message);
                        i.stop().await;
                    }
                    Err(nr)
                }
            };
            self.report(obj, result).await;
        }
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(i) = self.running.remove(&name) {
                info!(object = %name, signer = %i.settings().config.signer_name, "PodCertificateSigner deleted; stopped serving its signer name (pending requests stay pending)");
                i.stop().await;
            }
        }
    }

    /// A running instance issues only once its CA is loaded and no older signer has the same
    /// CA certificate (a copy of another signer's Secret, or two paths to one file). Until
    /// then its CA stays loaded and watched, so a change of material is noticed, but it
    /// neither issues nor publishes.
    async fn admit_unless_ca_taken(
        &mut self,
        name: &str,
        loaded: &mut Vec<(Holder, String)>,
    ) -> Result<(), NotReady> {
        let Some(i) = self.running.get_mut(name) else {
            return Ok(());
        };
        let Some(ca) = i.ca().get() else {
            // Not loaded yet: the report says so; it is admitted once it loads.
            return Ok(());
        };
        let fp = ca.fingerprint_sha256();
        let holder = conflict::first_holder_of(loaded.iter(), &fp).cloned();
        loaded.push((Holder::Object(name.to_string()), fp.clone()));
        match holder {
            None => {
                i.admit();
                Ok(())
            }
            Some(h) => {
                if i.admitted() {
                    info!(object = %name, signer = %i.settings().config.signer_name, "its CA is now another signer's; no longer issuing");
                }
                i.withhold().await;
                Err(NotReady::new(
                    status::CONFLICT,
                    conflict::message(&h, &[format!("the same CA certificate (fingerprint {fp})")]),
                ))
            }
        }
    }

    /// The settings to run, or why not. `None`: cannot tell now (permission check failed).
    async fn evaluate(
        &mut self,
        obj: &PodCertificateSigner,
        conflict: Option<(Holder, Vec<String>)>,
    ) -> Option<Result<SignerSettings, NotReady>> {
        let spec = &obj.spec;
        let settings = match convert::settings(spec, &self.cfg.own_namespace, self.cfg.poll) {
            Ok(s) => s,
            Err(e) => return Some(Err(NotReady::new(status::INVALID_SPEC, e.to_string()))),
        };
        let signer = &spec.signer_name;
        if !access::in_domains(signer, &self.cfg.domains) {
            return Some(Err(NotReady::new(
                status::NAME_NOT_ALLOWED,
                format!(
                    "signer name {signer} is outside the domains this deployment serves ({}); add its domain to the chart's signerDomains (--signer-domain)",
                    self.cfg.domains.join(", ")
                ),
            )));
        }
        if let Some((holder, shared)) = conflict {
            return Some(Err(NotReady::new(
                status::CONFLICT,
                conflict::message(&holder, &shared),
            )));
        }
        let attest = settings.trust_bundle.is_some() && self.shared.ctb.is_some();
        match self.missing_verb(signer, attest).await {
            Ok(None) => Some(Ok(settings)),
            Ok(Some(verb)) => Some(Err(NotReady::new(
                status::NOT_PERMITTED,
                format!(
                    "this deployment's service account may not {verb} for signer {signer}: grant verb {verb} on signers {signer} (or {}/*) in group certificates.k8s.io",
                    signer.split('/').next().unwrap_or_default()
                ),
            ))),
            Err(e) => {
                warn!(%signer, error = %e, "could not check permissions; keeping the current state");
                None
            }
        }
    }

    async fn missing_verb(
        &mut self,
        signer: &str,
        attest: bool,
    ) -> Result<Option<&'static str>, kube::Error> {
        let key = (signer.to_string(), attest);
        if let Some((at, v)) = self.permissions.get(&key) {
            if at.elapsed() < PERMISSION_TTL {
                return Ok(*v);
            }
        }
        let verbs: &[&'static str] = if attest {
            &["sign", "attest"]
        } else {
            &["sign"]
        };
        let v = access::missing_verb(&self.shared.client, signer, verbs).await?;
        self.permissions.insert(key, (Instant::now(), v));
        Ok(v)
    }

    /// `podcert.dev/rotate*` annotations on the object are copied onto its bootstrapped CA
    /// Secret, where the CA source acts on them exactly once (the handled value is recorded in
    /// the rotation state), as it does for `podcert-signer ca rotate`. Leader only.
    async fn forward_rotation_request(
        &self,
        obj: &PodCertificateSigner,
        settings: &SignerSettings,
    ) {
        let CaSpec::Secret {
            namespace,
            name,
            bootstrap: Some(_),
            ..
        } = &settings.ca
        else {
            return;
        };
        let wanted: BTreeMap<&str, Option<&String>> = TRIGGER_KEYS
            .iter()
            .map(|k| (*k, obj.annotations().get(*k)))
            .collect();
        if wanted[ROTATE_ANNOTATION].is_none() || !*self.shared.leader.borrow() {
            return;
        }
        let api: Api<Secret> = Api::namespaced(self.shared.client.clone(), namespace);
        let mut secret = match api.get(name).await {
            Ok(s) => s,
            Err(e) => {
                warn!(object = %obj.name_any(), secret = %name, error = %e, "cannot read the CA Secret to pass on a rotation request");
                return;
            }
        };
        let current = secret.annotations_mut();
        if wanted.iter().all(|(k, v)| current.get(*k) == v.as_deref()) {
            return;
        }
        for (k, v) in &wanted {
            match v {
                Some(v) => current.insert(k.to_string(), v.to_string()),
                None => current.remove(*k),
            };
        }
        let params = PostParams::default();
        let write = api.replace(name, &params, &secret);
        let Some(written) = crate::leader::while_leading(&self.shared.leader, write).await else {
            return;
        };
        match written {
            Ok(_) => {
                info!(object = %obj.name_any(), secret = %name, "passed the rotation request on to the CA Secret")
            }
            Err(e) => {
                warn!(object = %obj.name_any(), secret = %name, error = %e, "could not pass the rotation request on to the CA Secret; will retry")
            }
        }
    }

    /// Starts, updates or restarts the object's instance. `Ok(())` once it is running.
    async fn ensure_running(
        &mut self,
        name: &str,
        settings: SignerSettings,
    ) -> Result<(), NotReady> {
        let signer = settings.config.signer_name.clone();
        match self.running.remove(name) {
            Some(mut i) if i.can_update_to(&settings) => {
                if i.settings().config != settings.config {
                    i.update_policy(settings.config);
                    info!(object = %name, %signer, "policy updated in place");
                }
                self.running.insert(name.to_string(), i);
                return Ok(());
            }
            Some(i) => {
                info!(object = %name, %signer, "CA or trust-bundle settings changed; restarting this signer");
                i.stop().await;
            }
            None => {}
        }
        match Instance::start_withheld(&self.shared, settings).await {
            Ok(i) => {
                info!(object = %name, %signer, "serving signer");
                // Report the new CA in the status as soon as it loads, not at the next resync.
                let mut ca_changes = i.ca().subscribe();
                let notify = self.notify.clone();
                i.spawn(async move {
                    while ca_changes.changed().await.is_ok() {
                        notify.notify_one();
                    }
                });
                // And when its token key stops or starts signing again.
                let mut key_changes = i.ca().subscribe_key_problem();
                let notify = self.notify.clone();
                i.spawn(async move {
                    while key_changes.changed().await.is_ok() {
                        notify.notify_one();
                    }
                });
                self.running.insert(name.to_string(), i);
                Ok(())
            }
            Err(e) => Err(NotReady::new(status::CA_NOT_LOADED, e.to_string())),
        }
    }

    async fn report(&self, obj: &PodCertificateSigner, result: Result<(), NotReady>) {
        let name = obj.name_any();
        let instance = self.running.get(&name);
        let ca = instance.and_then(|i| i.ca().get());
        let waiting;
        let key_problem = instance.and_then(|i| i.ca().key_problem());
        let verdict = match (&result, &ca, key_problem) {
            (Err(nr), _, _) => Err(nr),
            (Ok(()), Some(_), Some(problem)) => {
                waiting = NotReady::new(status::CA_KEY_UNAVAILABLE, problem);
                Err(&waiting)
            }
            (Ok(()), Some(ca), None) => Ok(ca.as_ref()),
            (Ok(()), None, _) => {
                waiting = NotReady::new(
                    status::CA_NOT_LOADED,
                    "waiting for the CA (a Secret that does not exist yet, or material that was refused: see the signer's logs)",
                );
                Err(&waiting)
            }
        };
        let bundle = instance
            .and_then(|i| i.settings().trust_bundle.as_ref())
            .filter(|_| self.shared.ctb.is_some())
            .map(|tb| tb.bundle_name());
        let next = status::build(
            obj.metadata.generation,
            verdict,
            bundle,
            obj.status.as_ref(),
            k8s_openapi::jiff::Timestamp::now(),
        );
        if obj.status.as_ref() == Some(&next) || !*self.shared.leader.borrow() {
            return;
        }
        let was = obj
            .status
            .as_ref()
            .and_then(|s| s.conditions.first())
            .map(|c| (c.status.clone(), c.reason.clone()));
        if let Some(c) = next.conditions.first() {
            if was.as_ref() != Some(&(c.status.clone(), c.reason.clone())) {
                self.event(obj, c.status == "True", &c.reason, &c.message);
            }
        }
        let patch = json!({ "status": next });
        let (params, merge) = (PatchParams::default(), Patch::Merge(&patch));
        let write = self.api.patch_status(&name, &params, &merge);
        let Some(written) = crate::leader::while_leading(&self.shared.leader, write).await else {
            return;
        };
        match written {
            Ok(_) => debug!(object = %name, "status updated"),
            Err(e) => {
                warn!(object = %name, error = %e, "could not update the PodCertificateSigner status; will retry")
            }
        }
    }
}

impl Manager {
    /// An Event on the object when its Ready condition changes (status or reason).
    fn event(&self, obj: &PodCertificateSigner, ready: bool, reason: &str, message: &str) {
        let Some(reporter) = self.shared.reporter.clone() else {
            return;
        };
        let recorder = Recorder::new(self.shared.client.clone(), reporter);
        let reference = obj.object_ref(&());
        let event = Event {
            type_: if ready {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: reason.to_string(),
            note: Some(message.chars().take(1000).collect()),
            action: "Serve".into(),
            secondary: None,
        };
        self.shared.tasks.spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                debug!(error = %e, "could not record an event");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use podcert_k8s::crd::PodCertificateSignerSpec;

    fn obj(name: &str, created: i64) -> PodCertificateSigner {
        let spec: PodCertificateSignerSpec = serde_json::from_value(json!({
            "signerName": "x.io/a", "trustDomain": "td",
            "ca": {"secret": {"name": "ca"}}
        }))
        .unwrap();
        assert_eq!(spec.ca.secret.as_ref().unwrap().validity, "365d");
        let mut o = PodCertificateSigner::new(name, spec);
        o.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(created).unwrap(),
        ));
        o
    }

    #[test]
    fn age_is_creation_time_then_name() {
        let mut objs = [obj("b", 100), obj("a", 200), obj("d", 300), obj("c", 300)];
        objs.sort_by_key(age);
        let names: Vec<String> = objs.iter().map(|o| o.name_any()).collect();
        assert_eq!(names, ["b", "a", "c", "d"]);
        let spec = objs[0].spec.clone();
        let c = Claims::of_spec(&spec, "sys");
        assert_eq!(c.ca_secret.as_deref(), Some("sys/ca"));
        assert_eq!(c.trust_domain, "td");
    }
}
