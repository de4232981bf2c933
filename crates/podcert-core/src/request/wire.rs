//! Serde wire types for PodCertificateRequest in every served version, and the mapping to the
//! version-independent [`Request`].
//!
//! Fields per version, confirmed against kubernetes/api `certificates/{v1alpha1,v1beta1,v1}/types.go`
//! (history of the kubernetes/api mirror, commits d3c025009 "Promote PodCertificateRequests to
//! v1beta1", 548c1f1f1 "Add StubPKCS10Request", 1ae17c491 "Promote PodCertificateRequest to GA"):
//!
//! | spec field                  | v1alpha1 (1.34) | v1beta1 (1.35) | v1beta1 (1.36+) | v1 (1.37) |
//! |-----------------------------|-----------------|----------------|-----------------|-----------|
//! | signerName, podName, podUID, serviceAccountName, serviceAccountUID, nodeName, nodeUID, maxExpirationSeconds | yes | yes | yes | yes |
//! | pkixPublicKey, proofOfPossession | yes      | yes            | yes (deprecated; empty when the stub is set) | no |
//! | stubPKCS10Request           | no              | no             | yes             | yes       |
//! | unverifiedUserAnnotations   | no              | yes            | yes             | yes       |
//!
//! Status is the same in every version: `conditions` (metav1.Condition), `certificateChain`,
//! `notBefore`, `beginRefreshAt`, `notAfter`. Byte fields are base64 (Go `[]byte`), decoded
//! here as Go's `encoding/json` does: standard alphabet, padding required, CR/LF ignored.
//! Fields a version does not define are ignored when reading that version (as the apiserver's
//! versioned view drops them); they still survive in [`RequestObject::raw`].

use std::collections::BTreeMap;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::{
    ApiVersion, ConditionType, Request, Status, DEFAULT_MAX_EXPIRATION_SECONDS, GROUP, KIND,
};

/// The largest input [`decode`] reads (4 MiB): a PodCertificateRequest is a few KiB, and the
/// apiserver's own request limit is 3 MiB.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// The longest condition message the apiserver accepts (metav1.Condition validation).
pub const MAX_CONDITION_MESSAGE_BYTES: usize = 32768;

/// A decoded request plus the object exactly as it arrived, so that writing status back keeps
/// every field this build does not know.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestObject {
    pub request: Request,
    pub raw: Value,
}

impl RequestObject {
    /// `metadata.generation`, for the condition's `observedGeneration` in [`status_json`].
    pub fn generation(&self) -> Option<i64> {
        generation_of(&self.raw)
    }
}

fn generation_of(raw: &Value) -> Option<i64> {
    raw.get("metadata")?.get("generation")?.as_i64()
}

/// Why an input is not a PodCertificateRequest this signer can read. Each message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("input is neither JSON nor YAML: {0}")]
    NotJsonOrYaml(String),
    #[error("input is {0} bytes; at most {MAX_INPUT_BYTES} (4 MiB) are read")]
    TooLarge(usize),
    #[error("expected a PodCertificateRequest object, got {0}")]
    NotAnObject(&'static str),
    #[error("expected kind PodCertificateRequest, got {0}")]
    WrongKind(String),
    #[error("unsupported apiVersion {0:?}; supported: certificates.k8s.io/v1alpha1, certificates.k8s.io/v1beta1, certificates.k8s.io/v1")]
    UnsupportedApiVersion(String),
    #[error("missing required field {0}")]
    MissingField(&'static str),
    #[error("{field} is not valid base64: {reason}")]
    InvalidBase64 { field: &'static str, reason: String },
    #[error("{field} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

// ---------------------------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------------------------

/// The subset of ObjectMeta the signer reads. Everything else stays in the raw object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
}

/// The spec fields every version has: who asks (the apiserver verified these) and the bound
/// on the lifetime.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(default, rename = "podUID", skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(
        default,
        rename = "serviceAccountUID",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_account_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, rename = "nodeUID", skip_serializing_if = "Option::is_none")]
    pub node_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_expiration_seconds: Option<i64>,
}

/// `certificates.k8s.io/v1alpha1` PodCertificateRequestSpec (Kubernetes 1.34).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecV1alpha1 {
    #[serde(flatten)]
    pub identity: IdentitySpec,
    /// base64 DER SubjectPublicKeyInfo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkix_public_key: Option<String>,
    /// base64 signature over the pod UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof_of_possession: Option<String>,
}

