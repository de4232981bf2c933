//! Kubernetes `Status` error bodies, shaped exactly like kube-apiserver's
//! (k8s.io/apimachinery/pkg/api/errors/errors.go and pkg/util/validation/field/errors.go).

use serde_json::{json, Value};

/// The kind of a field validation error (field.ErrorType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    TypeInvalid,
}

impl FieldErrorKind {
    /// The `causes[].reason` string (metav1.CauseType).
    pub fn cause_reason(self) -> &'static str {
        match self {
            FieldErrorKind::NotFound => "FieldValueNotFound",
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::Internal => "InternalError",
            FieldErrorKind::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// ErrorType.String() in field/errors.go.
    pub fn text(self) -> &'static str {
        match self {
            FieldErrorKind::NotFound => "Not found",
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
            FieldErrorKind::Internal => "Internal error",
            FieldErrorKind::TypeInvalid => "Invalid value",
        }
    }
}

/// One field error (field.Error).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    /// Dotted path, e.g. `spec.pkixPublicKey` or `status.conditions[0].reason`.
    pub field: String,
    /// The offending value, when the error type shows one.
    pub bad_value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    pub fn new(
        kind: FieldErrorKind,
        field: impl Into<String>,
        bad_value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind,
            field: field.into(),
            bad_value,
            detail: detail.into(),
        }
    }
    pub fn invalid(field: impl Into<String>, bad_value: Value, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Invalid, field, Some(bad_value), detail)
    }
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Required, field, None, detail)
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Forbidden, field, None, detail)
    }
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> Self {
        Self::new(
            FieldErrorKind::TooLong,
            field,
            None,
            format!("may not be more than {max_bytes} bytes"),
        )
    }
    /// Invalid with a bad value printed verbatim (Go prints times, durations and byte slices
    /// unquoted through their String()/%#v forms).
    pub fn invalid_raw(
        field: impl Into<String>,
        printed: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(
            FieldErrorKind::Invalid,
            field,
            Some(json!({ RAW_KEY: printed.into() })),
            detail,
        )
    }
    /// Invalid with the value omitted (field.OmitValueType).
    pub fn invalid_omitted(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Invalid, field, None, detail)
    }
    pub fn not_supported(field: impl Into<String>, bad_value: Value, supported: &[&str]) -> Self {
        let list = supported
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        Self::new(
            FieldErrorKind::NotSupported,
            field,
            Some(bad_value),
            format!("supported values: {list}"),
        )
    }

    /// ErrorBody(): the message without the field path.
    pub fn body(&self) -> String {
        let mut s = self.kind.text().to_string();
        match self.kind {
            FieldErrorKind::Required
            | FieldErrorKind::Forbidden
            | FieldErrorKind::TooLong
            | FieldErrorKind::Internal => {}
            _ => {
                if let Some(v) = &self.bad_value {
                    s.push_str(": ");
                    s.push_str(&go_value(v));
                }
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// Error(): `<field>: <body>`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }
}

/// Marks a bad value that is printed verbatim (see `FieldError::invalid_raw`).
const RAW_KEY: &str = "$goValue";

/// How Go's field errors print a bad value: strings quoted, numbers bare, others as JSON.
fn go_value(v: &Value) -> String {
    if let Some(raw) = v.get(RAW_KEY).and_then(Value::as_str) {
        return raw.to_string();
    }
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// An API error: HTTP code, `Status.reason`, message and details.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after_seconds: Option<u64>,
}

/// `resource.group` as Kubernetes prints a GroupResource (group omitted for the core group).
pub fn group_resource(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: &str, message: String, details: Option<Value>) -> Self {
        ApiError {
            code,
            reason: reason.into(),
            message,
            details,
            retry_after_seconds: None,
        }
    }

    fn details(group: &str, kind: &str, name: &str) -> Value {
        // StatusDetails.name is omitempty.
        let mut d = json!({ "kind": kind });
        if !name.is_empty() {
            d["name"] = json!(name);
        }
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        d
    }

    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {:?} not found", group_resource(group, resource), name),
            Some(Self::details(group, resource, name)),
        )
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!(
                "{} {:?} already exists",
                group_resource(group, resource),
                name
            ),
            Some(Self::details(group, resource, name)),
        )
    }

    /// 409 Conflict, e.g. a stale resourceVersion.
    pub fn conflict(group: &str, resource: &str, name: &str, err: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {:?}: {}",
                group_resource(group, resource),
                name,
                err
            ),
            Some(Self::details(group, resource, name)),
        )
    }

    /// The message apiserver uses for an optimistic-concurrency failure.
    pub const STALE_RV: &'static str =
        "the object has been modified; please apply your changes to the latest version and try again";

    /// 422 Invalid with field causes (errors.NewInvalid).
    pub fn invalid(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> Self {
        let joined = if errs.len() == 1 {
            errs[0].message()
        } else {
            format!(
                "[{}]",
                errs.iter()
                    .map(|e| e.message())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let causes: Vec<Value> = errs
            .iter()
            .map(|e| json!({ "reason": e.kind.cause_reason(), "message": e.body(), "field": e.field }))
            .collect();
        let mut details = Self::details(group, kind, name);
        details["causes"] = Value::Array(causes);
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        Self::new(
            422,
            "Invalid",
            format!("{qualified} {name:?} is invalid: {joined}"),
            Some(details),
        )
    }

    /// 403 Forbidden (errors.NewForbidden).
    pub fn forbidden(group: &str, resource: &str, name: &str, err: &str) -> Self {
        let gr = group_resource(group, resource);
        let message = if name.is_empty() {
            format!("{gr} is forbidden: {err}")
        } else {
            format!("{gr} {name:?} is forbidden: {err}")
        };
        Self::new(
            403,
            "Forbidden",
            message,
            Some(Self::details(group, resource, name)),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into(), None)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "Unauthorized", message.into(), None)
    }

    pub fn method_not_supported(group: &str, resource: &str, action: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "{action} is not supported on resources of kind {:?}",
                group_resource(group, resource)
            ),
            None,
        )
    }

    /// 410 Gone for a watch/list from a compacted resourceVersion (reason Expired).
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message.into(), None)
    }

    pub fn too_many_requests(message: impl Into<String>, retry_after_seconds: u64) -> Self {
        let mut e = Self::new(
            429,
            "TooManyRequests",
            message.into(),
            Some(json!({ "retryAfterSeconds": retry_after_seconds })),
        );
        e.retry_after_seconds = Some(retry_after_seconds);
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        let m = message.into();
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {m}"),
            Some(json!({ "causes": [{ "message": m }] })),
        )
    }

    /// A plain Go error (not an APIStatus): responsewriters.ErrorToAPIStatus answers 500
    /// with reason StatusReasonUnknown ("") and the error text.
    pub fn unknown(message: impl Into<String>) -> Self {
        Self::new(500, "", message.into(), None)
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message.into(), None)
    }

    /// The JSON `Status` body.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        if self.reason.is_empty() {
            // Status.reason is omitempty.
            s.as_object_mut().map(|m| m.remove("reason"));
        }
        s
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_message_matches_apiserver_format() {
        let e = ApiError::invalid(
            "certificates.k8s.io",
            "PodCertificateRequest",
            "req-1",
            &[FieldError::invalid(
                "spec.maxExpirationSeconds",
                json!(60),
                "must be in the range [3600, 7862400]",
            )],
        );
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "PodCertificateRequest.certificates.k8s.io \"req-1\" is invalid: spec.maxExpirationSeconds: Invalid value: 60: must be in the range [3600, 7862400]"
        );
        assert_eq!(
            e.to_status()["details"]["causes"][0]["reason"],
            "FieldValueInvalid"
        );
    }

    #[test]
    fn not_found_omits_core_group() {
        assert_eq!(
            ApiError::not_found("", "pods", "p").message,
            "pods \"p\" not found"
        );
        assert_eq!(
            ApiError::conflict("coordination.k8s.io", "leases", "l", ApiError::STALE_RV).message,
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"l\": the object has been modified; please apply your changes to the latest version and try again"
        );
    }
}
