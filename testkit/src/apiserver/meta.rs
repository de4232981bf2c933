//! Object metadata helpers: names, timestamps, generateName, generation.

use crate::api_status::FieldError;
use rand::Rng;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The alphabet of `utilrand.String` (k8s.io/apimachinery/pkg/util/rand): no vowels, no
/// confusable characters.
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `generateName` + 5 random characters, like names.SimpleNameGenerator (the prefix is cut
/// to keep the name within 63 characters).
pub fn generate_name(prefix: &str) -> String {
    let max_prefix = 63 - 5;
    let prefix = if prefix.len() > max_prefix {
        &prefix[..max_prefix]
    } else {
        prefix
    };
    let mut rng = rand::thread_rng();
    let suffix: String = (0..5)
        .map(|_| ALPHANUMS[rng.gen_range(0..ALPHANUMS.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// metav1.Time: RFC 3339 in UTC with second precision.
pub fn timestamp(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

pub fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

pub fn new_uid() -> String {
    let b: [u8; 16] = rand::thread_rng().gen();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Validates `metadata.name` (ValidateObjectMeta with NameIsDNSSubdomain, or NameIsDNSLabel
/// for namespaces). RBAC objects only need a valid path segment.
pub fn validate_name(resource: &str, name: &str) -> Vec<FieldError> {
    let field = "metadata.name";
    if name.is_empty() {
        return vec![FieldError::required(
            field,
            "name or generateName is required",
        )];
    }
    if resource.starts_with("cluster") && resource.contains("role")
        || matches!(resource, "roles" | "rolebindings")
    {
        if name == "." || name == ".." || name.contains('/') || name.contains('%') {
            return vec![FieldError::invalid(
                field,
                json!(name),
                "may not contain '/' or '%' and may not be '.' or '..'",
            )];
        }
        return vec![];
    }
    // ClusterTrustBundle names follow their own rule (`<signer with / as :>:<suffix>`, so ':'
    // is legal): rules::ctb validates them (ValidateClusterTrustBundleName).
    if resource == "clustertrustbundles" {
        return vec![];
    }
    if resource == "namespaces" {
        let mut errs = vec![];
        if name.len() > 63 {
            errs.push(FieldError::invalid(
                field,
                json!(name),
                "must be no more than 63 characters",
            ));
        }
        if !is_label(name) {
            errs.push(FieldError::invalid(field, json!(name), DNS1123_LABEL_MSG));
        }
        return errs;
    }
    let mut errs = vec![];
    if name.len() > 253 {
        errs.push(FieldError::invalid(
            field,
            json!(name),
            "must be no more than 253 characters",
        ));
    }
    if !name.split('.').all(is_label) {
        errs.push(FieldError::invalid(
            field,
            json!(name),
            DNS1123_SUBDOMAIN_MSG,
        ));
    }
    errs
}

pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn namespace_of(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn rv_of(obj: &Value) -> &str {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn uid_of(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Ensures `obj.metadata` is an object and returns it.
pub fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let m = obj
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert_with(|| json!({})));
    match m {
        Some(v) => {
            if !v.is_object() {
                *v = json!({});
            }
            match v.as_object_mut() {
                Some(m) => m,
                None => unreachable!("metadata was just made an object"),
            }
        }
        None => unreachable!("obj was just made an object"),
    }
}

/// Everything but metadata and status: a change here bumps `metadata.generation`.
pub fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

/// Kubernetes' duration.HumanDuration, as the AGE column prints it.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{}d", h / 24)
        } else {
            format!("{}d{}h", h / 24, h % 24)
        }
    } else if h < 24 * 365 * 2 {
        format!("{}d", h / 24)
    } else if h < 24 * 365 * 8 {
        format!("{}y{}d", h / 24 / 365, (h / 24) % 365)
    } else {
        format!("{}y", h / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_use_the_kubernetes_alphabet() {
        let n = generate_name("req-");
        assert_eq!(n.len(), 9);
        assert!(n[4..].bytes().all(|c| ALPHANUMS.contains(&c)));
    }

    #[test]
    fn names_are_validated_as_dns_subdomains() {
        assert!(validate_name("pods", "a.b-c").is_empty());
        assert_eq!(validate_name("pods", "Bad").len(), 1);
        assert_eq!(validate_name("namespaces", "a.b").len(), 1);
        assert!(validate_name("clusterroles", "system:node").is_empty());
    }

    #[test]
    fn human_duration_matches_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3600 * 3), "3h");
        assert_eq!(human_duration(3600 * 50), "2d2h");
    }
}
