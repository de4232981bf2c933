//! StatusStrategy.PrepareForUpdate and ValidatePodCertificateRequestStatusUpdate
//! (pkg/apis/certificates/validation/validation.go), with metav1validation.ValidateConditions.

use super::create::{PKIX_PATH, STUB_PATH};
use super::decode_bytes;
use crate::api_status::{FieldError, FieldErrorKind};
use crate::rules::keys::{self, PublicKey};
use crate::rules::{gofmt, names, pem_go};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const ISSUED: &str = "Issued";
const DENIED: &str = "Denied";
const FAILED: &str = "Failed";
/// certificates.MaxCertificateChainSize.
pub const MAX_CERTIFICATE_CHAIN: usize = 100 * 1024;
const MAX_REASON_LEN: usize = 1024;
const MAX_MESSAGE_LEN: usize = 32 * 1024;
const CHAIN_PATH: &str = "status.certificateChain";
const NOT_BEFORE_PATH: &str = "status.notBefore";
const NOT_AFTER_PATH: &str = "status.notAfter";
const REFRESH_PATH: &str = "status.beginRefreshAt";
const CONDITION_REASON_FMT: &str = "[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?";
const CONDITION_REASON_ERR: &str = "a condition reason must start with alphabetic character, optionally followed by a string of alphanumeric characters or '_,:', and must end with an alphanumeric character or '_'";

/// Spec from `old`; metadata from `old` except managedFields and resourceVersion
/// (metav1.ResetObjectMetaForStatus keeps everything else of the old object).
pub fn prepare_for_update(old: &Value, new: &mut Value) {
    let mut meta = old["metadata"].clone();
    for k in ["managedFields", "resourceVersion"] {
        match new["metadata"].get(k) {
            Some(v) => meta[k] = v.clone(),
            None => {
                if let Some(m) = meta.as_object_mut() {
                    m.remove(k);
                }
            }
        }
    }
    new["metadata"] = meta;
    new["spec"] = old["spec"].clone();
}

/// A condition as the typed struct holds it.
#[derive(Debug, Clone, PartialEq)]
struct Condition {
    kind: String,
    status: String,
    observed_generation: i64,
    last_transition_time: Option<OffsetDateTime>,
    reason: String,
    message: String,
}

/// The status as the typed struct holds it (absent, null and empty are the same).
#[derive(Debug, Clone, PartialEq)]
struct Status {
    conditions: Vec<Condition>,
    chain: String,
    not_before: Option<OffsetDateTime>,
    begin_refresh_at: Option<OffsetDateTime>,
    not_after: Option<OffsetDateTime>,
}

fn parse_time(v: &Value) -> Option<OffsetDateTime> {
    v.as_str()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

fn parse_status(v: &Value) -> Status {
    let conditions = v["conditions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| Condition {
                    kind: c["type"].as_str().unwrap_or("").into(),
                    status: c["status"].as_str().unwrap_or("").into(),
                    observed_generation: c["observedGeneration"].as_i64().unwrap_or(0),
                    last_transition_time: parse_time(&c["lastTransitionTime"]),
                    reason: c["reason"].as_str().unwrap_or("").into(),
                    message: c["message"].as_str().unwrap_or("").into(),
                })
                .collect()
        })
        .unwrap_or_default();
    Status {
        conditions,
        chain: v["certificateChain"].as_str().unwrap_or("").into(),
        not_before: parse_time(&v["notBefore"]),
        begin_refresh_at: parse_time(&v["beginRefreshAt"]),
        not_after: parse_time(&v["notAfter"]),
    }
}

/// apiequality.Semantic.DeepEqual of two statuses.
pub fn status_semantically_equal(a: &Value, b: &Value) -> bool {
    parse_status(a) == parse_status(b)
}

fn has_true(s: &Status, kind: &str) -> bool {
    s.conditions
        .iter()
        .any(|c| c.kind == kind && c.status == "True")
}