/// `certificates.k8s.io/v1beta1` PodCertificateRequestSpec: 1.35 (pkix + proof,
/// `unverifiedUserAnnotations`) and 1.36+ (`stubPKCS10Request` added, pkix + proof deprecated).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecV1beta1 {
    #[serde(flatten)]
    pub common: SpecV1alpha1,
    /// base64 DER PKCS#10 (1.36+).
    #[serde(
        default,
        rename = "stubPKCS10Request",
        skip_serializing_if = "Option::is_none"
    )]
    pub stub_pkcs10_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified_user_annotations: Option<BTreeMap<String, String>>,
}

/// `certificates.k8s.io/v1` PodCertificateRequestSpec (1.37): the stub CSR is the only carrier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecV1 {
    #[serde(flatten)]
    pub identity: IdentitySpec,
    #[serde(
        default,
        rename = "stubPKCS10Request",
        skip_serializing_if = "Option::is_none"
    )]
    pub stub_pkcs10_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified_user_annotations: Option<BTreeMap<String, String>>,
}

/// metav1.Condition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub last_transition_time: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

/// PodCertificateRequestStatus (identical in every version).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_chain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub begin_refresh_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Decodes one PodCertificateRequest from JSON or YAML (a single document).
pub fn decode(input: &[u8]) -> Result<RequestObject, DecodeError> {
    from_value(parse_document(input)?)
}

/// Decodes a PodCertificateRequest already parsed as JSON (what the API client hands over).
pub fn from_value(raw: Value) -> Result<RequestObject, DecodeError> {
    let request = to_request(&raw)?;
    Ok(RequestObject { request, raw })
}

fn parse_document(input: &[u8]) -> Result<Value, DecodeError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(DecodeError::TooLarge(input.len()));
    }
    let json_err = match serde_json::from_slice::<Value>(input) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    match parse_yaml(input) {
        Ok(v) => Ok(v),
        Err(yaml_err) => {
            // Report the error of the syntax the input most likely meant.
            let looks_like_json = input
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| *b == b'{' || *b == b'[');
            let msg = if looks_like_json {
                json_err.to_string()
            } else {
                yaml_err.to_string()
            };
            Err(DecodeError::NotJsonOrYaml(one_line(&msg)))
        }
    }
}

