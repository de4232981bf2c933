//! Checks an Issued status against the key the kubelet holds, before projecting it.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

/// An Issued status the emulator accepted.
#[derive(Debug, Clone)]
pub struct Issuance {
    /// The chain re-encoded as PEM CERTIFICATE blocks, leaf first.
    pub chain_pem: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub begin_refresh_at: OffsetDateTime,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IssuanceError {
    #[error("status.certificateChain is missing or holds no CERTIFICATE block")]
    NoChain,
    #[error("status.certificateChain holds a {0:?} PEM block; only CERTIFICATE is allowed")]
    NotACertificate(String),
    #[error("status.certificateChain is not valid PEM: {0}")]
    BadPem(String),
    #[error("the leaf certificate does not parse: {0}")]
    BadLeaf(String),
    #[error("the leaf certificate's public key is not the key this kubelet generated")]
    WrongKey,
    #[error("status.{0} is missing or not an RFC 3339 time")]
    BadTime(&'static str),
    #[error("status.{field} ({status}) differs from the leaf's {field} ({leaf})")]
    TimeMismatch {
        field: &'static str,
        status: OffsetDateTime,
        leaf: OffsetDateTime,
    },
    #[error("status.beginRefreshAt ({0}) is not between notBefore and notAfter")]
    RefreshOutsideLifetime(OffsetDateTime),
}

/// Validates `status` (of a request whose condition is Issued) for the key `spki_der`.
pub fn check_issued(status: &Value, spki_der: &[u8]) -> Result<Issuance, IssuanceError> {
    let chain = status
        .get("certificateChain")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let blocks = pem::parse_many(chain).map_err(|e| IssuanceError::BadPem(e.to_string()))?;
    if blocks.is_empty() {
        return Err(IssuanceError::NoChain);
    }
    if let Some(b) = blocks.iter().find(|b| b.tag() != "CERTIFICATE") {
        return Err(IssuanceError::NotACertificate(b.tag().to_string()));
    }
    let (_, leaf) = X509Certificate::from_der(blocks[0].contents())
        .map_err(|e| IssuanceError::BadLeaf(e.to_string()))?;
    if leaf.tbs_certificate.subject_pki.raw != spki_der {
        return Err(IssuanceError::WrongKey);
    }
    let not_before = time_field(status, "notBefore")?;
    let not_after = time_field(status, "notAfter")?;
    let begin_refresh_at = time_field(status, "beginRefreshAt")?;
    let leaf_nb = leaf.validity().not_before.to_datetime();
    let leaf_na = leaf.validity().not_after.to_datetime();
    if not_before != leaf_nb {
        return Err(IssuanceError::TimeMismatch {
            field: "notBefore",
            status: not_before,
            leaf: leaf_nb,
        });
    }
    if not_after != leaf_na {
        return Err(IssuanceError::TimeMismatch {
            field: "notAfter",
            status: not_after,
            leaf: leaf_na,
        });
    }
    if begin_refresh_at <= not_before || begin_refresh_at >= not_after {
        return Err(IssuanceError::RefreshOutsideLifetime(begin_refresh_at));
    }
    // Like the kubelet's cleanCertificateChain: re-encode the blocks, dropping anything else.
    let chain_pem = blocks
        .iter()
        .map(|b| {
            // cleanCertificateChain re-encodes with Go's pem.EncodeToMemory: LF line endings.
            pem::encode_config(
                &pem::Pem::new("CERTIFICATE", b.contents().to_vec()),
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            )
        })
        .collect();
    Ok(Issuance {
        chain_pem,
        not_before,
        not_after,
        begin_refresh_at,
    })
}

fn time_field(status: &Value, field: &'static str) -> Result<OffsetDateTime, IssuanceError> {
    status
        .get(field)
        .and_then(Value::as_str)
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .ok_or(IssuanceError::BadTime(field))
}

/// The terminal condition of a request, if any: (type, reason, message).
pub fn terminal_condition(status: &Value) -> Option<(String, String, String)> {
    let conds = status.get("conditions")?.as_array()?;
    conds.iter().find_map(|c| {
        let ty = c.get("type")?.as_str()?;
        if !matches!(ty, "Issued" | "Denied" | "Failed") {
            return None;
        }
        let s = |k: &str| {
            c.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Some((ty.to_string(), s("reason"), s("message")))
    })
}
