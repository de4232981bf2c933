//! Where the signing CA comes from at run time, and keeping it current: files (reloaded when a
//! mounted Secret changes them), a `kubernetes.io/tls` Secret (optionally bootstrapped, then
//! rotated by the leader with the state kept in the Secret), or memory (demos). New material
//! that fails the checks is refused loudly and the old CA kept; replaced external material
//! keeps its root published until its leaves expire ([`crate::ca_rotation`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::Resource;
use time::OffsetDateTime;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::ca_rotation::{hold_back, External, RotationOptions, Rotator, Seed};
use podcert_core::ca::{generate_self_signed, Ca, CaError, Material};
use podcert_k8s::ca_secret::{self, SecretCa, SecretFormatError};
use podcert_k8s::settings::{Bootstrap, CaSpec};

use crate::ca_secret_write::{write_state, WriteOutcome};
use podcert_core::rotation::{
    encode_retained, handle_trigger, step, CaOrigin, RetainedRoot, RotationPolicy, RotationState,
    TriggerOutcome, RETAINED_ROOTS_ANNOTATION,
};

fn sha256_hex(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The current CA, shared by the controller and the trust-bundle publisher: the CA that signs
/// and the roots to publish. They differ during a rotation (the next CA's root is published
/// before it signs; retired roots stay until their leaves expire).
pub struct CaHandle {
    current: RwLock<Option<Installed>>,
    version: watch::Sender<u64>,
    /// The bundle the trust-bundle publisher last wrote successfully.
    published: RwLock<Option<String>>,
}

#[derive(Clone)]
struct Installed {
    ca: Arc<Ca>,
    /// One PEM CERTIFICATE block each; None: the signing CA's own trust anchors.
    anchors: Option<Arc<Vec<String>>>,
    /// Annotations the published bundle carries: the record of the roots this signer
    /// published ([`podcert_core::rotation::RETAINED_ROOTS_ANNOTATION`]) and the like.
    annotations: Arc<BTreeMap<String, String>>,
}

/// What the trust-bundle publisher writes: the roots and the bundle's annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleContent {
    pub pem: String,
    pub annotations: BTreeMap<String, String>,
}

impl CaHandle {
    pub fn new() -> Arc<Self> {
        let (version, _) = watch::channel(0);
        Arc::new(CaHandle {
            current: RwLock::new(None),
            version,
            published: RwLock::new(None),
        })
    }

    /// The CA that signs now.
    pub fn get(&self) -> Option<Arc<Ca>> {
        self.current
            .read()
            .ok()
            .and_then(|g| g.as_ref().map(|i| i.ca.clone()))
    }

    /// Installs a CA whose own trust anchors are the whole published bundle.
    pub fn set(&self, ca: Ca) {
        let roots = ca
            .trust_anchors_der()
            .iter()
            .map(|der| RetainedRoot {
                sha256: sha256_hex(der),
                retain_until: None,
            })
            .collect::<Vec<_>>();
        self.install(Installed {
            ca: Arc::new(ca),
            anchors: None,
            annotations: Arc::new(BTreeMap::from([(
                RETAINED_ROOTS_ANNOTATION.to_string(),
                encode_retained(&roots),
            )])),
        });
    }

    /// Installs a CA to sign with and the roots to publish (one PEM CERTIFICATE block each,
    /// in order), e.g. [`podcert_core::rotation::published_anchors`], each recorded as in use.
    pub fn set_with_anchors(&self, ca: Ca, anchors: Vec<String>) {
        let roots = anchors
            .iter()
            .filter_map(|a| podcert_core::rotation::anchor_sha256(a))
            .map(|sha256| RetainedRoot {
                sha256,
                retain_until: None,
            })
            .collect::<Vec<_>>();
        let annotations = BTreeMap::from([(
            RETAINED_ROOTS_ANNOTATION.to_string(),
            encode_retained(&roots),
        )]);
        self.set_published(ca, anchors, annotations);
    }

    /// Installs a CA to sign with, the roots to publish and the bundle's annotations.
    pub fn set_published(
        &self,
        ca: Ca,
        anchors: Vec<String>,
        annotations: BTreeMap<String, String>,
    ) {
        self.install(Installed {
            ca: Arc::new(ca),
            anchors: Some(Arc::new(anchors)),
            annotations: Arc::new(annotations),
        });
    }

