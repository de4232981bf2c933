//! How the emulated kubelets behave: fleet size, key types, Kubernetes version, timings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::clock::Clock;
use super::keys::{KeySource, KeyType};

/// The Kubernetes version the kubelets emulate: it picks the key carrier and the
/// PodCertificateRequest versions the kubelet knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KubeletVersion {
    V1_34,
    V1_35,
    V1_36,
    V1_37,
    V1_38,
}

#[derive(Debug, thiserror::Error)]
#[error("unsupported Kubernetes version {0:?}; expected one of 1.34, 1.35, 1.36, 1.37, 1.38")]
pub struct UnknownVersion(String);

impl FromStr for KubeletVersion {
    type Err = UnknownVersion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().trim_start_matches('v') {
            "1.34" => Ok(Self::V1_34),
            "1.35" => Ok(Self::V1_35),
            "1.36" => Ok(Self::V1_36),
            "1.37" => Ok(Self::V1_37),
            "1.38" => Ok(Self::V1_38),
            _ => Err(UnknownVersion(s.to_string())),
        }
    }
}

impl fmt::Display for KubeletVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1_34 => "1.34",
            Self::V1_35 => "1.35",
            Self::V1_36 => "1.36",
            Self::V1_37 => "1.37",
            Self::V1_38 => "1.38",
        })
    }
}

impl KubeletVersion {
    /// 1.34 and 1.35 kubelets send `pkixPublicKey` + `proofOfPossession`; 1.36+ the stub CSR.
    pub fn carrier(self) -> Carrier {
        if self <= Self::V1_35 {
            Carrier::PkixAndProof
        } else {
            Carrier::StubPkcs10
        }
    }

    /// The PCR versions this kubelet can write, most preferred first (v1alpha1 was removed in
    /// 1.35, v1 arrived in 1.37).
    pub fn known_pcr_versions(self) -> &'static [PcrVersion] {
        match self {
            Self::V1_34 => &[PcrVersion::V1alpha1],
            Self::V1_35 | Self::V1_36 => &[PcrVersion::V1beta1],
            Self::V1_37 | Self::V1_38 => &[PcrVersion::V1, PcrVersion::V1beta1],
        }
    }

    /// ML-DSA key types exist from 1.38 on (`generateKeyAndProof` knows them); an older
    /// kubelet fails such a volume with "unknown key type".
    pub fn knows_key_type(self, key_type: KeyType) -> bool {
        !key_type.is_ml_dsa() || self >= Self::V1_38
    }

    /// `unverifiedUserAnnotations` exists from 1.35 on.
    pub fn has_user_annotations(self) -> bool {
        self >= Self::V1_35
    }
}

/// How the requester's public key travels in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    PkixAndProof,
    StubPkcs10,
}

/// A served version of `podcertificaterequests.certificates.k8s.io`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcrVersion {
    V1alpha1,
    V1beta1,
    V1,
}

impl PcrVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1alpha1 => "v1alpha1",
            Self::V1beta1 => "v1beta1",
            Self::V1 => "v1",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown PodCertificateRequest version {0:?}; expected v1alpha1, v1beta1 or v1")]
pub struct UnknownPcrVersion(String);

impl FromStr for PcrVersion {
    type Err = UnknownPcrVersion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().trim_start_matches("certificates.k8s.io/") {
            "v1alpha1" => Ok(Self::V1alpha1),
            "v1beta1" => Ok(Self::V1beta1),
            "v1" => Ok(Self::V1),
            _ => Err(UnknownPcrVersion(s.to_string())),
        }
    }
}

