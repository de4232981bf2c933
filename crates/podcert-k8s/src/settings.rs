//! What one signer runs with, however it was configured (flags or a PodCertificateSigner):
//! the policy, where the CA comes from, where its trust anchors are published, how it rotates.

use std::path::PathBuf;
use std::time::Duration;

use podcert_core::ca::CaKeyType;
use podcert_core::policy::SignerConfig;
use podcert_core::rotation::RotationPolicy;

use crate::trust_bundle::TrustBundleConfig;

/// Everything one signer runs with.
#[derive(Debug, Clone)]
pub struct SignerSettings {
    pub config: SignerConfig,
    pub ca: CaSpec,
    pub trust_bundle: Option<TrustBundleConfig>,
    /// How a bootstrapped CA is rotated; for other CAs, how long a replaced root stays
    /// published (the maximum leaf lifetime plus the safety margin).
    pub rotation: RotationPolicy,
}

/// Where to get the CA.
#[derive(Debug, Clone, PartialEq)]
pub enum CaSpec {
    Files {
        cert: PathBuf,
        key: PathBuf,
        trust_anchors: Option<PathBuf>,
        poll: Duration,
    },
    Secret {
        namespace: String,
        name: String,
        bootstrap: Option<Bootstrap>,
        poll: Duration,
        /// The CA keys are in this token: bootstrapped and rotated CAs' keys are generated
        /// there, and the Secret's tls.key holds the key's URI instead of a key.
        pkcs11: Option<Pkcs11KeyRef>,
    },
    Memory {
        key_type: CaKeyType,
        trust_domain: String,
        validity: time::Duration,
    },
    /// Files mode with the key in a PKCS#11 token: the certificate file is re-read every
    /// poll, the key never leaves the token.
    Pkcs11 {
        cert: PathBuf,
        key: Pkcs11KeyRef,
        trust_anchors: Option<PathBuf>,
        poll: Duration,
    },
}

/// A CA key in a PKCS#11 token.
#[derive(Debug, Clone, PartialEq)]
pub struct Pkcs11KeyRef {
    /// RFC 7512 URI (`pkcs11:token=...;object=...?module-path=...`).
    pub uri: String,
    /// Where the PIN is when the URI has no `pin-source`.
    pub pin_secret: Option<PinSecret>,
}

/// A key of a Secret holding the token's user PIN.
#[derive(Debug, Clone, PartialEq)]
pub struct PinSecret {
    pub namespace: String,
    pub name: String,
    pub key: String,
}

/// How to create the CA Secret when it does not exist.
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrap {
    pub key_type: CaKeyType,
    pub trust_domain: String,
    pub validity: time::Duration,
}