/// ValidatePodCertificateRequestStatusUpdate, errors in the order Go appends them.
pub fn validate(old: &Value, new: &Value, now: OffsetDateTime) -> Vec<FieldError> {
    let old_status = parse_status(&old["status"]);
    let new_status = parse_status(&new["status"]);
    let mut errs = validate_conditions(&new_status);
    if !errs.is_empty() {
        return errs;
    }
    if has_true(&old_status, ISSUED)
        || has_true(&old_status, DENIED)
        || has_true(&old_status, FAILED)
    {
        if new_status != old_status {
            errs.push(FieldError::invalid_omitted(
                "status",
                "immutable after PodCertificateRequest is issued, denied, or failed",
            ));
        }
        return errs;
    }
    if has_true(&new_status, DENIED) || has_true(&new_status, FAILED) {
        let want = Status {
            conditions: new_status.conditions.clone(),
            chain: String::new(),
            not_before: None,
            begin_refresh_at: None,
            not_after: None,
        };
        if new_status != want {
            errs.push(FieldError::invalid_omitted(
                "status",
                "non-condition status fields must be empty when denying or failing the PodCertificateRequest",
            ));
        }
        return errs;
    }
    if has_true(&new_status, ISSUED) {
        return validate_issued(old, &new_status, now);
    }
    if new_status != old_status {
        errs.push(FieldError::invalid_omitted(
            "status",
            "status is immutable unless transitioning to \"Issued\", \"Denied\", or \"Failed\"",
        ));
    }
    errs
}

/// The known-condition loop (paths built with formatIndex as a child name, hence
/// `status.conditions.[0].type`) followed by metav1validation.ValidateConditions.
fn validate_conditions(s: &Status) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut known = 0;
    for (i, c) in s.conditions.iter().enumerate() {
        match c.kind.as_str() {
            ISSUED | DENIED | FAILED => {
                known += 1;
                if known > 1 {
                    errs.push(FieldError::invalid(
                        format!("status.conditions.[{i}].type"),
                        json!(c.kind),
                        "There may be at most one condition with type \"Issued\", \"Denied\", or \"Failed\"",
                    ));
                }
                if c.status != "True" {
                    errs.push(FieldError::not_supported(
                        format!("status.conditions.[{i}].status"),
                        json!(c.status),
                        &["True"],
                    ));
                }
            }
            _ => errs.push(FieldError::not_supported(
                format!("status.conditions.[{i}].type"),
                json!(c.kind),
                &[ISSUED, DENIED, FAILED],
            )),
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, c) in s.conditions.iter().enumerate() {
        let p = format!("status.conditions[{i}]");
        if !seen.insert(c.kind.clone()) {
            errs.push(FieldError::new(
                FieldErrorKind::Duplicate,
                format!("{p}.type"),
                Some(json!(c.kind)),
                "",
            ));
        }
        for m in names::is_qualified_name(&c.kind) {
            errs.push(FieldError::invalid(format!("{p}.type"), json!(c.kind), m));
        }
        if !["True", "False", "Unknown"].contains(&c.status.as_str()) {
            errs.push(FieldError::not_supported(
                format!("{p}.status"),
                json!(c.status),
                &["False", "True", "Unknown"],
            ));
        }
        if c.observed_generation < 0 {
            errs.push(FieldError::invalid(
                format!("{p}.observedGeneration"),
                json!(c.observed_generation),
                "must be greater than or equal to zero",
            ));
        }
        if c.last_transition_time.is_none() {
            errs.push(FieldError::required(
                format!("{p}.lastTransitionTime"),
                "must be set",
            ));
        }
        if c.reason.is_empty() {
            errs.push(FieldError::required(format!("{p}.reason"), "must be set"));
        } else {
            if !reason_matches(&c.reason) {
                errs.push(FieldError::invalid(
                    format!("{p}.reason"),
                    json!(c.reason),
                    names::regex_error(
                        CONDITION_REASON_ERR,
                        CONDITION_REASON_FMT,
                        &[
                            "my_name",
                            "MY_NAME",
                            "MyName",
                            "ReasonA,ReasonB",
                            "ReasonA:ReasonB",
                        ],
                    ),
                ));
            }
            if c.reason.len() > MAX_REASON_LEN {
                errs.push(FieldError::too_long(format!("{p}.reason"), MAX_REASON_LEN));
            }
        }
        if c.message.len() > MAX_MESSAGE_LEN {
            errs.push(FieldError::too_long(
                format!("{p}.message"),
                MAX_MESSAGE_LEN,
            ));
        }
    }
    errs
}

