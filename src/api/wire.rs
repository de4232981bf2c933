//! Serde wire types for PodCertificateRequest in every served version (owned by the api task).
// TEMP STUB (lead, not committed)
use super::*;
pub struct RequestObject {
    pub request: Request,
    pub raw: serde_json::Value,
}
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct DecodeError;
pub fn decode(_input: &[u8]) -> Result<RequestObject, DecodeError> {
    Err(DecodeError)
}
pub fn with_status(
    raw: &serde_json::Value,
    _s: &Status,
    _now: OffsetDateTime,
) -> serde_json::Value {
    raw.clone()
}
pub fn format_time(t: OffsetDateTime) -> String {
    t.to_string()
}
pub fn from_value(_v: serde_json::Value) -> Result<RequestObject, DecodeError> {
    Err(DecodeError)
}
pub fn status_json(_s: &Status, _g: Option<i64>, _now: OffsetDateTime) -> serde_json::Value {
    serde_json::Value::Null
}