/// Parses one YAML document (JSON is YAML too) into a JSON value, with limits that make any
/// input of [`MAX_INPUT_BYTES`] fail or succeed quickly: nesting depth 64 (block and flow),
/// at most 1,000 aliases and anchors, 200,000 parser events, 50,000 nodes and 100,000
/// events replayed through aliases (the billion-laughs bound). Scalars resolve as YAML 1.2 core, like the
/// serde_yaml 0.9 this replaces: `yes`/`no`, `0755` and `1_000` stay strings. Duplicate keys
/// are an error (a policy file with one key twice is a mistake, whichever value would win).
pub fn parse_yaml<T: serde::de::DeserializeOwned>(input: &[u8]) -> Result<T, serde_saphyr::Error> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = Some(MAX_INPUT_BYTES);
    budget.max_depth = 64;
    budget.flow_nesting_limit = 64;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_total_scalar_bytes = MAX_INPUT_BYTES;
    // A request is ~50 nodes and a large policy file a few thousand: 50,000 nodes and
    // 200,000 events bound the work (and alias expansion) of any input well under a second.
    budget.max_events = 200_000;
    budget.max_nodes = 50_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = 100_000;
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    options.underscored_numbers_as_strings = true;
    options.merge_keys = serde_saphyr::MergeKeyPolicy::AsOrdinary;
    options.with_snippet = false;
    serde_saphyr::from_slice_with_options(input, options)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (empty document)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn to_request(raw: &Value) -> Result<Request, DecodeError> {
    let obj = raw
        .as_object()
        .ok_or_else(|| DecodeError::NotAnObject(describe(raw)))?;

    // Kind first: a ConfigMap is better reported as a wrong kind than as a wrong version.
    match obj.get("kind") {
        None | Some(Value::Null) => return Err(DecodeError::MissingField("kind")),
        Some(Value::String(k)) if k == KIND => {}
        Some(Value::String(k)) => return Err(DecodeError::WrongKind(k.clone())),
        Some(other) => return Err(DecodeError::WrongKind(other.to_string())),
    }
    let api_version = match obj.get("apiVersion") {
        None | Some(Value::Null) => return Err(DecodeError::MissingField("apiVersion")),
        Some(Value::String(s)) => parse_api_version(s)?,
        Some(other) => return Err(DecodeError::UnsupportedApiVersion(other.to_string())),
    };

    let metadata: ObjectMeta = section(obj.get("metadata"), "metadata")?.unwrap_or_default();
    let spec_value = match obj.get("spec") {
        None | Some(Value::Null) => return Err(DecodeError::MissingField("spec")),
        Some(v) => v,
    };
    let spec = match api_version {
        ApiVersion::V1alpha1 => {
            let s: SpecV1alpha1 = section(Some(spec_value), "spec")?.unwrap_or_default();
            VersionedSpec {
                identity: s.identity,
                pkix_public_key: s.pkix_public_key,
                proof_of_possession: s.proof_of_possession,
                stub_pkcs10_request: None,
                unverified_user_annotations: None,
            }
        }
        ApiVersion::V1beta1 => {
            let s: SpecV1beta1 = section(Some(spec_value), "spec")?.unwrap_or_default();
            VersionedSpec {
                identity: s.common.identity,
                pkix_public_key: s.common.pkix_public_key,
                proof_of_possession: s.common.proof_of_possession,
                stub_pkcs10_request: s.stub_pkcs10_request,
                unverified_user_annotations: s.unverified_user_annotations,
            }
        }
        ApiVersion::V1 => {
            let s: SpecV1 = section(Some(spec_value), "spec")?.unwrap_or_default();
            VersionedSpec {
                identity: s.identity,
                pkix_public_key: None,
                proof_of_possession: None,
                stub_pkcs10_request: s.stub_pkcs10_request,
                unverified_user_annotations: s.unverified_user_annotations,
            }
        }
    };
    let id = spec.identity;
    let status: WireStatus = section(obj.get("status"), "status")?.unwrap_or_default();

    let creation_timestamp = match metadata.creation_timestamp.as_deref() {
        None | Some("") => None,
        Some(s) => Some(parse_time(s).map_err(|e| DecodeError::InvalidField {
            field: "metadata.creationTimestamp",
            reason: e.to_string(),
        })?),
    };

    Ok(Request {
        api_version,
        name: required(metadata.name, "metadata.name")?,
        namespace: required(metadata.namespace, "metadata.namespace")?,
        uid: metadata.uid.unwrap_or_default(),
        resource_version: metadata.resource_version,
        creation_timestamp,
        signer_name: required(id.signer_name, "spec.signerName")?,
        pod_name: required(id.pod_name, "spec.podName")?,
        pod_uid: required(id.pod_uid, "spec.podUID")?,
        service_account_name: required(id.service_account_name, "spec.serviceAccountName")?,
        service_account_uid: required(id.service_account_uid, "spec.serviceAccountUID")?,
        node_name: required(id.node_name, "spec.nodeName")?,
        node_uid: required(id.node_uid, "spec.nodeUID")?,
        max_expiration_seconds: id
            .max_expiration_seconds
            .unwrap_or(DEFAULT_MAX_EXPIRATION_SECONDS),
        pkix_public_key: bytes(spec.pkix_public_key, "spec.pkixPublicKey")?,
        proof_of_possession: bytes(spec.proof_of_possession, "spec.proofOfPossession")?,
        stub_pkcs10_request: bytes(spec.stub_pkcs10_request, "spec.stubPKCS10Request")?,
        unverified_user_annotations: spec.unverified_user_annotations.unwrap_or_default(),
        terminal: terminal_condition(&status),
    })
}

/// The spec fields of any version, before validation.
struct VersionedSpec {
    identity: IdentitySpec,
    pkix_public_key: Option<String>,
    proof_of_possession: Option<String>,
    stub_pkcs10_request: Option<String>,
    unverified_user_annotations: Option<BTreeMap<String, String>>,
}

fn parse_api_version(s: &str) -> Result<ApiVersion, DecodeError> {
    let unsupported = || DecodeError::UnsupportedApiVersion(s.to_string());
    let (group, version) = s.split_once('/').ok_or_else(unsupported)?;
    if group != GROUP {
        return Err(unsupported());
    }
    match version {
        "v1alpha1" => Ok(ApiVersion::V1alpha1),
        "v1beta1" => Ok(ApiVersion::V1beta1),
        "v1" => Ok(ApiVersion::V1),
        _ => Err(unsupported()),
    }
}