/// `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`
fn reason_matches(r: &str) -> bool {
    let b = r.as_bytes();
    let Some((&first, rest)) = b.split_first() else {
        return false;
    };
    if !first.is_ascii_alphabetic() {
        return false;
    }
    if let Some(&last) = rest.last() {
        if !(last.is_ascii_alphanumeric() || last == b'_') {
            return false;
        }
    }
    rest.iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b',' | b':'))
}

/// The key the certificate must be issued to: the stub's when present (1.36+), else pkix.
fn requested_key(old: &Value) -> Result<PublicKey, FieldError> {
    let stub = decode_bytes(&old["spec"]["stubPKCS10Request"]).unwrap_or_default();
    if !stub.is_empty() {
        return keys::parse_stub_request(&stub)
            .and_then(|r| keys::parse_spki(&r.spki_der))
            .ok_or_else(|| FieldError::invalid_omitted(STUB_PATH, "must be a valid PKCS#10 CSR"));
    }
    let pkix = decode_bytes(&old["spec"]["pkixPublicKey"]).unwrap_or_default();
    keys::parse_spki(&pkix).ok_or_else(|| {
        FieldError::invalid_raw(
            PKIX_PATH,
            gofmt::bytes(&pkix),
            "must be a valid PKIX-serialized public key",
        )
    })
}

/// Go's mail.ParseAddress, reduced to what a certificate's rfc822Name can hold.
fn plausible_email(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !a
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"".contains(c))
        }
        None => false,
    }
}

struct Leaf {
    spki: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    dns: Vec<String>,
    emails: Vec<String>,
}

fn parse_leaf(der: &[u8]) -> Option<Leaf> {
    use x509_parser::extensions::GeneralName;
    let cert = crate::rules::x509_go::parse_certificate(der)?;
    let mut dns = Vec::new();
    let mut emails = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns.push((*d).to_string()),
                GeneralName::RFC822Name(e) => emails.push((*e).to_string()),
                _ => {}
            }
        }
    }
    let v = cert.validity();
    Some(Leaf {
        spki: cert.tbs_certificate.subject_pki.raw.to_vec(),
        not_before: OffsetDateTime::from_unix_timestamp(v.not_before.timestamp()).ok()?,
        not_after: OffsetDateTime::from_unix_timestamp(v.not_after.timestamp()).ok()?,
        dns,
        emails,
    })
}

