//! ClusterTrustBundle rules (validation and the `attest` check). Stubs: owned by the rules task.

use super::{Attributes, UserInfo};
use crate::status::{ApiError, FieldError};
use serde_json::Value;

/// Converts an object received in `version` (`v1beta1`, `v1`) to the internal form.
pub fn to_internal(obj: Value, _version: &str) -> Value {
    obj
}

/// Converts a stored object to what `version` serves.
pub fn from_internal(obj: &Value, version: &str) -> Value {
    let mut o = obj.clone();
    o["apiVersion"] = Value::String(format!("certificates.k8s.io/{version}"));
    o
}

pub fn validate_create(_obj: &mut Value) -> Result<(), Vec<FieldError>> {
    Ok(())
}

pub fn validate_update(_old: &Value, _new: &mut Value) -> Result<(), Vec<FieldError>> {
    Ok(())
}

/// Writing a bundle with `spec.signerName` needs `attest` on `signers` for that name.
pub fn authorize_write(
    _user: &UserInfo,
    _obj: &Value,
    _authorize: &dyn Fn(&Attributes) -> bool,
) -> Result<(), ApiError> {
    Ok(())
}

/// Field selector values (`spec.signerName`).
pub fn field_value(obj: &Value, field: &str) -> Option<String> {
    let _ = (obj, field);
    None
}
