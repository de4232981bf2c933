//! CA material: the signing key, its certificate, intermediates and the trust anchors.
//! (Interface fixed here; implementation owned by the ca/issue task.)

use time::OffsetDateTime;

/// Key types a CA may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaKeyType {
    #[default]
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa3072,
}

/// Why CA material was refused.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{0}")]
    Invalid(String),
}

/// A loaded, checked CA able to sign leaves.
pub struct Ca {
    _private: (),
}

impl Ca {
    /// Loads a CA from PEM: `cert_pem` holds the signing certificate followed by any
    /// intermediates; `key_pem` is PKCS#8, SEC1 or PKCS#1; `trust_anchors_pem` names the
    /// root(s) to publish (default: the last certificate of the chain if self-signed, else the
    /// signing certificate). Refuses mismatched keys, non-CA certificates, expired CAs and CAs
    /// with less than one hour left at `now`.
    pub fn from_pem(
        _cert_pem: &str,
        _key_pem: &str,
        _trust_anchors_pem: Option<&str>,
        _now: OffsetDateTime,
    ) -> Result<Ca, CaError> {
        Err(CaError::Invalid("not implemented".into()))
    }

    /// The signing certificate's notAfter.
    pub fn not_after(&self) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH
    }
}
// TEMP STUB
pub mod generate {
    use super::*;
    pub struct GeneratedCa {
        pub cert_pem: String,
        pub key_pem: String,
    }
    pub fn generate_self_signed(
        _k: CaKeyType,
        _t: Option<&str>,
        _v: time::Duration,
        _n: OffsetDateTime,
    ) -> Result<GeneratedCa, CaError> {
        Err(CaError::Invalid("x".into()))
    }
}
pub mod files {
    use super::*;
    use std::path::{Path, PathBuf};
    pub fn write_ca_dir(
        _d: &Path,
        _c: &generate::GeneratedCa,
    ) -> Result<(PathBuf, PathBuf), CaError> {
        Err(CaError::Invalid("x".into()))
    }
}