/// The "transitioning to Issued" branch.
fn validate_issued(old: &Value, s: &Status, now: OffsetDateTime) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let chain_value = || json!(s.chain);
    if s.chain.len() > MAX_CERTIFICATE_CHAIN {
        errs.push(FieldError::too_long(CHAIN_PATH, MAX_CERTIFICATE_CHAIN));
        return errs;
    }
    let Some((leaf_block, mut rest)) = pem_go::decode(s.chain.as_bytes()) else {
        errs.push(FieldError::invalid(
            CHAIN_PATH,
            chain_value(),
            "issued certificate chain must contain at least one certificate",
        ));
        return errs;
    };
    if leaf_block.kind != "CERTIFICATE" {
        errs.push(FieldError::invalid(
            CHAIN_PATH,
            chain_value(),
            "issued certificate chain must consist entirely of CERTIFICATE PEM blocks",
        ));
        return errs;
    }
    let Some(leaf) = parse_leaf(&leaf_block.bytes) else {
        errs.push(FieldError::invalid(
            CHAIN_PATH,
            chain_value(),
            "leaf certificate does not parse as valid X.509",
        ));
        return errs;
    };
    for d in &leaf.dns {
        if d.is_empty() {
            errs.push(FieldError::invalid(
                CHAIN_PATH,
                json!(d),
                "leaf certificate should not contain empty DNSName",
            ));
        }
        if d.contains("..") {
            errs.push(FieldError::invalid(
                CHAIN_PATH,
                json!(d),
                "leaf certificate's DNSName should not contain '..'",
            ));
        }
        if d.starts_with('.') || d.ends_with('.') {
            errs.push(FieldError::invalid(
                CHAIN_PATH,
                json!(d),
                "leaf certificate's DNSName should not start or end with '.'",
            ));
        }
    }
    for e in &leaf.emails {
        if !plausible_email(e) {
            errs.push(FieldError::invalid(
                CHAIN_PATH,
                json!(e),
                "leaf certificate should not contain invalid EmailAddress",
            ));
        }
    }
    let want = match requested_key(old) {
        Ok(k) => k,
        Err(e) => {
            errs.push(e);
            return errs;
        }
    };
    if !matches!(want, PublicKey::Other) && keys::parse_spki(&leaf.spki).as_ref() != Some(&want) {
        errs.push(FieldError::invalid(
            CHAIN_PATH,
            chain_value(),
            "leaf certificate was not issued to the requested public key",
        ));
        return errs;
    }
    if s.not_before.is_none() {
        errs.push(FieldError::required(
            NOT_BEFORE_PATH,
            "must be present and consistent with the issued certificate",
        ));
    }
    if s.not_after.is_none() {
        errs.push(FieldError::required(
            NOT_AFTER_PATH,
            "must be present and consistent with the issued certificate",
        ));
    }
    if s.begin_refresh_at.is_none() {
        errs.push(FieldError::required(
            REFRESH_PATH,
            "must be present and in the range [notbefore+10min, notafter-10min]",
        ));
    }
    let (Some(nb), Some(na), Some(refresh)) = (s.not_before, s.not_after, s.begin_refresh_at)
    else {
        return errs;
    };
    if !errs.is_empty() {
        return errs;
    }
    let five = time::Duration::minutes(5);
    let ten = time::Duration::minutes(10);
    if nb != leaf.not_before {
        errs.push(FieldError::invalid_raw(
            NOT_BEFORE_PATH,
            gofmt::time(nb),
            "must be set to the NotBefore time encoded in the leaf certificate",
        ));
        return errs;
    }
    if !(nb > now - five && nb < now + five) {
        errs.push(FieldError::invalid_raw(
            NOT_BEFORE_PATH,
            gofmt::time(nb),
            "must be set to within 5 minutes of kube-apiserver's current time",
        ));
        return errs;
    }
    if na != leaf.not_after {
        errs.push(FieldError::invalid_raw(
            NOT_AFTER_PATH,
            gofmt::time(na),
            "must be set to the NotAfter time encoded in the leaf certificate",
        ));
        return errs;
    }
    let lifetime = (leaf.not_after - leaf.not_before).whole_seconds();
    if lifetime < 3600 {
        errs.push(FieldError::invalid_raw(
            CHAIN_PATH,
            gofmt::duration_secs(lifetime),
            "leaf certificate lifetime must be >= 1 hour",
        ));
        return errs;
    }
    let max_exp = old["spec"]["maxExpirationSeconds"]
        .as_i64()
        .unwrap_or(super::DEFAULT_MAX_EXPIRATION_SECONDS);
    if lifetime > max_exp {
        errs.push(FieldError::invalid_raw(
            CHAIN_PATH,
            gofmt::duration_secs(lifetime),
            format!("leaf certificate lifetime must be <= spec.maxExpirationSeconds ({max_exp})"),
        ));
        return errs;
    }
    // Checked: the times come from the client; an overflow means "far outside the window".
    if nb.checked_add(ten).is_none_or(|t| refresh < t) {
        errs.push(FieldError::invalid_raw(
            REFRESH_PATH,
            gofmt::time(refresh),
            "must be at least 10 minutes after status.notBefore",
        ));
        return errs;
    }
    if na.checked_sub(ten).is_none_or(|t| refresh > t) {
        errs.push(FieldError::invalid_raw(
            REFRESH_PATH,
            gofmt::time(refresh),
            "must be at least 10 minutes before status.notAfter",
        ));
        return errs;
    }
    while let Some((block, next)) = pem_go::decode(rest) {
        rest = next;
        if block.kind != "CERTIFICATE" {
            // The Go source spells it CERTFICATE here.
            errs.push(FieldError::invalid(
                CHAIN_PATH,
                chain_value(),
                "issued certificate chain must consist entirely of CERTFICATE PEM blocks",
            ));
            return errs;
        }
        if crate::rules::x509_go::parse_certificate(&block.bytes).is_none() {
            errs.push(FieldError::invalid(
                CHAIN_PATH,
                chain_value(),
                "intermediate certificate does not parse as valid X.509",
            ));
            return errs;
        }
    }
    errs
}
