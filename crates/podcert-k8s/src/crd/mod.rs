//! The `PodCertificateSigner` custom resource (podcert.dev/v1alpha1, cluster-scoped): one
//! signer's name, trust domain, policy, CA and trust-bundle publication. `podcert-signer crd`
//! prints the CRD generated from these types; `crds/` holds the committed copy.
//!
//! Field meanings are in the doc comments, which become the CRD's OpenAPI descriptions
//! (`kubectl explain podcertificatesigner.spec`).

pub mod convert;

pub use crate::settings::SignerSettings;
pub use convert::SignerSpecError;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "podcert.dev";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "PodCertificateSigner";

/// One signer this deployment serves.
// Each printcolumn(...) repeats the same keys; clippy reads them as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "podcert.dev",
    version = "v1alpha1",
    kind = "PodCertificateSigner",
    plural = "podcertificatesigners",
    shortname = "pcsigner",
    category = "podcert",
    status = "PodCertificateSignerStatus",
    derive = "PartialEq",
    doc = "A PodCertificate signer served by podcert-signer: which pods get which SPIFFE X.509-SVIDs from which CA.",
    printcolumn(name = "Signer", type_ = "string", json_path = ".spec.signerName"),
    printcolumn(
        name = "Trust Domain",
        type_ = "string",
        json_path = ".spec.trustDomain"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "CA Not After",
        type_ = "date",
        json_path = ".status.caNotAfter"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.signerName"
)]
#[serde(rename_all = "camelCase")]
pub struct PodCertificateSignerSpec {
    /// The signer name pods put in their podCertificate volume, `<domain>/<path>`. The
    /// deployment serves only names under its configured domains (--signer-domain).
    #[schemars(length(min = 3, max = 571))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[!-~]+$') && !self.contains('%')").message("signerName must be <DNS domain>/<path>, e.g. example.com/spiffe"))]
    pub signer_name: String,
    /// SPIFFE trust domain of the issued IDs, e.g. cluster.local.
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[a-z0-9._-]+$"))]
    pub trust_domain: String,
    /// Path of the SPIFFE ID, from verified fields: {namespace}, {serviceAccount}, {podName},
    /// {nodeName}; and {pod.labels.KEY}, a label of the pod (set by whoever may create pods in
    /// the namespace, so a path with a label must contain {namespace}).
    #[serde(rename = "spiffeID", default = "default_spiffe_id")]
    #[schemars(length(min = 1, max = 1024))]
    pub spiffe_id: String,
    /// Only pods in namespaces whose labels match get certificates (absent: every namespace).
    /// Namespaces carry kubernetes.io/metadata.name, so this also selects namespaces by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Only pods whose labels match get certificates (absent: every pod). The signer reads
    /// the pod (get pods) and checks its UID is the request's podUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Service accounts allowed and denied, as NAMESPACE/NAME patterns with * for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountRules>,
    /// DNS names in the certificate: names a pod may ask for and names always added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_names: Option<DnsNamesSpec>,
    /// Key types issued for (absent: all six the API allows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) > 0").message("keyTypes must not be empty; omit it to allow every type"))]
    pub key_types: Option<Vec<KeyTypeName>>,
    /// Longest certificate lifetime (a request's maxExpirationSeconds may lower it), at least 1h.
    #[serde(default = "default_max_lifetime")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub max_lifetime: String,
    /// Where in the lifetime the kubelet starts refreshing, as a fraction (before jitter).
    #[serde(default = "default_refresh_fraction")]
    #[schemars(range(min = 0.05, max = 0.95))]
    pub refresh_fraction: f64,
    /// How far notBefore is set in the past, for clock skew (0s to 5m).
    #[serde(default = "default_backdate")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub backdate: String,
    /// The signing CA.
    pub ca: CaSpec,
    /// Publication of the CA's trust anchors.
    #[serde(default)]
    pub trust_bundle: TrustBundleSpec,
}

fn default_spiffe_id() -> String {
    podcert_core::policy::DEFAULT_SPIFFE_PATH.into()
}
fn default_max_lifetime() -> String {
    "24h".into()
}
fn default_refresh_fraction() -> f64 {
    0.5
}
fn default_backdate() -> String {
    "60s".into()
}

/// Service-account allow and deny lists. Deny wins; an empty allow list allows all.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountRules {
    /// NAMESPACE/NAME patterns (e.g. team-a/web, team-a/*, */default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// DNS name templates, over {namespace}, {serviceAccount}, {podName}, {nodeName} and
