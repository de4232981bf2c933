//! The persisted rotation state: every CA whose root is published, with its key while it may
//! still sign and the times that drive the schedule. Stored as JSON under [`STATE_KEY`] in the
//! CA Secret, so a restarted or newly elected replica continues exactly where the last stopped.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ca::{Ca, CaError, GeneratedCa, KeyResolver, PemKeys};

/// The Secret key holding the state, next to the PEM material.
pub const STATE_KEY: &str = "rotation.json";

/// The current layout of the stored state.
pub const STATE_VERSION: u32 = 1;

/// A private key in PEM. Its Debug output never shows the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyPem(String);

impl KeyPem {
    pub fn new(pem: impl Into<String>) -> Self {
        KeyPem(pem.into())
    }

    /// The PEM text, for loading the key; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyPem(<redacted>)")
    }
}

/// Who made a CA: generated CAs are rotated by this signer; external ones (files, a Secret
/// written by cert-manager or Vault) only change when their owner changes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CaOrigin {
    Generated,
    External,
}

/// One CA: what it is, its key while it may sign, and its times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaRecord {
    /// SHA-256 of the signing certificate's DER, lowercase hex (as [`Ca::fingerprint_sha256`]).
    pub fingerprint_sha256: String,
    pub origin: CaOrigin,
    /// The signing certificate followed by any intermediates, PEM.
    pub cert_pem: String,
    /// Present while the CA is active or prepared; removed when it retires (a retired CA never
    /// signs again, so its key need not be kept anywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<KeyPem>,
    /// The roots this CA's leaves chain to, one PEM CERTIFICATE block each.
    pub anchors_pem: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The longest leaf lifetime the policy allowed while this CA was active, in seconds:
    /// its root stays published that long after its last signature even if the policy has
    /// been lowered since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_leaf_lifetime_seconds: Option<i64>,
    /// When the CA was generated, or first seen (external).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When its roots entered the published bundle.
    #[serde(with = "time::serde::rfc3339")]
    pub published_at: OffsetDateTime,
    /// For a prepared CA: when it is due to start signing.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub activate_at: Option<OffsetDateTime>,
    /// When it started signing.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub activated_at: Option<OffsetDateTime>,
    /// When it stopped signing (its last possible signature).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub retired_at: Option<OffsetDateTime>,
    /// When its roots leave the bundle: every leaf it signed has expired by then.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub drop_at: Option<OffsetDateTime>,
}

impl CaRecord {
    /// Checks the material with [`Ca::from_pem`] at `now` and records it, published at `now`.
    pub fn from_material(
        cert_pem: &str,
        key_pem: &str,
        trust_anchors_pem: Option<&str>,
        origin: CaOrigin,
        now: OffsetDateTime,
    ) -> Result<CaRecord, CaError> {
        Self::from_material_with(cert_pem, key_pem, trust_anchors_pem, origin, now, &PemKeys)
    }

    /// As [`CaRecord::from_material`], the key possibly a reference `resolver` knows (a
    /// `pkcs11:` URI, kept in the record as the key).
    pub fn from_material_with(
        cert_pem: &str,
        key_pem: &str,
        trust_anchors_pem: Option<&str>,
        origin: CaOrigin,
        now: OffsetDateTime,
        resolver: &dyn KeyResolver,
    ) -> Result<CaRecord, CaError> {
        let ca = Ca::load(cert_pem, key_pem, trust_anchors_pem, now, resolver)?;
        Ok(CaRecord {
            fingerprint_sha256: ca.fingerprint_sha256(),
            origin,
            cert_pem: cert_pem.to_string(),
            key_pem: Some(KeyPem::new(key_pem)),
            anchors_pem: ca
                .trust_anchors_der()
                .iter()
                .map(|d| anchor_pem(d))
                .collect(),
            not_before: ca.not_before(),
            not_after: ca.not_after(),
            max_leaf_lifetime_seconds: None,
            created_at: now,
            published_at: now,
            activate_at: None,
            activated_at: None,
            retired_at: None,
            drop_at: None,
        })
    }

    pub(crate) fn from_generated(g: &GeneratedCa, now: OffsetDateTime) -> Result<Self, CaError> {
        if !g.key_pem.trim_start().starts_with("-----BEGIN") {
            // A key reference (a key generated in a PKCS#11 token): the core cannot open it,
            // and the certificate was just signed by that key; it is opened, and checked
            // against the certificate, where it is installed to sign.
            return Self::from_certificate(&g.cert_pem, &g.key_pem, CaOrigin::Generated, now);
        }
        Self::from_material(&g.cert_pem, &g.key_pem, None, CaOrigin::Generated, now)
    }

