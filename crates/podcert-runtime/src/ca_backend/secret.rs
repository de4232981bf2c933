//! A `kubernetes.io/tls` Secret. Bootstrapped (`--ca-bootstrap`, `bootstrap:` in a
//! PodCertificateSigner): the Secret holds the rotation state; the leader acts on rotation
//! requests, steps the state and writes it back (guarded by the resourceVersion it read)
//! before anyone signs with or publishes it; every replica installs what the Secret says.
//! Otherwise the Secret's material is external, as in files mode.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::Resource;
use time::OffsetDateTime;
use tracing::{error, info, warn};

use podcert_core::ca::{generate_self_signed, CaError, GeneratedCa, Material};
use podcert_core::rotation::{handle_trigger, step, CaOrigin, RotationState, TriggerOutcome};
use podcert_k8s::ca_secret::{self, SecretCa, SecretFormatError};
use podcert_k8s::settings::Bootstrap;

use super::pkcs11::TokenCa;
use super::rotation::{hold_back, External, Rotator, Seed};
use super::secret_write::{write_state, WriteOutcome};
use super::{refused, CaBackend, Next, OnRefused, SourceError};

enum Round {
    Done,
    /// The Secret changed under us: read it again at once.
    Again,
}

/// Keeps the CA current from a Secret. Bootstrapped: the Secret holds the rotation state;
/// the leader acts on rotation requests, steps the state and writes it back (guarded by the
/// resourceVersion it read) before anyone signs with or publishes it; every replica
/// installs what the Secret says. Otherwise the Secret's material is external.
pub struct SecretBackend {
    api: Api<Secret>,
    name: String,
    origin: String,
    bootstrap: Option<Bootstrap>,
    rotator: Rotator,
    client: kube::Client,
    ext: External,
    /// The resourceVersion whose content was last refused (counted once).
    refused_at: Option<String>,
    poll: Duration,
    on_refused: OnRefused,
    /// The CA keys are in this token (generated there when bootstrapping and rotating).
    token: Option<TokenCa>,
}

impl SecretBackend {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        client: kube::Client,
        namespace: &str,
        name: String,
        bootstrap: Option<Bootstrap>,
        poll: Duration,
        rotator: Rotator,
        on_refused: OnRefused,
        token: Option<TokenCa>,
    ) -> Self {
        SecretBackend {
            api: Api::namespaced(client.clone(), namespace),
            origin: format!("Secret {namespace}/{name}"),
            name,
            bootstrap,
            rotator,
            client,
            ext: External::default(),
            refused_at: None,
            poll,
            on_refused,
            token,
        }
    }

    /// A fresh CA: its key in the token if there is one, else in memory (PEM).
    fn generate(
        &self,
        b: &Bootstrap,
        validity: time::Duration,
        at: OffsetDateTime,
    ) -> Result<GeneratedCa, CaError> {
        match &self.token {
            Some(t) => t.generate(b.key_type, &b.trust_domain, validity, at),
            None => generate_self_signed(b.key_type, Some(&b.trust_domain), validity, at),
        }
    }
}

impl CaBackend for SecretBackend {
    /// The Secret may not exist yet (or the API be briefly unreachable): the first round runs
    /// at once in the background and retries; the signer is not ready until a CA is installed.
    async fn load(&mut self) -> Result<Next, SourceError> {
        Ok(Next::After(Duration::ZERO))
    }

    async fn refresh(&mut self) -> Next {
        Next::After(match self.round().await {
            Ok(Round::Again) => Duration::from_millis(100),
            Ok(Round::Done) => self.poll,
            Err(e) => {
                warn!(error = %e, secret = %self.origin, "could not read or update the CA Secret; will retry");
                self.poll
            }
        })
    }

    async fn wake(&mut self) {
        self.rotator.leader_changed().await
    }
}

impl SecretBackend {
    async fn round(&mut self) -> Result<Round, SourceError> {
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
                (self.on_refused)();
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
                let s = RotationState::adopt_with(
                    &m.cert,
                    &m.key,
                    m.anchors.as_deref(),
                    CaOrigin::Generated,
                    now,
                    self.rotator.resolver(),
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
        let this = &*self;
        let mut generate =
            |at: OffsetDateTime, validity: time::Duration| this.generate(b, validity, at);
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
                WriteOutcome::Written(_) => {
                    if let (Some(t), Some(before)) = (&self.token, stored) {
                        t.delete_dropped(before, &state);
                    }
                }
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
                .observe(m, seed, self.rotator.policy(), now, self.rotator.resolver())
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
        let gen = self
            .generate(b, b.validity, now)
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
