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
/// Cancellation is seen between rounds, never inside one: a round that has started (say, a
/// guarded write of the rotation state) finishes.
async fn drive<B: CaBackend>(mut backend: B, tasks: &Tasks) -> Result<(), SourceError> {
    let mut next = backend.load().await?;
    let cancel = tasks.token();
    tasks.spawn_graceful(async move {
        loop {
            let Next::After(wait) = next else { return };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = backend.wake() => {}
                _ = cancel.cancelled() => return,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::sync::Notify;

    /// Counts rounds; a round takes `round_time`; `wake` fires on `poke`.
    struct Fake {
        first: Result<Next, ()>,
        every: Next,
        rounds: Arc<AtomicU32>,
        finished: Arc<AtomicU32>,
        round_time: Duration,
        poke: Arc<Notify>,
    }

    impl CaBackend for Fake {
        async fn load(&mut self) -> Result<Next, SourceError> {
            self.first
                .map_err(|()| SourceError::Unguarded("fake".into()))
        }
        async fn refresh(&mut self) -> Next {
            self.rounds.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.round_time).await;
            self.finished.fetch_add(1, Ordering::SeqCst);
            self.every
        }
        async fn wake(&mut self) {
            self.poke.notified().await
        }
    }

    fn fake(
        first: Result<Next, ()>,
        every: Next,
        round_time: Duration,
    ) -> (Fake, Arc<AtomicU32>, Arc<AtomicU32>, Arc<Notify>) {
        let (rounds, finished, poke) = (Arc::default(), Arc::default(), Arc::new(Notify::new()));
        let f = Fake {
            first,
            every,
            rounds: Arc::clone(&rounds),
            finished: Arc::clone(&finished),
            round_time,
            poke: Arc::clone(&poke),
        };
        (f, rounds, finished, poke)
    }

    const HOUR: Duration = Duration::from_secs(3600);
    /// Long enough for a spawned task to run its next step on a loaded machine.
    const SETTLE: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn a_load_error_is_returned_and_nothing_runs() {
        let tasks = Tasks::new();
        let (f, rounds, _, _) = fake(Err(()), Next::After(Duration::ZERO), Duration::ZERO);
        assert!(drive(f, &tasks).await.is_err());
        tokio::time::sleep(SETTLE).await;
        assert!(tasks.stop(Duration::from_secs(5)).await);
        assert_eq!(rounds.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn rounds_follow_the_schedule_and_wake_runs_one_early() {
        let tasks = Tasks::new();
        let (f, rounds, _, poke) = fake(
            Ok(Next::After(Duration::ZERO)),
            Next::After(HOUR),
            Duration::ZERO,
        );
        drive(f, &tasks).await.unwrap();
        tokio::time::sleep(SETTLE).await;
        assert_eq!(
            rounds.load(Ordering::SeqCst),
            1,
            "the first round runs at once"
        );
        tokio::time::sleep(SETTLE).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 1, "the next waits its hour");
        poke.notify_one();
        tokio::time::sleep(SETTLE).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 2, "wake runs it early");
        assert!(tasks.stop(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn never_means_no_task() {
        let tasks = Tasks::new();
        let (f, rounds, _, poke) =
            fake(Ok(Next::Never), Next::After(Duration::ZERO), Duration::ZERO);
        drive(f, &tasks).await.unwrap();
        poke.notify_one();
        tokio::time::sleep(SETTLE).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 0);
        assert!(tasks.stop(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn cancellation_lets_a_started_round_finish_and_starts_no_other() {
        let tasks = Tasks::new();
        let (f, rounds, finished, _) = fake(
            Ok(Next::After(Duration::ZERO)),
            Next::After(Duration::ZERO),
            Duration::from_secs(1),
        );
        drive(f, &tasks).await.unwrap();
        tokio::time::sleep(SETTLE).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 1);
        assert!(tasks.stop(Duration::from_secs(10)).await);
        assert_eq!(
            rounds.load(Ordering::SeqCst),
            1,
            "no round after cancellation"
        );
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "the round in progress completed"
        );
    }
}
