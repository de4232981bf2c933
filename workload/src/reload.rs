//! Following the kubelet's rotations of the projected files.
//!
//! The kubelet swaps a `..data` symlink (or renames files) to publish new contents, so inotify
//! on the file path is unreliable; re-reading the bytes every poll and comparing them is simple
//! and sees every swap. New material is parsed and checked before it replaces the old one: a
//! half-written or invalid file is refused with one log line and the previous material stays.

use crate::bundle::{
    parse_credential_bundle, parse_trust_bundle, BundleError, Credential, TrustBundle,
};
use rustls::crypto::CryptoProvider;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("could not read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is refused: {source}", .path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: BundleError,
    },
}

/// What one poll of a file did.
#[derive(Debug)]
pub enum PollOutcome {
    Unchanged,
    Reloaded,
    /// The new contents were refused (or the file was unreadable); the previous material stays.
    Refused(LoadError),
}

type Parser<T> = Box<dyn Fn(&[u8]) -> Result<T, BundleError> + Send + Sync>;

/// A file's current, valid contents, replaced atomically when the file changes.
pub struct Watched<T> {
    path: PathBuf,
    parse: Parser<T>,
    current: RwLock<Arc<T>>,
    /// The last bytes we looked at, valid or not: a refused file is logged once, not every poll.
    last_seen: Mutex<Vec<u8>>,
}

impl<T> Watched<T> {
    /// Reads and parses the file now; fails if it is missing or invalid (nothing to fall
    /// back on at start-up).
    pub fn load(
        path: &Path,
        parse: impl Fn(&[u8]) -> Result<T, BundleError> + Send + Sync + 'static,
    ) -> Result<Self, LoadError> {
        let bytes = read(path)?;
        let value = parse(&bytes).map_err(|source| LoadError::Invalid {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Watched {
            path: path.to_path_buf(),
            parse: Box::new(parse),
            current: RwLock::new(Arc::new(value)),
            last_seen: Mutex::new(bytes),
        })
    }

    /// The current material.
    pub fn get(&self) -> Arc<T> {
        // A poisoned lock still holds a complete Arc (replacing it cannot panic halfway).
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file; swaps in its contents if they changed and are valid.
    pub fn poll(&self) -> PollOutcome {
        let bytes = match read(&self.path) {
            Ok(b) => b,
            Err(e) => return PollOutcome::Refused(e),
        };
        let mut last = match self.last_seen.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if *last == bytes {
            return PollOutcome::Unchanged;
        }
        let parsed = (self.parse)(&bytes);
        *last = bytes;
        match parsed {
            Ok(value) => {
                let value = Arc::new(value);
                match self.current.write() {
                    Ok(mut g) => *g = value,
                    Err(p) => *p.into_inner() = value,
                }
                PollOutcome::Reloaded
            }
            Err(source) => PollOutcome::Refused(LoadError::Invalid {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Both projected files of a workload.
pub struct Material {
    pub credential: Watched<Credential>,
    pub trust: Watched<TrustBundle>,
    /// Whether the last poll of each file failed to read, so a missing file is logged once.
    read_failing: Mutex<[bool; 2]>,
}

impl Material {
    /// Loads both files; either being missing or invalid is an error.
    pub fn load(
        credential_bundle: &Path,
        trust_bundle: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<Self>, LoadError> {
        let credential = Watched::load(credential_bundle, move |b| {
            parse_credential_bundle(b, &provider)
        })?;
        let trust = Watched::load(trust_bundle, parse_trust_bundle)?;
        Ok(Arc::new(Material {
            credential,
            trust,
            read_failing: Mutex::new([false; 2]),
        }))
    }

    /// Polls both files once and logs what changed. Returns the two outcomes
    /// (credential, trust) for callers that want to know.
    pub fn poll(&self) -> (PollOutcome, PollOutcome) {
        let cred = self.credential.poll();
        match &cred {
            PollOutcome::Reloaded => {
                let c = self.credential.get();
                tracing::info!(
                    spiffe_id = %c.spiffe_id,
                    serial = %c.serial_hex,
                    "credential bundle reloaded"
                );
            }
            PollOutcome::Refused(e) => self.log_refused(0, e),
            PollOutcome::Unchanged => self.clear_read_failing(0),
        }
        let trust = self.trust.poll();
        match &trust {
            PollOutcome::Reloaded => tracing::info!(
                anchors = self.trust.get().anchors.len(),
                "trust bundle reloaded"
            ),
            PollOutcome::Refused(e) => self.log_refused(1, e),
            PollOutcome::Unchanged => self.clear_read_failing(1),
        }
        (cred, trust)
    }

    fn log_refused(&self, which: usize, e: &LoadError) {
        let mut failing = match self.read_failing.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match e {
            // Unreadable: log on the transition only, or a missing file floods the log.
            LoadError::Read { .. } if failing[which] => {}
            LoadError::Read { .. } => {
                failing[which] = true;
                tracing::warn!(error = %e, "keeping the previous material");
            }
            LoadError::Invalid { .. } => {
                failing[which] = false;
                tracing::warn!(error = %e, "keeping the previous material");
            }
        }
    }

    fn clear_read_failing(&self, which: usize) {
        if let Ok(mut g) = self.read_failing.lock() {
            g[which] = false;
        }
    }

    /// Polls both files every `interval` until `shutdown` resolves.
    pub fn spawn_reloader(
        self: &Arc<Self>,
        interval: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = ticker.tick() => {
                        // File reads and parsing are blocking but small (a few KiB).
                        me.poll();
                    }
                }
            }
        })
    }
}
