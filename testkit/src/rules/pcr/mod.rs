//! PodCertificateRequest rules: pkg/apis/certificates/validation/validation.go
//! (ValidatePodCertificateRequestCreate/Update/StatusUpdate) and
//! pkg/registry/certificates/podcertificaterequest/strategy.go, plus the 1.36+ stub-CSR
//! carrier from the project's podcertificate contract where the stored source predates it.

mod convert;
mod create;
mod status_update;

use super::{signers, Attributes, UserInfo};
use crate::api_status::{ApiError, FieldError};
use base64::Engine as _;
use serde_json::Value;
use time::OffsetDateTime;

pub use convert::{spec_fields, DEFAULT_MAX_EXPIRATION_SECONDS};
pub use status_update::status_semantically_equal;

/// The API group and kind, for `ApiError::invalid`.
pub const GROUP: &str = "certificates.k8s.io";
pub const KIND: &str = "PodCertificateRequest";
/// The Kubernetes minor release the default conversions emulate (1.37: v1beta1 has the stub).
pub const DEFAULT_KUBE_MINOR: u32 = 37;

/// Converts an object received in `version` (`v1alpha1`, `v1beta1`, `v1`) to the internal
/// (stored) form: the union of all versions' fields, fields the version lacks dropped, and
/// `maxExpirationSeconds` defaulted (SetDefaults_PodCertificateRequestSpec).
pub fn to_internal(obj: Value, version: &str) -> Value {
    convert::to_internal(obj, version, DEFAULT_KUBE_MINOR)
}

/// As `to_internal`, emulating Kubernetes 1.`kube_minor` (1.35's v1beta1 has no stub field).
pub fn to_internal_at(obj: Value, version: &str, kube_minor: u32) -> Value {
    convert::to_internal(obj, version, kube_minor)
}

/// Converts a stored object to what `version` serves, dropping fields that version lacks.
pub fn from_internal(obj: &Value, version: &str) -> Value {
    convert::from_internal(obj, version, DEFAULT_KUBE_MINOR)
}

/// As `from_internal`, emulating Kubernetes 1.`kube_minor`.
pub fn from_internal_at(obj: &Value, version: &str, kube_minor: u32) -> Value {
    convert::from_internal(obj, version, kube_minor)
}

/// The decoder's verdict on the spec (types, and `[]byte` fields in base64 as Go's
/// encoding/json reads them): kube-apiserver answers 400 BadRequest before any validation
/// when the body does not decode. Call before `to_internal`.
pub fn check_decodable(obj: &Value, version: &str) -> Result<(), ApiError> {
    let fail = |e: String| {
        ApiError::bad_request(format!(
            "{KIND} in version {version:?} cannot be handled as a {KIND}: {e}"
        ))
    };
    let spec = &obj["spec"];
    for f in ["pkixPublicKey", "proofOfPossession", "stubPKCS10Request"] {
        decode_bytes(&spec[f]).map_err(&fail)?;
    }
    let type_error = |field: &str, got: &Value, go_type: &str| {
        let what = match got {
            Value::String(_) => "string".to_string(),
            Value::Number(n) => format!("number {n}"),
            Value::Bool(_) => "bool".into(),
            Value::Array(_) => "array".into(),
            Value::Object(_) => "object".into(),
            Value::Null => "null".into(),
        };
        fail(format!(
            "json: cannot unmarshal {what} into Go struct field PodCertificateRequestSpec.spec.{field} of type {go_type}"
        ))
    };
    for f in [
        "signerName",
        "podName",
        "podUID",
        "serviceAccountName",
        "serviceAccountUID",
        "nodeName",
        "nodeUID",
        "pkixPublicKey",
        "proofOfPossession",
        "stubPKCS10Request",
    ] {
        match &spec[f] {
            Value::Null | Value::String(_) => {}
            other => {
                return Err(type_error(
                    f,
                    other,
                    if f.ends_with("UID") {
                        "types.UID"
                    } else {
                        "string"
                    },
                ))
            }
        }
    }
    match &spec["maxExpirationSeconds"] {
        Value::Null => {}
        Value::Number(n) if n.as_i64().is_some_and(|v| i32::try_from(v).is_ok()) => {}
        other => return Err(type_error("maxExpirationSeconds", other, "int32")),
    }
    match &spec["unverifiedUserAnnotations"] {
        Value::Null => {}
        Value::Object(m) => {
            if let Some((k, v)) = m.iter().find(|(_, v)| !v.is_string() && !v.is_null()) {
                return Err(type_error(
                    &format!("unverifiedUserAnnotations.{k}"),
                    v,
                    "string",
                ));
            }
        }
        other => {
            return Err(type_error(
                "unverifiedUserAnnotations",
                other,
                "map[string]string",
            ))
        }
    }
    Ok(())
}