/// {pod.labels.KEY} (a whole DNS label, in a template that also has {namespace}); and names
/// from the Services that select the pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsNamesSpec {
    /// The unverifiedUserAnnotations key whose value (comma-separated names) asks for names.
    #[serde(default = "default_dns_annotation_key")]
    pub annotation_key: String,
    /// Templates a requested name must match; a label "*" matches any one label.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
    /// Names added to every certificate (no "*").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub always: Vec<String>,
    /// The names of the Services of the pod's namespace whose selector matches the pod's
    /// labels: <svc>.<ns>.svc and <svc>.<ns>.svc.<clusterDomain>. The signer reads the pod
    /// (get pods) and the Services (list and watch services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_services: Option<FromServicesSpec>,
}

fn default_dns_annotation_key() -> String {
    podcert_core::policy::DEFAULT_DNS_ANNOTATION_KEY.into()
}

/// DNS names from the Services that select the pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FromServicesSpec {
    /// The cluster's DNS domain.
    #[serde(default = "default_cluster_domain")]
    #[schemars(length(min = 1, max = 253))]
    pub cluster_domain: String,
    /// Also <svc> and <svc>.<ns> (names resolved through the pod's DNS search path).
    #[serde(default)]
    pub short_names: bool,
    /// Issue only to pods some Service selects: a request waits up to `wait` for one, then
    /// is denied (NoServiceSelectsPod).
    #[serde(default)]
    pub required: bool,
    /// The unverifiedUserAnnotations key whose value (comma-separated Service names) narrows
    /// the Services to those named; naming one that does not select the pod is denied
    /// (ServiceDoesNotSelectPod).
    #[serde(default = "default_services_annotation_key")]
    pub annotation_key: String,
    /// How long after its creation a request waits for a Service that does not exist yet
    /// (a pod created just before its Service), 0s to 10m; it stays pending meanwhile.
    #[serde(default = "default_service_wait")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub wait: String,
}

fn default_cluster_domain() -> String {
    "cluster.local".into()
}
fn default_services_annotation_key() -> String {
    podcert_core::policy::DEFAULT_SERVICES_ANNOTATION_KEY.into()
}
fn default_service_wait() -> String {
    "60s".into()
}

/// A key type as the PodCertificateRequest API names it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum KeyTypeName {
    #[serde(rename = "ED25519")]
    Ed25519,
    #[serde(rename = "ECDSAP256")]
    EcdsaP256,
    #[serde(rename = "ECDSAP384")]
    EcdsaP384,
    #[serde(rename = "ECDSAP521")]
    EcdsaP521,
    #[serde(rename = "RSA3072")]
    Rsa3072,
    #[serde(rename = "RSA4096")]
    Rsa4096,
    // ML-DSA (FIPS 204): Kubernetes 1.38+ with the PodCertificateMLDSA gate.
    #[serde(rename = "MLDSA44")]
    MlDsa44,
    #[serde(rename = "MLDSA65")]
    MlDsa65,
    #[serde(rename = "MLDSA87")]
    MlDsa87,
}

/// The signing CA: a Secret (existing, or bootstrapped by the signer) or files in the pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.secret) != has(self.files)").message("ca needs exactly one of secret or files"))]
#[x_kube(validation = Rule::new("!has(self.files) || has(self.files.keyFile) != has(self.pkcs11)").message("ca.files needs exactly one of files.keyFile or ca.pkcs11 (the key in a token)"))]
#[serde(rename_all = "camelCase")]
pub struct CaSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<CaSecretSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<CaFilesSpec>,
    /// The CA key in a PKCS#11 token (an HSM, a cloud HSM, SoftHSM2): it signs every
    /// certificate and never leaves the token. With files, instead of keyFile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs11: Option<CaPkcs11Spec>,
}

/// A key in a PKCS#11 token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaPkcs11Spec {
    /// RFC 7512 URI naming the key and the module, e.g.
    /// `pkcs11:token=podcert;object=ca-2026?module-path=/usr/lib/softhsm/libsofthsm2.so`.
    /// `pin-source=file:/path` reads the PIN from a file; `pin-value` is refused.
    #[schemars(length(min = 8, max = 4096), regex(pattern = r"^pkcs11:"))]
    pub uri: String,
    /// The token's user PIN, from a Secret in the signer's namespace (when the URI has no
    /// pin-source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_secret_ref: Option<PinSecretRef>,
}

/// One key of a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PinSecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_pin_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_pin_key() -> String {
    "pin".into()
}

