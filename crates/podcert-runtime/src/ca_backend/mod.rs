//! Where a signer's CA comes from at run time, behind one trait: [`CaBackend`]. A backend
//! loads material and keeps it current; the one driver here ([`start`]) runs it in the
//! signer's task scope, and the rotation driver ([`rotation::Rotator`]) installs what it
//! finds into the signer's [`CaHandle`] and reports every phase change. Backends today:
//! [`memory`] (demos), [`files`] (reloaded when a mounted Secret changes them), [`pkcs11`]
//! (files mode with the key in a PKCS#11 token, probed for readiness) and [`secret`]
//! (a `kubernetes.io/tls` Secret, optionally bootstrapped and then rotated by the leader with
//! the state kept in the Secret). New material that fails the checks is refused loudly and the
//! old CA kept; replaced external material keeps its root published until its leaves expire.
//!
//! Adding a backend: a variant of [`podcert_k8s::settings::CaSpec`], an implementation of
//! [`CaBackend`] in a module here, and its arm in [`start`].

pub mod files;
pub mod handle;
pub mod memory;
pub mod pkcs11;
pub mod rotation;
pub mod secret;
pub mod secret_write;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use podcert_core::ca::{Ca, CaError, Material};
use podcert_k8s::ca_secret::SecretFormatError;
use podcert_k8s::settings::CaSpec;

use crate::tasks::Tasks;
pub use handle::{BundleContent, CaHandle};
use rotation::{RotationOptions, Rotator};

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
    #[error("the PKCS#11 PIN: {0}")]
    Pin(String),
}

/// When the driver runs a backend's next round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// After this long, or earlier when [`CaBackend::wake`] resolves.
    After(Duration),
    /// Never: the material cannot change (memory).
    Never,
}

/// Called once per refused piece of new material (the signer's reload-error counter).
pub type OnRefused = Arc<dyn Fn() + Send + Sync>;

/// One source of CA material. A backend reports readiness by installing a CA into the handle
/// (through its [`Rotator`]); the signer's `/readyz` check and the trust-bundle publisher
/// follow the handle.
pub trait CaBackend: Send + 'static {
    /// The first load, before anything signs. An error is a configuration error: the signer
    /// does not start. `Ok` says when to run the first [`CaBackend::refresh`].
    fn load(&mut self) -> impl Future<Output = Result<Next, SourceError>> + Send;

    /// One round: re-read the material, act on rotation requests, step a rotation (leader
    /// only) and install the result. Failures are logged and counted here, not returned: the
    /// previous CA keeps signing.
    fn refresh(&mut self) -> impl Future<Output = Next> + Send;

    /// Resolves when a round should run before its time (leadership changed). Never, by
    /// default.
    fn wake(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// Builds the backend `spec` names, loads it (`key_sessions`: how many signatures a token key
/// may make at once, the controller's concurrency) (an error here is a configuration error: the
/// caller does not start the signer) and keeps it current in `tasks` until it is cancelled.
pub async fn start(
    spec: CaSpec,
    client: Option<kube::Client>,
    handle: Arc<CaHandle>,
    rotation: RotationOptions,
    on_refused: OnRefused,
    key_sessions: usize,
    tasks: &Tasks,
) -> Result<(), SourceError> {
    match spec {
        CaSpec::Memory {
            key_type,
            trust_domain,
            validity,
        } => {
            let b = memory::MemoryBackend::new(key_type, trust_domain, validity, handle);
            drive(b, tasks).await
        }
        CaSpec::Files {
            cert,
            key,
            trust_anchors,
            poll,
        } => {
            let rotator = Rotator::new(rotation, client.as_ref(), handle);
            let b = files::FilesBackend::new(
                files::CaFiles {
                    cert,
                    key: files::CaKeySource::File(key),
                    trust_anchors,
                },
                poll,
                client,
                rotator,
                on_refused,
            );
            drive(b, tasks).await
        }
        CaSpec::Pkcs11 {
            cert,
            key,
            trust_anchors,
            poll,
        } => {
            let b = pkcs11::Pkcs11Backend::new(
                files::CaFiles {
                    cert,
                    key: files::CaKeySource::Reference(key.uri.clone()),
                    trust_anchors,
                },
                key,
                poll,
                client,
                rotation,
                handle,
                on_refused,
                key_sessions,
            )
            .await?;
            drive(b, tasks).await
        }
        CaSpec::Secret {
            namespace,
            name,
            bootstrap,
            poll,
            pkcs11: token_key,
        } => {
            let client = client.ok_or_else(|| {
                SourceError::Api(kube::Error::Service(
                    "a Secret-backed CA needs a Kubernetes client".into(),
                ))
            })?;
            let mut rotator = Rotator::new(rotation, Some(&client), handle);
            let token = match token_key {
                Some(k) => {
                    let t = pkcs11::TokenCa::open(&k, Some(&client), key_sessions).await?;
                    rotator = rotator.with_resolver(t.resolver.clone());
                    Some(t)
                }
                None => None,
            };
            let b = secret::SecretBackend::new(
                client, &namespace, name, bootstrap, poll, rotator, on_refused, token,
            );
            drive(b, tasks).await
        }
    }
}

/// The one driver: load, then refresh on the backend's schedule until `tasks` is cancelled.
async fn drive<B: CaBackend>(mut backend: B, tasks: &Tasks) -> Result<(), SourceError> {
    let mut next = backend.load().await?;
    tasks.spawn(async move {
        loop {
            let Next::After(wait) = next else { return };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = backend.wake() => {}
            }
            next = backend.refresh().await;
        }
    });
    Ok(())
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
