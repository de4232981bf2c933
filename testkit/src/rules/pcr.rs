//! PodCertificateRequest rules (pkg/apis/certificates/validation, pkg/registry/certificates/
//! podcertificaterequest/strategy.go). Stubs: implementation owned by the rules task.

use super::{Attributes, Lookup, UserInfo};
use crate::status::{ApiError, FieldError};
use serde_json::Value;
use time::OffsetDateTime;

/// Converts an object received in `version` (`v1alpha1`, `v1beta1`, `v1`) to the internal
/// (stored) form: the union of all versions' fields.
pub fn to_internal(obj: Value, _version: &str) -> Value {
    obj
}

/// Converts a stored object to what `version` serves, dropping fields that version lacks.
pub fn from_internal(obj: &Value, version: &str) -> Value {
    let mut o = obj.clone();
    o["apiVersion"] = Value::String(format!("certificates.k8s.io/{version}"));
    o
}

/// PrepareForCreate + defaulting + ValidateCreate on the internal object.
pub fn validate_create(_obj: &mut Value) -> Result<(), Vec<FieldError>> {
    Ok(())
}

/// PrepareForUpdate + ValidateUpdate for the main resource (status changes are dropped).
pub fn validate_update(_old: &Value, _new: &mut Value) -> Result<(), Vec<FieldError>> {
    Ok(())
}

/// The status strategy: PrepareForUpdate (spec/metadata from old) + ValidateUpdate of status,
/// with the apiserver clock `now`.
pub fn validate_status_update(
    _old: &Value,
    _new: &mut Value,
    _now: OffsetDateTime,
) -> Result<(), Vec<FieldError>> {
    Ok(())
}

/// The extra authorization on a status update that issues a certificate: verb `sign` on
/// `signers` for the signerName (or `<domain>/*`), checked with `authorize`.
pub fn authorize_status_update(
    _user: &UserInfo,
    _old: &Value,
    _new: &Value,
    _authorize: &dyn Fn(&Attributes) -> bool,
) -> Result<(), ApiError> {
    Ok(())
}

/// Whether the cleaner deletes this request at `now` (older than `max_age`).
pub fn should_clean(_obj: &Value, _now: OffsetDateTime, _max_age: time::Duration) -> bool {
    false
}

/// The fields served as field selectors, and their values on `obj`.
pub fn field_value(obj: &Value, field: &str) -> Option<String> {
    let _ = (obj, field);
    None
}

#[allow(dead_code)]
fn _uses(_: &dyn Lookup) {}
