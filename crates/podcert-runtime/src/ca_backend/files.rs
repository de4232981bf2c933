//! CA files (certificate, key, optional trust anchors), re-read every poll: a mounted Secret
//! changes them by symlink swap. Reads are bounded and the key's permissions checked
//! ([`crate::ca_files`]). The material is external: new material signs at once and the
//! replaced root stays published until its leaves expire.

use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;
use tracing::{error, warn};

use podcert_core::ca::Material;

use super::rotation::{External, Rotator, Seed};
use super::{refused, CaBackend, Next, OnRefused, SourceError};

/// Where the material is.
#[derive(Debug, Clone)]
pub struct CaFiles {
    pub cert: PathBuf,
    pub key: CaKeySource,
    pub trust_anchors: Option<PathBuf>,
}

/// The key: a PEM file, or a reference the rotator's resolver opens (a `pkcs11:` URI).
#[derive(Debug, Clone)]
pub enum CaKeySource {
    File(PathBuf),
    Reference(String),
}

impl std::fmt::Display for CaKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaKeySource::File(p) => write!(f, "{}", p.display()),
            CaKeySource::Reference(r) => f.write_str(r),
        }
    }
}

impl CaFiles {
    fn read(&self) -> Result<Material, SourceError> {
        let read = |p: &PathBuf, is_key: bool| {
            crate::ca_files::read_ca_file(p, is_key).map_err(|source| SourceError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        Ok(Material {
            cert: read(&self.cert, false)?,
            key: match &self.key {
                CaKeySource::File(p) => read(p, true)?,
                CaKeySource::Reference(r) => r.clone(),
            },
            anchors: self
                .trust_anchors
                .as_ref()
                .map(|p| read(p, false))
                .transpose()?,
        })
    }
}

pub struct FilesBackend {
    files: CaFiles,
    origin: String,
    poll: Duration,
    client: Option<kube::Client>,
    rotator: Rotator,
    ext: External,
    on_refused: OnRefused,
}

impl FilesBackend {
    pub(super) fn new(
        files: CaFiles,
        poll: Duration,
        client: Option<kube::Client>,
        rotator: Rotator,
        on_refused: OnRefused,
    ) -> Self {
        FilesBackend {
            origin: format!("{} + {}", files.cert.display(), files.key),
            files,
            poll,
            client,
            rotator,
            ext: External::default(),
            on_refused,
        }
    }

    /// Files mode has no Secret to carry a rotation request: it is read from the published
    /// ClusterTrustBundle's annotations (`podcert-signer ca rotate --trust-bundle`).
    async fn trigger(&mut self, now: OffsetDateTime) {
        if self.ext.state().is_none() {
            return;
        }
        if let Some(bundle) = self.rotator.read_published(self.client.as_ref()).await {
            let outcome = self
                .ext
                .trigger(&bundle.annotations, self.rotator.policy(), now);
            self.rotator.report_trigger(outcome, None);
        }
    }
}

impl CaBackend for FilesBackend {
    async fn load(&mut self) -> Result<Next, SourceError> {
        let now = OffsetDateTime::now_utc();
        let first = self.files.read()?;
        let seed = self
            .rotator
            .published_roots(self.client.as_ref(), now)
            .await;
        self.ext
            .observe(
                &first,
                seed,
                self.rotator.policy(),
                now,
                self.rotator.resolver(),
            )
            .map_err(|e| refused(&self.origin, e))?;
        self.trigger(now).await;
        if let Some(s) = self.ext.state() {
            self.rotator
                .install(s, &self.origin, now)
                .map_err(|e| refused(&self.origin, e))?;
        }
        Ok(Next::After(self.poll))
    }

    async fn refresh(&mut self) -> Next {
        let now = OffsetDateTime::now_utc();
        // A mounted Secret changes by symlink swap; re-reading is cheap and robust.
        match self.files.read() {
            Ok(m) if !self.ext.is_new(&m) => {}
            Ok(m) => match self.ext.observe(
                &m,
                Seed::default(),
                self.rotator.policy(),
                now,
                self.rotator.resolver(),
            ) {
                Ok(t) => self.rotator.report(&t, None),
                Err(e) => {
                    (self.on_refused)();
                    error!(error = %refused(&self.origin, e), "new CA material refused; still signing with the previous CA");
                }
            },
            // Half-written files during a swap: try again next round.
            Err(e) => warn!(error = %e, "could not re-read the CA files"),
        }
        let t = self.ext.tick(self.rotator.policy(), now);
        self.rotator.report(&t, None);
        self.trigger(now).await;
        if let Some(s) = self.ext.state() {
            if let Err(e) = self.rotator.install(s, &self.origin, now) {
                error!(error = %refused(&self.origin, e), "the CA cannot sign");
            }
        }
        Next::After(self.poll)
    }
}
