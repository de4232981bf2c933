//! The CA's signing key: parsed from PEM into memory, or held elsewhere (a PKCS#11 token, a
//! KMS) and reached through rcgen's [`SigningKey`] trait. The core never opens a token itself:
//! a [`KeyResolver`] given by the caller turns a key reference (a `pkcs11:` URI) into a key.

use std::sync::Arc;

use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm, SigningKey};

use super::ml_dsa::MlDsaKey;
use super::{CaError, CaKeyType};

/// A signing key the process does not hold: every signature is made by whatever is behind it.
/// rcgen calls `sign` with the to-be-signed bytes and expects the signature in the X.509
/// encoding of [`PublicKeyData::algorithm`] (DER `Ecdsa-Sig-Value` for ECDSA).
pub type RemoteKey = Arc<dyn SigningKey + Send + Sync>;

/// Turns key text that is a reference rather than PEM into a [`RemoteKey`].
pub trait KeyResolver: Send + Sync {
    /// None: `key_text` is not a reference this resolver knows (it is read as PEM).
    fn resolve(&self, key_text: &str) -> Option<Result<RemoteKey, CaError>>;
}

/// Knows no references: every key is PEM.
#[derive(Debug, Clone, Copy, Default)]
pub struct PemKeys;

impl KeyResolver for PemKeys {
    fn resolve(&self, _: &str) -> Option<Result<RemoteKey, CaError>> {
        None
    }
}

/// Either kind of key, as the issuer holds it.
pub(crate) enum CaKey {
    Local(KeyPair),
    /// Loaded ML-DSA keys (rcgen's `KeyPair` cannot load them).
    MlDsa(MlDsaKey),
    Remote(RemoteKey),
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            CaKey::Local(k) => k.der_bytes(),
            CaKey::MlDsa(k) => k.der_bytes(),
            CaKey::Remote(k) => k.der_bytes(),
        }
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self {
            CaKey::Local(k) => k.algorithm(),
            CaKey::MlDsa(k) => k.algorithm(),
            CaKey::Remote(k) => k.algorithm(),
        }
    }
}

impl SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match self {
            CaKey::Local(k) => k.sign(msg),
            CaKey::MlDsa(k) => k.sign(msg),
            CaKey::Remote(k) => k.sign(msg),
        }
    }
}

/// The CA key type a remote key's signature algorithm stands for.
pub(crate) fn remote_key_type(key: &dyn SigningKey) -> Result<CaKeyType, CaError> {
    let alg = key.algorithm();
    CaKeyType::ALL
        .into_iter()
        .find(|t| t.signature_algorithm() == alg)
        .ok_or_else(|| CaError::UnsupportedKey(format!("a remote key signing with {alg:?}")))
}
