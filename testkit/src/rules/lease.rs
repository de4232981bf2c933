//! Lease and events.k8s.io Event rules kube-apiserver applies: `metav1.MicroTime` fields
//! decode only as RFC 3339 with exactly six fractional digits (apimachinery
//! pkg/apis/meta/v1/micro_time.go parses with `2006-01-02T15:04:05.000000Z07:00`, and Go's
//! parser requires every digit of a `.000000` layout), a 400 otherwise; and
//! pkg/apis/coordination/validation: leaseDurationSeconds > 0, leaseTransitions >= 0.

use crate::api_status::{ApiError, FieldError};
use serde_json::Value;

/// Go's RFC3339Micro layout, for messages.
const LAYOUT: &str = "2006-01-02T15:04:05.000000Z07:00";

/// Whether `s` parses with Go's `time.Parse(RFC3339Micro, s)`.
pub fn is_micro_time(s: &str) -> bool {
    let b = s.as_bytes();
    // YYYY-MM-DDTHH:MM:SS.ffffff then Z or ±hh:mm.
    if b.len() < 27 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let shape = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..26);
    let zone = &b[26..];
    let zone_ok = zone == b"Z"
        || (zone.len() == 6
            && (zone[0] == b'+' || zone[0] == b'-')
            && zone[1..3].iter().all(u8::is_ascii_digit)
            && zone[3] == b':'
            && zone[4..6].iter().all(u8::is_ascii_digit));
    shape
        && zone_ok
        && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

fn check_micro(kind: &str, version: &str, v: &Value) -> Result<(), ApiError> {
    match v {
        Value::Null => Ok(()),
        Value::String(s) if is_micro_time(s) => Ok(()),
        Value::String(s) => Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: parsing time {s:?} as {LAYOUT:?}: cannot parse {s:?} as {LAYOUT:?}"
        ))),
        _ => Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: json: cannot unmarshal {} into Go value of type string",
            if v.is_number() { "number" } else { "non-string" }
        ))),
    }
}

/// The decoder's check of a Lease body's MicroTime fields.
pub fn check_lease_decodable(obj: &Value, version: &str) -> Result<(), ApiError> {
    for f in ["acquireTime", "renewTime"] {
        check_micro("Lease", version, &obj["spec"][f])?;
    }
    Ok(())
}

/// The decoder's check of an events.k8s.io Event body's MicroTime fields.
pub fn check_event_decodable(obj: &Value, version: &str) -> Result<(), ApiError> {
    check_micro("Event", version, &obj["eventTime"])?;
    check_micro("Event", version, &obj["series"]["lastObservedTime"])
}

/// ValidateLeaseSpec (the parts a Lease writer can get wrong).
pub fn validate_lease(obj: &Value) -> Vec<FieldError> {
    let spec = &obj["spec"];
    let mut errs = Vec::new();
    if let Some(d) = spec["leaseDurationSeconds"].as_i64() {
        if d <= 0 {
            errs.push(FieldError::invalid(
                "spec.leaseDurationSeconds",
                spec["leaseDurationSeconds"].clone(),
                "must be greater than 0",
            ));
        }
    }
    if let Some(t) = spec["leaseTransitions"].as_i64() {
        if t < 0 {
            errs.push(FieldError::invalid(
                "spec.leaseTransitions",
                spec["leaseTransitions"].clone(),
                "must be greater than or equal to 0",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_time_needs_six_digits_like_go() {
        assert!(is_micro_time("2026-01-01T00:00:00.000000Z"));
        assert!(is_micro_time("2026-01-01T00:00:00.123456+02:00"));
        for bad in [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.123Z",
            "2026-01-01T00:00:00.1234567Z",
            "yesterday",
            "2026-13-01T00:00:00.000000Z",
        ] {
            assert!(!is_micro_time(bad), "{bad}");
        }
    }
}
