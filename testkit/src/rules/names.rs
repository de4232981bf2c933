//! Name rules shared by the resources: k8s.io/apimachinery/pkg/util/validation/validation.go
//! (IsDNS1123Label, IsDNS1123Subdomain, IsQualifiedName, IsDomainPrefixedKey, RegexError),
//! k8s.io/apimachinery/pkg/api/validation/objectmeta.go (ValidateObjectMeta, annotations) and
//! pkg/apis/core/validation/names.go (ValidateSignerName, IsKubernetesSignerName,
//! ValidateClusterTrustBundleName). Messages are the Go ones, character for character.

use super::gofmt;
use crate::api_status::FieldError;
use serde_json::{json, Value};

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
pub const DNS1123_LABEL_MAX: usize = 63;
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
/// apimachinery TotalAnnotationSizeLimitB.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// validation.RegexError.
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut s = format!("{msg} (");
    if !examples.is_empty() {
        s.push_str("e.g. ");
        for (i, e) in examples.iter().enumerate() {
            if i > 0 {
                s.push_str(" or ");
            }
            s.push_str(&format!("'{e}', "));
        }
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

/// validation.MaxLenError.
pub fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn matches_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_alnum_lower(b[0])
        && is_alnum_lower(b[b.len() - 1])
        && b.iter().all(|&c| is_alnum_lower(c) || c == b'-')
}

fn matches_dns_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns_label)
}

