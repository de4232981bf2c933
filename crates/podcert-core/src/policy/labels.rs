//! Pod labels as template values and selector input. Labels are written by whoever may create
//! pods in the namespace, so a value is checked to be what it claims (a Kubernetes label value,
//! and for DNS a DNS label) before it reaches a SPIFFE ID or a DNS name.

use std::collections::BTreeMap;

/// The variable prefix: `{pod.labels.KEY}`.
pub const PREFIX: &str = "pod.labels.";

/// Why a label could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelProblem {
    #[error("the pod has no label {0:?}, which this signer's templates use; add it to the pod")]
    Missing(String),
    #[error("the pod's label {key:?} has the value {value:?}, which is not {wanted}")]
    Invalid {
        key: String,
        value: String,
        wanted: &'static str,
    },
}

impl LabelProblem {
    pub fn key(&self) -> &str {
        match self {
            LabelProblem::Missing(k) => k,
            LabelProblem::Invalid { key, .. } => key,
        }
    }
}

/// The `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?` part of label keys and values, at most 63.
fn name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label key as the apiserver validates it (`IsQualifiedName`): `[prefix/]name`, the prefix
/// a DNS subdomain.
pub fn valid_key(key: &str) -> bool {
    match key.split_once('/') {
        None => name_part(key),
        Some((prefix, name)) => {
            name_part(name)
                && !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|l| {
                    !l.is_empty()
                        && l.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        }
    }
}

/// A non-empty label value as the apiserver validates it (`IsValidLabelValue`). Its alphabet
/// is within a SPIFFE ID segment's, it has no `/`, and it is never `.` or `..`.
pub fn valid_value(value: &str) -> bool {
    name_part(value)
}

/// A lowercase RFC 1123 label: what a label value must be to become one DNS label.
pub fn dns_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

/// The value of `key`, checked with `ok`.
pub fn lookup<'a>(
    labels: Option<&'a BTreeMap<String, String>>,
    key: &str,
    ok: fn(&str) -> bool,
    wanted: &'static str,
) -> Result<&'a str, LabelProblem> {
    let value = labels
        .and_then(|l| l.get(key))
        .ok_or_else(|| LabelProblem::Missing(key.to_string()))?;
    if ok(value) {
        Ok(value)
    } else {
        Err(LabelProblem::Invalid {
            key: key.to_string(),
            value: value.chars().take(80).collect(),
            wanted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_follow_the_apiserver() {
        for good in ["app", "app.kubernetes.io/name", "a_b.c-d", "example.com/x"] {
            assert!(valid_key(good), "{good}");
        }
        for bad in ["", "/app", "Example.com/x", "a/b/c", "-app", "app-", "x/"] {
            assert!(!valid_key(bad), "{bad}");
        }
        for good in ["web", "Web_1.v2", "a"] {
            assert!(valid_value(good), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "-a", "a.", &"x".repeat(64), "a b"] {
            assert!(!valid_value(bad), "{bad}");
        }
        assert!(dns_label("web-1"));
        for bad in ["Web", "a.b", "a_b", "", "-a"] {
            assert!(!dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn lookup_names_the_missing_or_invalid_label() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "a/b".to_string())].into();
        assert_eq!(
            lookup(Some(&labels), "tier", valid_value, "x"),
            Err(LabelProblem::Missing("tier".into()))
        );
        assert!(matches!(
            lookup(Some(&labels), "app", valid_value, "x"),
            Err(LabelProblem::Invalid { .. })
        ));
        assert!(lookup(None, "app", valid_value, "x").is_err());
    }
}