/// A kubernetes.io/tls Secret (tls.crt, tls.key, optional ca.crt) in the signer's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaSecretSpec {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Create the Secret with a fresh self-signed CA when it does not exist.
    #[serde(default)]
    pub bootstrap: bool,
    /// Key type of a bootstrapped CA.
    #[serde(default)]
    pub key_type: CaKeyTypeName,
    /// Validity of a bootstrapped CA.
    #[serde(default = "default_ca_validity")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub validity: String,
    /// Rotation of a bootstrapped CA: the next CA is prepared, and its root published, at this
    /// fraction of the active CA's life.
    #[serde(default = "default_rotate_at_fraction")]
    #[schemars(range(min = 0.05, max = 0.95))]
    pub rotate_at_fraction: f64,
    /// Rotation: how long after its root is published the next CA starts signing (every
    /// projected trust bundle must hold the root by then).
    #[serde(default = "default_propagation_delay")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub propagation_delay: String,
}

fn default_rotate_at_fraction() -> f64 {
    podcert_core::rotation::RotationPolicy::DEFAULT_PREPARE_AT_FRACTION
}
fn default_propagation_delay() -> String {
    "1h".into()
}

fn default_ca_validity() -> String {
    "365d".into()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum CaKeyTypeName {
    #[default]
    #[serde(rename = "ECDSAP256")]
    EcdsaP256,
    #[serde(rename = "ECDSAP384")]
    EcdsaP384,
    #[serde(rename = "ED25519")]
    Ed25519,
    #[serde(rename = "RSA3072")]
    Rsa3072,
    // An ML-DSA CA (FIPS 204): only verifiers that know ML-DSA can check what it issues.
    #[serde(rename = "MLDSA44")]
    MlDsa44,
    #[serde(rename = "MLDSA65")]
    MlDsa65,
    #[serde(rename = "MLDSA87")]
    MlDsa87,
}

/// PEM files mounted into the signer pods, re-read when they change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaFilesSpec {
    /// The signing certificate followed by any intermediates.
    pub cert_file: String,
    /// Its key: PKCS#8, SEC1 or PKCS#1 PEM (omit it when ca.pkcs11 names the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// The root(s) to publish when the signing CA is an intermediate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_anchors_file: Option<String>,
}

/// Where the trust anchors are published.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustBundleSpec {
    /// Publish a ClusterTrustBundle named <signerName with / as :>:<suffix>.
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_suffix")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub suffix: String,
    /// Extra labels on the ClusterTrustBundle (pods select bundles by label).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Namespaces that also get the bundle as a ConfigMap (key ca.crt).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_map_namespaces: Vec<String>,
    #[serde(default = "default_configmap_name")]
    pub config_map_name: String,
    /// How long a root that does not sign yet (a rotation's next CA) is in the `preview`
    /// ClusterTrustBundle (<signerName with / as :>:preview) before the live one, as SPIFFE
    /// Filesystem Delivery's canarying intends. Default: half the propagation delay; "0s": no
    /// wait (both bundles hold the same roots). Must be shorter than the propagation delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_duration: Option<String>,
}

impl Default for TrustBundleSpec {
    fn default() -> Self {
        TrustBundleSpec {
            enabled: true,
            suffix: default_suffix(),
            labels: BTreeMap::new(),
            config_map_namespaces: Vec::new(),
            config_map_name: default_configmap_name(),
            preview_duration: None,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_suffix() -> String {
    "live".into()
}
fn default_configmap_name() -> String {
    "podcert-trust-bundle".into()
}

/// What the signer reports about a PodCertificateSigner.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodCertificateSignerStatus {
    /// The generation the rest of this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: the signer is issuing. When False, the reason says why (InvalidSpec,
    /// SignerNameNotAllowed, NotPermitted, Conflict, CANotLoaded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// SHA-256 fingerprint of the signing CA certificate (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_fingerprint: Option<String>,
    /// When the signing CA expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_not_after: Option<String>,
    /// The ClusterTrustBundle holding the trust anchors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_bundle_name: Option<String>,
}

/// The CRD as YAML, as committed under `crds/`.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let crd = PodCertificateSigner::crd();
    Ok(format!(
        "# Generated by `podcert-signer crd`; do not edit (CI checks it matches the code).\n{}",
        // Plain or quoted scalars, never folded blocks: descriptions stay one line each.
        serde_saphyr::to_string_with_options(&crd, {
            let mut o = serde_saphyr::SerializerOptions::default();
            o.prefer_block_scalars = false;
            o
        })?
    ))
}