/// Everything the emulator needs to know. `Default` is a small fleet with kubelet timings.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub nodes: usize,
    pub pods: usize,
    pub namespaces: usize,
    /// Service accounts per namespace; pods use them round robin.
    pub service_accounts: usize,
    /// Key types given to pods round robin (pod i gets `key_types[i % len]`).
    pub key_types: Vec<KeyType>,
    pub kube_version: KubeletVersion,
    /// The PCR version to write and watch; `None`: discover (the first served of the versions
    /// the kubelet knows, v1 before v1beta1).
    pub pcr_version: Option<PcrVersion>,
    pub signer_name: String,
    pub max_expiration_seconds: Option<i32>,
    /// Where credential bundles go (`<dir>/<ns>/<pod>/credentialbundle.pem`); none: not written.
    pub out_dir: Option<PathBuf>,
    /// `unverifiedUserAnnotations` given to pods round robin (empty: none). 1.35+ only.
    pub user_annotations: Vec<BTreeMap<String, String>>,
    /// Prefix of the namespace and node names (`<prefix>-ns-<i>`, `<prefix>-node-<j>`).
    pub name_prefix: String,
    /// Upper bound of the random delay added to `beginRefreshAt` (kubelet: 5 min).
    pub refresh_jitter: Duration,
    /// A request invisible this long after its creation (plus jitter) is recreated (kubelet:
    /// 10 min).
    pub recreate_after: Duration,
    /// Upper bound of the random delay added to `recreate_after` (kubelet: 5 min).
    pub recreate_jitter: Duration,
    /// How often timers (refresh, recreation, retries, polling) are checked.
    pub tick: Duration,
    /// Watch PCRs (one watch per node, field selector `spec.nodeName`); false: poll by listing.
    pub watch: bool,
    /// Concurrent API writes (object and request creation), across all nodes.
    pub create_concurrency: usize,
    /// Request creations per second across all nodes (`None`: as fast as they come, a burst).
    pub create_rate: Option<f64>,
    pub keys: KeySource,
    pub clock: Clock,
}

impl Default for KubeletConfig {
    fn default() -> Self {
        KubeletConfig {
            nodes: 1,
            pods: 1,
            namespaces: 1,
            service_accounts: 1,
            key_types: vec![KeyType::EcdsaP256],
            kube_version: KubeletVersion::V1_37,
            pcr_version: None,
            signer_name: "example.com/spiffe".into(),
            max_expiration_seconds: None,
            out_dir: None,
            user_annotations: Vec::new(),
            name_prefix: "podcert".into(),
            refresh_jitter: Duration::from_secs(5 * 60),
            recreate_after: Duration::from_secs(10 * 60),
            recreate_jitter: Duration::from_secs(5 * 60),
            tick: Duration::from_secs(1),
            watch: true,
            create_concurrency: 64,
            create_rate: None,
            keys: KeySource::fresh(),
            clock: Clock::system(),
        }
    }
}

impl KubeletConfig {
    /// Settings fit for tests: no jitter, quick timers, a shared RSA key pool.
    pub fn for_tests() -> Self {
        KubeletConfig {
            refresh_jitter: Duration::ZERO,
            recreate_after: Duration::from_secs(2),
            recreate_jitter: Duration::ZERO,
            tick: Duration::from_millis(50),
            keys: KeySource::shared_test_pool(),
            ..Default::default()
        }
    }

    pub fn carrier(&self) -> Carrier {
        self.kube_version.carrier()
    }

    pub fn namespace_name(&self, i: usize) -> String {
        format!("{}-ns-{i}", self.name_prefix)
    }

    pub fn node_name(&self, j: usize) -> String {
        format!("{}-node-{j}", self.name_prefix)
    }

    pub fn service_account_name(&self, k: usize) -> String {
        format!("sa-{k}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carrier_and_versions_follow_the_kubelet_version() {
        assert_eq!(
            "1.34".parse::<KubeletVersion>().unwrap().carrier(),
            Carrier::PkixAndProof
        );
        assert_eq!(KubeletVersion::V1_35.carrier(), Carrier::PkixAndProof);
        assert_eq!(KubeletVersion::V1_36.carrier(), Carrier::StubPkcs10);
        assert_eq!(KubeletVersion::V1_37.carrier(), Carrier::StubPkcs10);
        assert_eq!(
            KubeletVersion::V1_34.known_pcr_versions(),
            &[PcrVersion::V1alpha1]
        );
        assert_eq!(
            KubeletVersion::V1_35.known_pcr_versions(),
            &[PcrVersion::V1beta1]
        );
        assert!(!KubeletVersion::V1_34.has_user_annotations());
        assert!("1.33".parse::<KubeletVersion>().is_err());
    }

    #[test]
    fn only_1_38_kubelets_know_ml_dsa() {
        assert_eq!(
            "1.38".parse::<KubeletVersion>().unwrap(),
            KubeletVersion::V1_38
        );
        assert_eq!(KubeletVersion::V1_38.carrier(), Carrier::StubPkcs10);
        for kt in KeyType::ML_DSA {
            assert!(KubeletVersion::V1_38.knows_key_type(kt));
            assert!(!KubeletVersion::V1_37.knows_key_type(kt));
        }
        assert!(KubeletVersion::V1_34.knows_key_type(KeyType::Ed25519));
    }
}
