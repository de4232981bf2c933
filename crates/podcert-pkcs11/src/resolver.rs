//! `pkcs11:` key references for podcert-core: each URI is opened once and its key (and
//! session pool) shared by every CA loaded from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use podcert_core::ca::{CaError, KeyResolver, RemoteKey};

use crate::key::{Pin, Pkcs11Key};
use crate::uri::{is_pkcs11_uri, Pkcs11Uri};

/// Resolves `pkcs11:` URIs; other key text is left to the PEM reader.
pub struct Pkcs11Resolver {
    /// For URIs without `pin-source` (a PodCertificateSigner's `pinSecretRef`).
    pin: Option<Pin>,
    max_sessions: usize,
    opened: Mutex<HashMap<String, Pkcs11Key>>,
}

impl Pkcs11Resolver {
    pub fn new(pin: Option<Pin>, max_sessions: usize) -> Pkcs11Resolver {
        Pkcs11Resolver {
            pin,
            max_sessions,
            opened: Mutex::new(HashMap::new()),
        }
    }

    /// The key opened for `uri`, opening it if it is not yet.
    pub fn key(&self, uri: &str) -> Result<Pkcs11Key, CaError> {
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = opened.get(uri.trim()) {
            return Ok(k.clone());
        }
        let parsed = Pkcs11Uri::parse(uri.trim()).map_err(|e| CaError::BadKey(e.to_string()))?;
        let key = Pkcs11Key::open(&parsed, self.pin.clone(), self.max_sessions)
            .map_err(|e| CaError::KeyUnavailable(e.to_string()))?;
        opened.insert(uri.trim().to_string(), key.clone());
        Ok(key)
    }

    /// Drops the opened key for `uri` (it was deleted from the token).
    pub fn forget(&self, uri: &str) {
        self.opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uri.trim());
    }

    /// The PIN given for URIs without pin-source.
    pub fn pin(&self) -> Option<Pin> {
        self.pin.clone()
    }

    /// Every key opened so far (readiness asks each whether it is reachable).
    pub fn keys(&self) -> Vec<Pkcs11Key> {
        self.opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

impl KeyResolver for Pkcs11Resolver {
    fn resolve(&self, key_text: &str) -> Option<Result<RemoteKey, CaError>> {
        if !is_pkcs11_uri(key_text.trim()) {
            return None;
        }
        Some(self.key(key_text).map(|k| Arc::new(k) as RemoteKey))
    }
}
