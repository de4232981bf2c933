//! Files mode with the key in a PKCS#11 token: the certificate (and trust anchors) are files,
//! re-read every poll as in [`super::files`]; the key is a `pkcs11:` URI opened through
//! [`podcert_pkcs11::Pkcs11Resolver`], so every CA signature is the token's (C_Sign).
//!
//! Every poll the token is probed (one signature): while it cannot sign, the signer is not
//! ready and [`CaHandle::key_problem`] says why. Requests are not failed meanwhile: a failed
//! signature is a transient issuance error, retried with backoff, and issuance resumes once
//! the token answers again (a lost session is reopened, a removed token found again by
//! re-initialising the module).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use tracing::{info, warn};

use podcert_core::rotation::RotationState;
use podcert_k8s::settings::{PinSecret, Pkcs11KeyRef};
use podcert_pkcs11::{Pin, Pkcs11Resolver, Pkcs11Uri};

use super::files::{CaFiles, FilesBackend};
use super::rotation::{RotationOptions, Rotator};
use super::{CaBackend, CaHandle, Next, OnRefused, SourceError};

/// A token whose keys a Secret-backed CA uses: bootstrapped and rotated CAs' keys are
/// generated there ([`podcert_pkcs11::ca`]), and deleted when their CA is dropped.
pub struct TokenCa {
    pub base: Pkcs11Uri,
    pub resolver: Arc<Pkcs11Resolver>,
}

impl TokenCa {
    pub(super) async fn open(
        key: &Pkcs11KeyRef,
        client: Option<&kube::Client>,
        sessions: usize,
    ) -> Result<TokenCa, SourceError> {
        let base = Pkcs11Uri::parse(&key.uri).map_err(|e| SourceError::Pin(e.to_string()))?;
        let pin = match &key.pin_secret {
            Some(s) => Some(read_pin(client, s).await?),
            None => None,
        };
        Ok(TokenCa {
            base,
            resolver: Arc::new(Pkcs11Resolver::new(pin, sessions + 1)),
        })
    }

    /// A new CA whose key is generated in the token (blocking: a rare event).
    pub(super) fn generate(
        &self,
        key_type: podcert_core::ca::CaKeyType,
        trust_domain: &str,
        validity: time::Duration,
        now: time::OffsetDateTime,
    ) -> Result<podcert_core::ca::GeneratedCa, podcert_core::ca::CaError> {
        podcert_pkcs11::ca::generate_ca(
            &self.base,
            self.resolver.pin(),
            key_type,
            Some(trust_domain),
            validity,
            now,
        )
        .map_err(|e| podcert_core::ca::CaError::Generate(e.to_string()))
    }

    /// Deletes the keys of CAs that `before` had and `after` has not: dropped from the
    /// rotation state, so no leaf they signed is trusted any more.
    pub(super) fn delete_dropped(&self, before: &RotationState, after: &RotationState) {
        let kept: Vec<&str> = after
            .records()
            .map(|r| r.fingerprint_sha256.as_str())
            .collect();
        for r in before.records() {
            let fp = &r.fingerprint_sha256;
            if kept.contains(&fp.as_str()) {
                continue;
            }
            let label = podcert_pkcs11::ca::label_for(&self.base, fp);
            self.resolver
                .forget(&self.base.with_object(&label).to_string());
            match podcert_pkcs11::ca::destroy_ca_key(&self.base, self.resolver.pin(), fp) {
                Ok(true) => {
                    info!(fingerprint = %fp, label = %label, "deleted the dropped CA's key from the token")
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(fingerprint = %fp, error = %e, "could not delete the dropped CA's key from the token")
                }
            }
        }
    }
}

pub struct Pkcs11Backend {
    files: FilesBackend,
    resolver: Arc<Pkcs11Resolver>,
    uri: String,
    handle: Arc<CaHandle>,
}

impl Pkcs11Backend {
    /// Reads the PIN Secret (if the URI has no pin-source); the token is opened by `load`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn new(
        files: CaFiles,
        key: Pkcs11KeyRef,
        poll: Duration,
        client: Option<kube::Client>,
        rotation: RotationOptions,
        handle: Arc<CaHandle>,
        on_refused: OnRefused,
        sessions: usize,
    ) -> Result<Self, SourceError> {
        let pin = match &key.pin_secret {
            Some(s) => Some(read_pin(client.as_ref(), s).await?),
            None => None,
        };
        // One more session than signing workers: the readiness probe.
        let resolver = Arc::new(Pkcs11Resolver::new(pin, sessions + 1));
        let rotator =
            Rotator::new(rotation, client.as_ref(), handle.clone()).with_resolver(resolver.clone());
        Ok(Pkcs11Backend {
            files: FilesBackend::new(files, poll, client, rotator, on_refused),
            resolver,
            uri: key.uri,
            handle,
        })
    }

    /// One probe signature off the async threads; records the outcome in the handle.
    async fn probe(&self) {
        let resolver = self.resolver.clone();
        let uri = self.uri.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            resolver
                .key(&uri)
                .map_err(|e| e.to_string())
                .and_then(|k| k.probe().map_err(|e| e.to_string()))
        })
        .await
        .unwrap_or_else(|e| Err(format!("the probe did not finish ({e})")));
        let problem = outcome.err();
        let before = self.handle.key_problem();
        match (&before, &problem) {
            (None, Some(p)) => {
                warn!(reason = %p, "the CA key's token cannot sign; not ready, requests wait")
            }
            (Some(_), None) => info!(uri = %self.uri, "the CA key's token signs again"),
            _ => {}
        }
        if before != problem {
            self.handle.set_key_problem(problem);
        }
    }
}

/// The PIN from a Secret in the signer's namespace: the key's bytes, one trailing line end
/// dropped (`kubectl create secret --from-file` keeps the file's newline).
pub(super) async fn read_pin(
    client: Option<&kube::Client>,
    s: &PinSecret,
) -> Result<Pin, SourceError> {
    let client =
        client.ok_or_else(|| SourceError::Pin("a PIN Secret needs a Kubernetes client".into()))?;
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), &s.namespace);
    let secret = api.get(&s.name).await?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&s.key))
        .ok_or_else(|| {
            SourceError::Pin(format!(
                "Secret {}/{} has no key {:?}",
                s.namespace, s.name, s.key
            ))
        })?;
    let text = std::str::from_utf8(&bytes.0).map_err(|_| {
        SourceError::Pin(format!(
            "Secret {}/{} key {:?} is not UTF-8",
            s.namespace, s.name, s.key
        ))
    })?;
    let pin = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text);
    if pin.is_empty() {
        return Err(SourceError::Pin(format!(
            "Secret {}/{} key {:?} is empty",
            s.namespace, s.name, s.key
        )));
    }
    Ok(Pin::new(pin))
}

impl CaBackend for Pkcs11Backend {
    async fn load(&mut self) -> Result<Next, SourceError> {
        let next = self.files.load().await?;
        self.probe().await;
        Ok(next)
    }

    async fn refresh(&mut self) -> Next {
        let next = self.files.refresh().await;
        self.probe().await;
        next
    }
}