/// Deserializes one top-level section, naming it in a type error.
fn section<'a, T: Deserialize<'a>>(
    v: Option<&'a Value>,
    field: &'static str,
) -> Result<Option<T>, DecodeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|e| DecodeError::InvalidField {
                field,
                reason: one_line(&e.to_string()),
            }),
    }
}

/// A required string; empty counts as missing, as in apiserver validation.
fn required(v: Option<String>, field: &'static str) -> Result<String, DecodeError> {
    match v {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(DecodeError::MissingField(field)),
    }
}

/// Go's `base64.StdEncoding` as `encoding/json` uses it for `[]byte`: padding required,
/// non-zero trailing bits tolerated.
const GO_STD_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes a base64 byte field. Empty means absent (Go validation checks `len(...) == 0`).
fn bytes(v: Option<String>, field: &'static str) -> Result<Option<Vec<u8>>, DecodeError> {
    let Some(s) = v else { return Ok(None) };
    let decoded = if s.contains(['\r', '\n']) {
        // encoding/json's decoder skips CR and LF; YAML block scalars can leave them in.
        let compact: String = s.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
        GO_STD_BASE64.decode(compact)
    } else {
        GO_STD_BASE64.decode(&s)
    };
    let decoded = decoded.map_err(|e| DecodeError::InvalidBase64 {
        field,
        reason: e.to_string(),
    })?;
    Ok((!decoded.is_empty()).then_some(decoded))
}

fn terminal_condition(status: &WireStatus) -> Option<ConditionType> {
    status
        .conditions
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Issued" => Some(ConditionType::Issued),
            "Denied" => Some(ConditionType::Denied),
            "Failed" => Some(ConditionType::Failed),
            _ => None,
        })
}

// ---------------------------------------------------------------------------------------------
// Encoding status
// ---------------------------------------------------------------------------------------------

/// The same object with `.status` replaced by the wire form of `status`; every other field,
/// unknown ones included, is left as it was.
pub fn with_status(raw: &Value, status: &Status, now: OffsetDateTime) -> Value {
    let mut out = raw.clone();
    let generation = generation_of(raw);
    if let Some(obj) = out.as_object_mut() {
        obj.insert("status".to_string(), status_json(status, generation, now));
    }
    out
}

/// Just the status object, as the controller's `/status` write carries it: one condition with
/// `status: "True"`; for `Issued` the chain and the three times, for `Denied`/`Failed` neither.
pub fn status_json(status: &Status, generation: Option<i64>, now: OffsetDateTime) -> Value {
    let issued = status.condition == ConditionType::Issued;
    let wire = WireStatus {
        conditions: vec![Condition {
            type_: status.condition.as_str().to_string(),
            status: "True".to_string(),
            observed_generation: generation,
            last_transition_time: format_time(now),
            reason: status.reason.clone(),
            message: truncate_utf8(&status.message, MAX_CONDITION_MESSAGE_BYTES).to_string(),
        }],
        certificate_chain: status.certificate_chain.clone().filter(|_| issued),
        not_before: status.not_before.filter(|_| issued).map(format_time),
        begin_refresh_at: status.begin_refresh_at.filter(|_| issued).map(format_time),
        not_after: status.not_after.filter(|_| issued).map(format_time),
    };
    // Serializing plain strings and integers into a Value cannot fail.
    serde_json::to_value(wire).unwrap_or(Value::Null)
}

/// A message longer than the apiserver accepts would make the status write fail forever.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// RFC 3339 in UTC with whole seconds, as metav1.Time serializes: `2026-11-25T10:00:00Z`.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A timestamp that is not RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an RFC 3339 time: {reason}")]
pub struct InvalidTime {
    pub input: String,
    pub reason: String,
}

/// Parses an RFC 3339 time (any offset, fractional seconds allowed) into UTC.
pub fn parse_time(s: &str) -> Result<OffsetDateTime, InvalidTime> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|t| t.to_offset(UtcOffset::UTC))
        .map_err(|e| InvalidTime {
            input: s.to_string(),
            reason: e.to_string(),
        })
}
