//! PodCertificateRequest as the signer sees it.
//!
//! `wire` holds serde types for every served version (`certificates.k8s.io/v1alpha1`,
//! `v1beta1`, `v1`); they map to the one internal [`Request`] below. The original object is
//! kept as JSON so that writing status back preserves fields this build does not know.

pub mod wire;

use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The API group of PodCertificateRequest and ClusterTrustBundle.
pub const GROUP: &str = "certificates.k8s.io";
pub const KIND: &str = "PodCertificateRequest";

/// The served versions, newest carrier rules last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiVersion {
    V1alpha1,
    V1beta1,
    V1,
}

impl ApiVersion {
    pub fn version(self) -> &'static str {
        match self {
            ApiVersion::V1alpha1 => "v1alpha1",
            ApiVersion::V1beta1 => "v1beta1",
            ApiVersion::V1 => "v1",
        }
    }
    pub fn api_version(self) -> &'static str {
        match self {
            ApiVersion::V1alpha1 => "certificates.k8s.io/v1alpha1",
            ApiVersion::V1beta1 => "certificates.k8s.io/v1beta1",
            ApiVersion::V1 => "certificates.k8s.io/v1",
        }
    }
}

/// The terminal condition types a signer may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    Issued,
    Denied,
    Failed,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Issued => "Issued",
            ConditionType::Denied => "Denied",
            ConditionType::Failed => "Failed",
        }
    }
}

/// One PodCertificateRequest, version-independent. Byte fields are already base64-decoded.
/// Identity fields (`namespace`, `service_account_name`, `pod_*`, `node_*`) are the ones the
/// apiserver verified (NodeRestriction); `unverified_user_annotations` is attacker-controlled.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub api_version: ApiVersion,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub resource_version: Option<String>,
    pub creation_timestamp: Option<OffsetDateTime>,
    pub signer_name: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub service_account_name: String,
    pub service_account_uid: String,
    pub node_name: String,
    pub node_uid: String,
    /// Defaulted to 86400 when absent, as the apiserver does.
    pub max_expiration_seconds: i64,
    pub pkix_public_key: Option<Vec<u8>>,
    pub proof_of_possession: Option<Vec<u8>>,
    pub stub_pkcs10_request: Option<Vec<u8>>,
    pub unverified_user_annotations: BTreeMap<String, String>,
    /// The terminal condition already on the object, if any (then there is nothing to do).
    pub terminal: Option<ConditionType>,
}

/// Default and bounds of `spec.maxExpirationSeconds` (apiserver validation).
pub const DEFAULT_MAX_EXPIRATION_SECONDS: i64 = 86400;
pub const MIN_MAX_EXPIRATION_SECONDS: i64 = 3600;
pub const MAX_MAX_EXPIRATION_SECONDS: i64 = 7_862_400;

/// The status a signer writes: exactly one terminal condition, and for `Issued` the chain and
/// the three times (whole seconds, equal to the leaf's).
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub condition: ConditionType,
    pub reason: String,
    pub message: String,
    pub certificate_chain: Option<String>,
    pub not_before: Option<OffsetDateTime>,
    pub not_after: Option<OffsetDateTime>,
    pub begin_refresh_at: Option<OffsetDateTime>,
}