    /// The roots to publish, one PEM text (a ClusterTrustBundle's `trustBundle`).
    pub fn anchors_pem(&self) -> Option<String> {
        let g = self.current.read().ok()?;
        let i = g.as_ref()?;
        Some(match &i.anchors {
            Some(a) => a.concat(),
            None => i.ca.trust_anchors_pem(),
        })
    }

    /// The roots to publish and the annotations the bundle carries.
    pub fn bundle(&self) -> Option<BundleContent> {
        let g = self.current.read().ok()?;
        let i = g.as_ref()?;
        Some(BundleContent {
            pem: match &i.anchors {
                Some(a) => a.concat(),
                None => i.ca.trust_anchors_pem(),
            },
            annotations: (*i.annotations).clone(),
        })
    }

    /// Called by the trust-bundle publisher once `pem` is written everywhere it publishes.
    pub fn mark_published(&self, pem: &str) {
        if let Ok(mut g) = self.published.write() {
            *g = Some(pem.to_string());
        }
    }

    /// The bundle last confirmed published by this process (None: not yet, or not leading).
    pub fn published_pem(&self) -> Option<String> {
        self.published.read().ok().and_then(|g| g.clone())
    }

    fn install(&self, installed: Installed) {
        if let Ok(mut g) = self.current.write() {
            *g = Some(installed);
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// Changes whenever a new CA or bundle is installed (0 = none yet).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("CA from {origin} refused: {source}")]
    Refused {
        origin: String,
        source: podcert_core::ca::CaError,
    },
    #[error(transparent)]
    Format(#[from] SecretFormatError),
    #[error("refusing to write Secret {0} without the resourceVersion it was read at")]
    Unguarded(String),
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

fn load(m: &Material, origin: &str) -> Result<Ca, SourceError> {
    m.load(OffsetDateTime::now_utc())
        .map_err(|source| refused(origin, source))
}

fn refused(origin: &str, source: CaError) -> SourceError {
    SourceError::Refused {
        origin: origin.to_string(),
        source,
    }
}

fn read_files(
    cert: &PathBuf,
    key: &PathBuf,
    anchors: &Option<PathBuf>,
) -> Result<Material, SourceError> {
    // Bounded (1 MiB) and, for the key, permission-checked: crate::ca_files::read_ca_file.
    let read = |p: &PathBuf, is_key: bool| {
        crate::ca_files::read_ca_file(p, is_key).map_err(|source| SourceError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    Ok(Material {
        cert: read(cert, false)?,
        key: read(key, true)?,
        anchors: anchors.as_ref().map(|p| read(p, false)).transpose()?,
    })
}

fn install(handle: &CaHandle, ca: Ca, origin: &str) {
    info!(
        origin,
        fingerprint = %ca.fingerprint_sha256(),
        not_after = %podcert_core::request::wire::format_time(ca.not_after()),
        "CA loaded"
    );
    handle.set(ca);
}

/// Rotation options for callers that configure none: the default schedule for the source's
/// CA validity and a 24 h maximum leaf lifetime, always leading, no metrics or Events.
pub fn default_rotation(source: &CaSpec, signer_name: &str) -> RotationOptions {
    let validity = match source {
        CaSpec::Secret {
            bootstrap: Some(b), ..
        } => b.validity,
        _ => time::Duration::days(365),
    };
    let policy =
        RotationPolicy::new(validity, time::Duration::hours(24)).unwrap_or(RotationPolicy {
            ca_validity: validity,
            prepare_at_fraction: RotationPolicy::DEFAULT_PREPARE_AT_FRACTION,
            propagation_delay: RotationPolicy::DEFAULT_PROPAGATION_DELAY,
            max_leaf_lifetime: time::Duration::hours(24),
            min_leaf_lifetime: podcert_core::policy::MIN_LIFETIME,
            safety_margin: RotationPolicy::DEFAULT_SAFETY_MARGIN,
        });
    RotationOptions::new(policy, signer_name)
}

/// Loads the CA once (an error here is a configuration error: the caller exits), then keeps
/// it current in the background until `shutdown`, with [`default_rotation`].
pub async fn start(
    source: CaSpec,
    client: Option<kube::Client>,
    handle: Arc<CaHandle>,
    on_refused: impl Fn() + Send + Sync + 'static,
    shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, SourceError> {
    let rotation = default_rotation(&source, "");
    start_with(source, client, handle, rotation, on_refused, shutdown).await
}

/// [`start`] with rotation options: how a bootstrapped CA is rotated, leadership, metrics,
/// Events, and the published bundle whose earlier roots an external CA keeps.
pub async fn start_with(
    source: CaSpec,
    client: Option<kube::Client>,
    handle: Arc<CaHandle>,
    rotation: RotationOptions,
    on_refused: impl Fn() + Send + Sync + 'static,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, SourceError> {
    match source {
        CaSpec::Memory {
            key_type,
            trust_domain,
            validity,
        } => {
            let gen = generate_self_signed(
                key_type,
                Some(&trust_domain),
                validity,
                OffsetDateTime::now_utc(),
            )
            .map_err(|source| refused("memory", source))?;
            let m = Material {
                cert: gen.cert_pem,
                key: gen.key_pem,
                anchors: None,
            };
            install(&handle, load(&m, "memory")?, "memory");
            warn!("using an in-memory CA: every restart changes the trust anchor (demos only; use --ca-secret or --ca-cert/--ca-key)");
            Ok(tokio::spawn(async {}))
        }
        CaSpec::Files {
            cert,
            key,
            trust_anchors,
            poll,
        } => {
            let origin = format!("{} + {}", cert.display(), key.display());
            let mut rotator = Rotator::new(rotation, client.as_ref(), handle);
            let mut ext = External::default();
            let now = OffsetDateTime::now_utc();
            let first = read_files(&cert, &key, &trust_anchors)?;
            let seed = rotator.published_roots(client.as_ref(), now).await;
            ext.observe(&first, seed, rotator.policy(), now)
                .map_err(|e| refused(&origin, e))?;
            files_trigger(&mut rotator, &mut ext, client.as_ref(), now).await;
            if let Some(s) = ext.state() {
                rotator
                    .install(s, &origin, now)
                    .map_err(|e| refused(&origin, e))?;
            }
            Ok(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = shutdown.changed() => return,
                    }
                    let now = OffsetDateTime::now_utc();
                    // A mounted Secret changes by symlink swap; re-reading is cheap and robust.
                    match read_files(&cert, &key, &trust_anchors) {
                        Ok(m) if !ext.is_new(&m) => {}
                        Ok(m) => match ext.observe(&m, Seed::default(), rotator.policy(), now) {
                            Ok(t) => rotator.report(&t, None),
                            Err(e) => {
                                on_refused();
                                error!(error = %refused(&origin, e), "new CA material refused; still signing with the previous CA");
                            }
                        },
                        // Half-written files during a swap: try again next round.
                        Err(e) => warn!(error = %e, "could not re-read the CA files"),
                    }
                    let t = ext.tick(rotator.policy(), now);
                    rotator.report(&t, None);
                    files_trigger(&mut rotator, &mut ext, client.as_ref(), now).await;
                    if let Some(s) = ext.state() {
                        if let Err(e) = rotator.install(s, &origin, now) {
                            error!(error = %refused(&origin, e), "the CA cannot sign");
                        }
                    }
                }
            }))
        }
        CaSpec::Secret {
            namespace,
            name,
            bootstrap,
            poll,
        } => {
            let client = client.ok_or_else(|| {
                SourceError::Api(kube::Error::Service(
                    "a Secret-backed CA needs a Kubernetes client".into(),
                ))
            })?;
            let origin = format!("Secret {namespace}/{name}");
            let mut watcher = SecretWatcher {
                api: Api::namespaced(client.clone(), &namespace),
                name,
                origin,
                bootstrap,
                rotator: Rotator::new(rotation, Some(&client), handle),
                client,
                ext: External::default(),
                refused_at: None,
            };
            Ok(tokio::spawn(async move {
                loop {
                    let wait = match watcher.round(&on_refused).await {
                        Ok(Round::Again) => Duration::from_millis(100),
                        Ok(Round::Done) => poll,
                        Err(e) => {
                            warn!(error = %e, secret = %watcher.origin, "could not read or update the CA Secret; will retry");
                            poll
                        }
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = watcher.rotator.leader_changed() => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }))
        }
    }
}

/// Files mode has no Secret to carry a rotation request: it is read from the published
/// ClusterTrustBundle's annotations (`podcert-signer ca rotate --trust-bundle`).
async fn files_trigger(
    rotator: &mut Rotator,
    ext: &mut External,
    client: Option<&kube::Client>,
    now: OffsetDateTime,
) {
    if ext.state().is_none() {
        return;
    }
    if let Some(bundle) = rotator.read_published(client).await {
        let outcome = ext.trigger(&bundle.annotations, rotator.policy(), now);
        rotator.report_trigger(outcome, None);
    }
}

enum Round {
    Done,
    /// The Secret changed under us: read it again at once.
    Again,
}

/// Keeps the CA current from a Secret. Bootstrapped: the Secret holds the rotation state;
/// the leader acts on rotation requests, steps the state and writes it back (guarded by the
/// resourceVersion it read) before anyone signs with or publishes it; every replica
/// installs what the Secret says. Otherwise the Secret's material is external.
struct SecretWatcher {
    api: Api<Secret>,
    name: String,
    origin: String,
    bootstrap: Option<Bootstrap>,
    rotator: Rotator,
    client: kube::Client,
    ext: External,
    /// The resourceVersion whose content was last refused (counted once).
    refused_at: Option<String>,
}

impl SecretWatcher {
    async fn round(
        &mut self,
        on_refused: &(impl Fn() + Send + Sync),
    ) -> Result<Round, SourceError> {
        let now = OffsetDateTime::now_utc();
        let secret = match self.api.get_opt(&self.name).await? {
            Some(s) => s,
            None => match self.create(now).await? {
                Some(s) => s,
                None => {
                    warn!(secret = %self.origin, "CA Secret not found; not signing until it exists (or use --ca-bootstrap)");
                    return Ok(Round::Done);
                }
            },
        };
        let result = self.act(&secret, now).await;
        if let Err(
            SourceError::Refused { .. } | SourceError::Format(SecretFormatError::State { .. }),
        ) = &result
        {
            let rv = secret.metadata.resource_version.clone();
            if self.refused_at != rv {
                self.refused_at = rv;
                on_refused();
                if let Err(e) = &result {
                    error!(error = %e, "CA Secret content refused; keeping the previous CA (if any)");
                }
            }
            return Ok(Round::Done);
        }
        result
    }

    async fn act(&mut self, secret: &Secret, now: OffsetDateTime) -> Result<Round, SourceError> {
        let origin = self.origin.clone();
        let (stored, state) = match ca_secret::read(secret, &origin)? {
            SecretCa::State(s) => (Some(*s.clone()), *s),
            // A Secret from before rotation existed: adopt it (written by the leader below).
            SecretCa::Material(m) if self.bootstrap.is_some() => {
                let s = RotationState::adopt(
                    &m.cert,
                    &m.key,
                    m.anchors.as_deref(),
                    CaOrigin::Generated,
                    now,
                )
                .map_err(|e| refused(&origin, e))?;
                (None, s)
            }
            SecretCa::Material(m) => return self.external(secret, &m, now).await,
        };
        let state = match &self.bootstrap {
            Some(b) if self.rotator.is_leader() => {
                let b = b.clone();
                match self.lead(secret, &b, &state, stored.as_ref(), now).await {
                    Ok(Some(next)) => next,
                    Ok(None) => return Ok(Round::Again),
                    Err(e) => {
                        // What the Secret says (or the same CA, adopted) is still safe to use.
                        self.rotator
                            .install(&state, &origin, now)
                            .map_err(|e| refused(&origin, e))?;
                        return Err(e);
                    }
                }
            }
            _ => state,
        };
        self.rotator
            .install(&state, &origin, now)
            .map_err(|e| refused(&origin, e))?;
        Ok(Round::Done)
    }

    /// The leader's part: acts on a rotation request, holds an unpublished CA back, steps the
    /// state and writes it if it changed. Returns the state to use, or None when the Secret
    /// changed since it was read (nothing written; read it again).
    async fn lead(
        &mut self,
        secret: &Secret,
        b: &Bootstrap,
        state: &RotationState,
        stored: Option<&RotationState>,
        now: OffsetDateTime,
    ) -> Result<Option<RotationState>, SourceError> {
        let mut generate = |at: OffsetDateTime, validity: time::Duration| {
            generate_self_signed(b.key_type, Some(&b.trust_domain), validity, at)
        };
        let reference = secret.object_ref(&());
        let empty = Default::default();
        let annotations = secret.metadata.annotations.as_ref().unwrap_or(&empty);
        let policy = self.rotator.policy().clone();
        let mut transitions = Vec::new();
        let mut state = state.clone();
        match handle_trigger(annotations, &state, &policy, now, &mut generate) {
            TriggerOutcome::Idle => {}
            TriggerOutcome::Done {
                state: s,
                transitions: t,
            } => {
                state = s;
                transitions.extend(t);
            }
            TriggerOutcome::Refused { state: s, reason } => {
                state = s;
                self.rotator.refused(&reason, Some(&reference));
            }
            TriggerOutcome::Retry(e) => {
                warn!(error = %e, "could not act on the rotation request; retrying")
            }
        }
        if let Some(published) = self.rotator.publication() {
            if let Some(held) = hold_back(&state, published.as_deref(), &policy, now) {
                warn!(secret = %self.origin, "the prepared CA's root is not confirmed published yet; holding its activation back");
                state = held;
            }
        }
        let (state, t) = step(&state, &policy, now, &mut generate);
        transitions.extend(t);
        if stored != Some(&state) {
            // Abandoned if leadership ends meanwhile: then read again, as a follower.
            let write = write_state(&self.api, secret, &state);
            let Some(written) = crate::leader::while_leading(self.rotator.leader(), write).await
            else {
                return Ok(None);
            };
            match written? {
                WriteOutcome::Written(_) => {}
                WriteOutcome::Conflict => {
                    info!(secret = %self.origin, "the CA Secret changed since it was read; reading it again");
                    return Ok(None);
                }
            }
        }
        self.rotator.report(&transitions, Some(&reference));
        Ok(Some(state))
    }

    /// Material written by someone else: sign with the newest at once, keep earlier roots.
    async fn external(
        &mut self,
        secret: &Secret,
        m: &Material,
        now: OffsetDateTime,
    ) -> Result<Round, SourceError> {
        let reference = secret.object_ref(&());
        if self.ext.is_new(m) {
            let seed = match self.ext.state() {
                None => self.rotator.published_roots(Some(&self.client), now).await,
                Some(_) => Seed::default(),
            };
            let t = self
                .ext
                .observe(m, seed, self.rotator.policy(), now)
                .map_err(|e| refused(&self.origin, e))?;
            self.rotator.report(&t, Some(&reference));
        }
        let t = self.ext.tick(self.rotator.policy(), now);
        self.rotator.report(&t, Some(&reference));
        // An earlier root can be dropped in an emergency (`ca rotate --emergency`).
        let empty = BTreeMap::new();
        let annotations = secret.metadata.annotations.as_ref().unwrap_or(&empty);
        let outcome = self.ext.trigger(annotations, self.rotator.policy(), now);
        self.rotator.report_trigger(outcome, Some(&reference));
        if let Some(s) = self.ext.state() {
            self.rotator
                .install(s, &self.origin, now)
                .map_err(|e| refused(&self.origin, e))?;
        }
        Ok(Round::Done)
    }

    /// Creates the Secret with a fresh CA when bootstrapping. A plain create: when replicas
    /// race, one wins and the others get 409 and read the winner's.
    async fn create(&self, now: OffsetDateTime) -> Result<Option<Secret>, SourceError> {
        let Some(b) = &self.bootstrap else {
            return Ok(None);
        };
        let gen = generate_self_signed(b.key_type, Some(&b.trust_domain), b.validity, now)
            .map_err(|e| refused(&self.origin, e))?;
        let state = RotationState::bootstrap(&gen, now).map_err(|e| refused(&self.origin, e))?;
        let secret = ca_secret::new_secret(&self.name, &state)?;
        match self.api.create(&PostParams::default(), &secret).await {
            Ok(created) => {
                info!(secret = %self.origin, "bootstrapped a new CA into the Secret");
                Ok(Some(created))
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(self.api.get_opt(&self.name).await?),
            Err(e) => Err(e.into()),
        }
    }
}