/// validation.IsDNS1123Label.
pub fn is_dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !matches_dns_label(s) {
        if matches_dns_subdomain(s) {
            errs.push("must not contain dots".into());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// validation.IsDNS1123Subdomain.
pub fn is_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !matches_dns_subdomain(s) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// apimachineryvalidation.NameIsDNSSubdomain (with maskTrailingDash for prefixes).
pub fn name_is_dns_subdomain(name: &str, prefix: bool) -> Vec<String> {
    if prefix && name.len() > 1 && name.ends_with('-') {
        // Go drops the last two bytes and appends "a"; bytes, as a char boundary may not fall there.
        let mut masked = name.as_bytes()[..name.len() - 2].to_vec();
        masked.push(b'a');
        return is_dns1123_subdomain(&String::from_utf8_lossy(&masked));
    }
    is_dns1123_subdomain(name)
}

fn matches_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// validation.IsQualifiedName (content.IsLabelKey).
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let parts: Vec<&str> = value.split('/').collect();
    let mut errs = Vec::new();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                for m in is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            )]
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".into());
    } else if name.len() > DNS1123_LABEL_MAX {
        errs.push(format!("name part {}", max_len_error(DNS1123_LABEL_MAX)));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// validation.IsValidLabelValue.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !value.is_empty() && !matches_qualified_name_part(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// ValidateLabels (metav1validation): every key a qualified name, every value a label value.
/// A value that is not a map of strings is left to decoding.
pub fn validate_labels(field: &str, labels: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = labels.as_object() else {
        return errs;
    };
    for (k, v) in map {
        for m in is_qualified_name(k) {
            errs.push(FieldError::invalid(field, json!(k), m));
        }
        if let Some(v) = v.as_str() {
            for m in is_valid_label_value(v) {
                errs.push(FieldError::invalid(field, json!(v), m));
            }
        }
    }
    errs
}

/// validation.IsDomainPrefixedKey: a qualified name that must carry a `domain/` prefix.
pub fn is_domain_prefixed_key(field: &str, key: &str) -> Vec<FieldError> {
    if key.is_empty() {
        return vec![FieldError::required(field, "")];
    }
    let errs: Vec<FieldError> = is_qualified_name(key)
        .into_iter()
        .map(|m| FieldError::invalid(field, json!(key), m))
        .collect();
    if !errs.is_empty() {
        return errs;
    }
    if key.split('/').count() != 2 {
        return vec![FieldError::invalid(
            field,
            json!(key),
            "must be a domain-prefixed key (such as \"acme.io/foo\")",
        )];
    }
    Vec::new()
}

/// IsKubernetesSignerName (pkg/apis/core/validation/names.go).
pub fn is_kubernetes_signer_name(signer: &str) -> bool {
    let host = signer.split_once('/').map_or(signer, |(h, _)| h);
    host == "kubernetes.io" || host.ends_with(".kubernetes.io")
}

/// ValidateSignerName (pkg/apis/core/validation/names.go).
pub fn validate_signer_name(field: &str, signer: &str) -> Vec<FieldError> {
    let mut el = Vec::new();
    if signer.is_empty() {
        el.push(FieldError::required(field, ""));
        return el;
    }
    let segments: Vec<&str> = signer.split('/').collect();
    if segments.len() != 2 {
        el.push(FieldError::invalid(
            field,
            json!(signer),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
        return el;
    }
    if segments[0].len() > DNS1123_SUBDOMAIN_MAX {
        el.push(FieldError::too_long(field, DNS1123_SUBDOMAIN_MAX));
    }
    let domain_labels: Vec<&str> = segments[0].split('.').collect();
    for lbl in &domain_labels {
        let errs = is_dns1123_label(lbl);
        if !errs.is_empty() {
            for e in errs {
                el.push(FieldError::invalid(
                    field,
                    json!(segments[0]),
                    format!("validating label {}: {e}", gofmt::quote(lbl)),
                ));
            }
            break;
        }
    }
    if domain_labels.len() < 2 {
        el.push(FieldError::invalid(
            field,
            json!(segments[0]),
            "should be a domain with at least two segments separated by dots",
        ));
    }
    for lbl in segments[1].split('.') {
        let errs = is_dns1123_subdomain(lbl);
        if !errs.is_empty() {
            for e in errs {
                el.push(FieldError::invalid(
                    field,
                    json!(segments[1]),
                    format!("validating label {}: {e}", gofmt::quote(lbl)),
                ));
            }
            break;
        }
    }
    let max_signer = DNS1123_SUBDOMAIN_MAX + (DNS1123_SUBDOMAIN_MAX + DNS1123_LABEL_MAX + 1) + 1;
    if signer.len() > max_signer {
        el.push(FieldError::too_long(field, max_signer));
    }
    el
}

/// ValidateClusterTrustBundleName (pkg/apis/core/validation/names.go).
pub fn cluster_trust_bundle_name(signer: &str, name: &str, prefix: bool) -> Vec<String> {
    if signer.is_empty() {
        if name.contains(':') {
            return vec![
                "ClusterTrustBundle without signer name must not have \":\" in its name".into(),
            ];
        }
        return name_is_dns_subdomain(name, prefix);
    }
    let required = format!("{}:", signer.replace('/', ":"));
    match name.strip_prefix(&required) {
        None => vec![format!(
            "ClusterTrustBundle for signerName {signer} must be named with prefix {required}"
        )],
        Some(rest) => name_is_dns_subdomain(rest, prefix),
    }
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj["metadata"][key].as_str().unwrap_or("")
}

/// ValidateObjectMeta's name, generateName and namespace checks (objectmeta.go), with the
/// resource's name function.
pub fn validate_object_meta(
    obj: &Value,
    namespaced: bool,
    name_fn: &dyn Fn(&str, bool) -> Vec<String>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let generate_name = meta_str(obj, "generateName");
    if !generate_name.is_empty() {
        for m in name_fn(generate_name, true) {
            errs.push(FieldError::invalid(
                "metadata.generateName",
                json!(generate_name),
                m,
            ));
        }
    }
    let name = meta_str(obj, "name");
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for m in name_fn(name, false) {
            errs.push(FieldError::invalid("metadata.name", json!(name), m));
        }
    }
    let ns = meta_str(obj, "namespace");
    if namespaced {
        if ns.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            for m in is_dns1123_label(ns) {
                errs.push(FieldError::invalid("metadata.namespace", json!(ns), m));
            }
        }
    } else if !ns.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_name_messages() {
        assert!(is_qualified_name("example.com/Key_1").is_empty());
        assert_eq!(is_qualified_name("a/b/c").len(), 1);
        assert_eq!(
            is_qualified_name("/x"),
            vec!["prefix part must be non-empty".to_string()]
        );
        assert_eq!(
            is_qualified_name("-x")[0],
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        );
    }

    #[test]
    fn domain_prefixed_key() {
        assert!(is_domain_prefixed_key("f", "example.com/key").is_empty());
        let e = is_domain_prefixed_key("f", "key");
        assert_eq!(
            e[0].detail,
            "must be a domain-prefixed key (such as \"acme.io/foo\")"
        );
    }

    #[test]
    fn signer_names() {
        assert!(validate_signer_name("spec.signerName", "example.com/spiffe").is_empty());
        let e = validate_signer_name("spec.signerName", "nodomain");
        assert_eq!(
            e[0].detail,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'"
        );
        let e = validate_signer_name("spec.signerName", "localhost/x");
        assert_eq!(
            e[0].detail,
            "should be a domain with at least two segments separated by dots"
        );
        let e = validate_signer_name("spec.signerName", "Example.com/x");
        assert!(e[0]
            .detail
            .starts_with("validating label \"Example\": a lowercase RFC 1123 label"));
        assert!(is_kubernetes_signer_name("kubernetes.io/x"));
        assert!(is_kubernetes_signer_name("foo.kubernetes.io/x"));
        assert!(!is_kubernetes_signer_name("notkubernetes.io/x"));
    }

    #[test]
    fn generate_name_prefixes_may_end_with_a_dash() {
        assert!(name_is_dns_subdomain("req-", true).is_empty());
        assert!(!name_is_dns_subdomain("req-", false).is_empty());
        assert!(!name_is_dns_subdomain("\u{e9}-", true).is_empty());
    }

    #[test]
    fn ctb_names() {
        assert!(
            cluster_trust_bundle_name("example.com/spiffe", "example.com:spiffe:live", false)
                .is_empty()
        );
        assert_eq!(
            cluster_trust_bundle_name("example.com/spiffe", "live", false),
            vec!["ClusterTrustBundle for signerName example.com/spiffe must be named with prefix example.com:spiffe:".to_string()]
        );
        assert_eq!(
            cluster_trust_bundle_name("", "a:b", false),
            vec![
                "ClusterTrustBundle without signer name must not have \":\" in its name"
                    .to_string()
            ]
        );
    }
}
