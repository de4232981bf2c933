//! Building and signing the leaf (implementation owned by the ca/issue task).

use crate::ca::Ca;
use crate::proof::SubjectKey;
use time::{Duration, OffsetDateTime};

/// What the policy decided the leaf should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct LeafProfile {
    /// The full SPIFFE ID, `spiffe://<td>/<path>`, already validated.
    pub spiffe_id: String,
    /// Extra DNS SANs (already validated by policy).
    pub dns_names: Vec<String>,
    /// Upper bound of notAfter - notBefore: min(request maxExpirationSeconds, policy cap).
    pub max_lifetime: Duration,
    /// notBefore = now (whole seconds) - backdate.
    pub backdate: Duration,
    /// beginRefreshAt sits at this fraction of the lifetime (before jitter and clamping).
    pub refresh_fraction: f64,
}

/// A signed leaf and the status times that go with it.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedLeaf {
    /// Leaf then intermediates, PEM, never the root.
    pub chain_pem: String,
    pub leaf_der: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub begin_refresh_at: OffsetDateTime,
    /// Serial number, lowercase hex.
    pub serial_hex: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The CA cannot cover a lifetime of at least one hour from now: transient (rotate/reload).
    #[error("the CA expires at {ca_not_after}, too soon to issue a certificate valid for at least one hour")]
    CaExpiresTooSoon { ca_not_after: OffsetDateTime },
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Issues a leaf for `subject` under `ca` following `profile`, at `now`.
pub fn issue_leaf(
    _ca: &Ca,
    _subject: &SubjectKey,
    _profile: &LeafProfile,
    _now: OffsetDateTime,
) -> Result<IssuedLeaf, IssueError> {
    Err(IssueError::Signing("not implemented".into()))
}