/// Go's base64.StdEncoding as encoding/json uses it for `[]byte` (CR/LF ignored).
pub(crate) fn decode_bytes(v: &Value) -> Result<Vec<u8>, String> {
    let Some(s) = v.as_str() else {
        return Ok(Vec::new());
    };
    let clean: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .map_err(|e| {
            let at = match e {
                base64::DecodeError::InvalidByte(o, _)
                | base64::DecodeError::InvalidLastSymbol(o, _) => o,
                _ => clean.len(),
            };
            format!("illegal base64 data at input byte {at}")
        })
}

pub(crate) fn spec_str<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj["spec"][key].as_str().unwrap_or("")
}

/// PrepareForCreate + defaulting + ValidatePodCertificateRequestCreate on the internal object,
/// as the kube-apiserver of minor version `kube_minor` does it (ML-DSA keys exist from 38 on).
pub fn validate_create(obj: &mut Value, kube_minor: u32) -> Result<(), Vec<FieldError>> {
    create::prepare_for_create(obj);
    let errs = create::validate(obj, kube_minor);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// Strategy.PrepareForUpdate (status kept from `old`) + ValidatePodCertificateRequestUpdate:
/// every spec field is immutable.
pub fn validate_update(old: &Value, new: &mut Value) -> Result<(), Vec<FieldError>> {
    new["status"] = old["status"].clone();
    if convert_spec_for_compare(&old["spec"]) == convert_spec_for_compare(&new["spec"]) {
        return Ok(());
    }
    Err(vec![FieldError::invalid_raw(
        "spec",
        create::go_spec_value(&new["spec"]),
        "field is immutable",
    )])
}

/// Spec equality as Go's Semantic.DeepEqual sees the typed struct (absent == empty).
fn convert_spec_for_compare(spec: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(m) = spec.as_object() {
        for (k, v) in m {
            let empty = v.is_null()
                || v.as_str().is_some_and(str::is_empty)
                || v.as_object().is_some_and(serde_json::Map::is_empty);
            if !empty {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// The status strategy: PrepareForUpdate (spec and metadata from `old`, as
/// metav1.ResetObjectMetaForStatus does) + ValidatePodCertificateRequestStatusUpdate with the
/// apiserver clock `now`.
pub fn validate_status_update(
    old: &Value,
    new: &mut Value,
    now: OffsetDateTime,
) -> Result<(), Vec<FieldError>> {
    status_update::prepare_for_update(old, new);
    let errs = status_update::validate(old, new, now);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// StatusStrategy.ValidateUpdate's authorization step (strategy.go): any change to the status
/// (issuing, denying or failing) needs verb `sign` on `signers` for the signerName or
/// `<domain>/*` (certauthorization.IsAuthorizedForSignerName). Refused as kube-apiserver does:
/// 422 Invalid, `spec.signerName: Forbidden: User "u" is not permitted to "sign" for signer "s"`.
/// Call after `validate_status_update` succeeded, with the prepared `new`.
pub fn authorize_status_update(
    user: &UserInfo,
    old: &Value,
    new: &Value,
    authorize: &dyn Fn(&Attributes) -> bool,
) -> Result<(), ApiError> {
    if status_semantically_equal(&old["status"], &new["status"]) {
        return Ok(());
    }
    let signer = spec_str(old, "signerName");
    if signers::is_authorized_for_signer_name(user, "sign", signer, authorize) {
        return Ok(());
    }
    let err = FieldError::forbidden(
        "spec.signerName",
        format!(
            "User {:?} is not permitted to \"sign\" for signer {:?}",
            user.username, signer
        ),
    );
    let name = old["metadata"]["name"].as_str().unwrap_or("");
    Err(ApiError::invalid(GROUP, KIND, name, &[err]))
}

/// The PodCertificateRequest cleaner (pkg/controller/certificates/cleaner/pcrcleaner.go):
/// a request is deleted once `creationTimestamp + max_age` is before `now`, whatever its state.
pub fn should_clean(obj: &Value, now: OffsetDateTime, max_age: time::Duration) -> bool {
    let Some(created) = obj["metadata"]["creationTimestamp"].as_str().and_then(|s| {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    }) else {
        return false;
    };
    created
        .checked_add(max_age)
        .is_some_and(|deadline| deadline < now)
}

/// The fields served as field selectors (pkg/registry/certificates/podcertificaterequest
/// GetAttrs), and their values on `obj`.
pub fn field_value(obj: &Value, field: &str) -> Option<String> {
    let v = match field {
        "metadata.name" => &obj["metadata"]["name"],
        "metadata.namespace" => &obj["metadata"]["namespace"],
        "spec.signerName" => &obj["spec"]["signerName"],
        "spec.podName" => &obj["spec"]["podName"],
        "spec.nodeName" => &obj["spec"]["nodeName"],
        _ => return None,
    };
    Some(v.as_str().unwrap_or("").to_string())
}
