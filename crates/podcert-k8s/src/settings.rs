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
    },
    Memory {
        key_type: CaKeyType,
        trust_domain: String,
        validity: time::Duration,
    },
}

/// How to create the CA Secret when it does not exist.
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrap {
    pub key_type: CaKeyType,
    pub trust_domain: String,
    pub validity: time::Duration,
}