    /// A record for a self-signed CA certificate whose key is `key_reference`, checked as a
    /// CA certificate (no key check).
    fn from_certificate(
        cert_pem: &str,
        key_reference: &str,
        origin: CaOrigin,
        now: OffsetDateTime,
    ) -> Result<CaRecord, CaError> {
        let c = crate::ca::inspect_self_signed(cert_pem, now)?;
        Ok(CaRecord {
            fingerprint_sha256: c.fingerprint_sha256,
            origin,
            cert_pem: cert_pem.to_string(),
            key_pem: Some(KeyPem::new(key_reference)),
            anchors_pem: vec![anchor_pem(&c.der)],
            not_before: c.not_before,
            not_after: c.not_after,
            max_leaf_lifetime_seconds: None,
            created_at: now,
            published_at: now,
            activate_at: None,
            activated_at: None,
            retired_at: None,
            drop_at: None,
        })
    }

    /// A root found published (in a trust bundle) without its CA, kept as retired until
    /// `drop_at`: an external CA's earlier root whose leaves may still be alive. None if
    /// `anchor_pem` is not one PEM certificate.
    pub fn retired_anchor(
        anchor_pem_text: &str,
        max_leaf_lifetime: time::Duration,
        drop_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Option<CaRecord> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let block = pem::parse(anchor_pem_text).ok()?;
        if block.tag() != "CERTIFICATE" {
            return None;
        }
        let (_, cert) = X509Certificate::from_der(block.contents()).ok()?;
        let validity = cert.validity();
        let anchor = anchor_pem(block.contents());
        Some(CaRecord {
            fingerprint_sha256: sha256_hex(block.contents()),
            origin: CaOrigin::External,
            cert_pem: anchor.clone(),
            key_pem: None,
            anchors_pem: vec![anchor],
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
            max_leaf_lifetime_seconds: Some(max_leaf_lifetime.whole_seconds()),
            created_at: now,
            published_at: now,
            activate_at: None,
            activated_at: None,
            retired_at: Some(now),
            drop_at: Some(drop_at),
        })
    }

    /// Whether `fingerprint` (SHA-256 hex, any case, colons allowed) names this CA's signing
    /// certificate or one of its roots.
    pub fn matches(&self, fingerprint: &str) -> bool {
        let wanted = normalise_fingerprint(fingerprint);
        self.fingerprint_sha256 == wanted
            || self
                .anchors_pem
                .iter()
                .any(|a| anchor_fingerprint(a).as_deref() == Some(wanted.as_str()))
    }
}

/// Why a stored state was refused.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Only the category and position: serde_json's own message quotes the offending value,
    /// which may be key material.
    #[error(
        "{STATE_KEY} is not a valid rotation state: {problem} at line {line}, column {column}"
    )]
    Json {
        problem: String,
        line: usize,
        column: usize,
    },
    #[error("{STATE_KEY} has layout version {0}; this signer reads version {STATE_VERSION}")]
    Version(u32),
    #[error("{STATE_KEY}: the {role} CA {fingerprint} is inconsistent: {problem}")]
    Inconsistent {
        role: &'static str,
        fingerprint: String,
        problem: String,
    },
}

/// Every CA whose roots are published: the one signing, the one prepared to sign next, and
/// the retired ones kept until their leaves have expired (newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationState {
    pub version: u32,
    pub active: CaRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<CaRecord>,
    #[serde(default)]
    pub retired: Vec<CaRecord>,
    /// The last rotation request (the value of [`super::ROTATE_ANNOTATION`]) acted on, so a
    /// request is carried out once even across restarts and failovers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_trigger: Option<String>,
}

impl RotationState {
    /// A state whose only CA is `active`, signing from `now`.
    pub fn new(mut active: CaRecord, now: OffsetDateTime) -> Self {
        active.activated_at = Some(now);
        RotationState {
            version: STATE_VERSION,
            active,
            next: None,
            retired: Vec::new(),
            handled_trigger: None,
        }
    }

    /// The state of a freshly bootstrapped (generated) CA.
    pub fn bootstrap(generated: &GeneratedCa, now: OffsetDateTime) -> Result<Self, CaError> {
        Ok(Self::new(CaRecord::from_generated(generated, now)?, now))
    }

    /// The state for CA material found without a stored state (a Secret written before
    /// rotation existed, or external material): it signs from `now`.
    pub fn adopt(
        cert_pem: &str,
        key_pem: &str,
        trust_anchors_pem: Option<&str>,
        origin: CaOrigin,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        Self::adopt_with(cert_pem, key_pem, trust_anchors_pem, origin, now, &PemKeys)
    }

    /// As [`RotationState::adopt`], the key possibly a reference `resolver` knows.
    pub fn adopt_with(
        cert_pem: &str,
        key_pem: &str,
        trust_anchors_pem: Option<&str>,
        origin: CaOrigin,
        now: OffsetDateTime,
        resolver: &dyn KeyResolver,
    ) -> Result<Self, CaError> {
        let record = CaRecord::from_material_with(
            cert_pem,
            key_pem,
            trust_anchors_pem,
            origin,
            now,
            resolver,
        )?;
        Ok(Self::new(record, now))
    }

    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// Reads a stored state and checks that it can be acted on: the layout version, every
    /// certificate parses and matches its recorded fingerprint, the active and prepared CAs
    /// still hold their keys.
    pub fn from_json(text: &str) -> Result<Self, StateError> {
        let state: RotationState = serde_json::from_str(text).map_err(|e| StateError::Json {
            problem: json_problem(&e),
            line: e.line(),
            column: e.column(),
        })?;
        if state.version != STATE_VERSION {
            return Err(StateError::Version(state.version));
        }
        check_record(&state.active, "active", true)?;
        if let Some(next) = &state.next {
            check_record(next, "next", true)?;
        }
        for r in &state.retired {
            check_record(r, "retired", false)?;
        }
        Ok(state)
    }

    /// Every record, active first, then the prepared one, then the retired ones.
    pub fn records(&self) -> impl Iterator<Item = &CaRecord> {
        std::iter::once(&self.active)
            .chain(self.next.iter())
            .chain(self.retired.iter())
    }
}

/// What is wrong with a JSON text, without quoting any of it: serde_json's Display quotes the
/// offending value ("invalid type: string \"-----BEGIN PRIVATE KEY-----...\""), so only its
/// category is used, plus the name of a missing field (always one of this module's own).
pub(crate) fn json_problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let text = e.to_string();
    let missing = text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
        .filter(|n| n.len() <= 40 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    match (e.classify(), missing) {
        (Category::Data, Some(name)) => format!("the field {name:?} is missing"),
        (Category::Data, None) => {
            "a value has the wrong type or an unknown value (the value is not shown: it may be key material)".into()
        }
        (Category::Syntax, _) => "it is not valid JSON".into(),
        (Category::Eof, _) => "it ends early".into(),
        (Category::Io, _) => "it could not be read".into(),
    }
}

/// A recorded fingerprint fit to appear in an error: 64 hex digits, else a placeholder (the
/// field could hold anything, key material included).
fn shown_fingerprint(f: &str) -> String {
    if f.len() == 64 && f.bytes().all(|b| b.is_ascii_hexdigit()) {
        f.to_string()
    } else {
        "(with a malformed fingerprint)".into()
    }
}

fn check_record(r: &CaRecord, role: &'static str, needs_key: bool) -> Result<(), StateError> {
    let bad = |problem: String| StateError::Inconsistent {
        role,
        fingerprint: shown_fingerprint(&r.fingerprint_sha256),
        problem,
    };
    let first = pem::parse_many(&r.cert_pem)
        .ok()
        .and_then(|blocks| blocks.into_iter().next())
        .filter(|b| b.tag() == "CERTIFICATE")
        .ok_or_else(|| bad("its certificate is not PEM".into()))?;
    if sha256_hex(first.contents()) != r.fingerprint_sha256 {
        return Err(bad(
            "its certificate does not match its recorded fingerprint".into(),
        ));
    }
    if r.anchors_pem.is_empty()
        || r.anchors_pem
            .iter()
            .any(|a| anchor_fingerprint(a).is_none())
    {
        return Err(bad("its trust anchors are missing or not PEM".into()));
    }
    if needs_key && r.key_pem.is_none() {
        return Err(bad("its private key is missing".into()));
    }
    Ok(())
}

/// One anchor as a PEM CERTIFICATE block with LF line endings (so equal anchors compare equal).
pub(crate) fn anchor_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// SHA-256 of an anchor's DER, or None if it is not a single PEM CERTIFICATE block.
pub(crate) fn anchor_fingerprint(anchor_pem: &str) -> Option<String> {
    let block = pem::parse(anchor_pem).ok()?;
    (block.tag() == "CERTIFICATE").then(|| sha256_hex(block.contents()))
}

fn sha256_hex(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Lowercase hex without separators.
pub(crate) fn normalise_fingerprint(fingerprint: &str) -> String {
    fingerprint
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase()
}
