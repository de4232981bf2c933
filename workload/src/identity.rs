//! SPIFFE identities: reading the one URI SAN of an X509-SVID and matching it against the
//! allow-list. Peers are authorised by this ID only, never by DNS names.

use std::fmt;
use std::str::FromStr;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The SPIFFE ID length limit (bytes), from the SPIFFE ID specification.
const MAX_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("{0:?} is not a SPIFFE ID: expected spiffe://<trust domain>/<path>")]
    NotSpiffe(String),
    #[error("{0:?} has an invalid trust domain: use lowercase letters, digits, '.', '-' and '_'")]
    TrustDomain(String),
    #[error("{0:?} has an invalid path: segments use letters, digits, '.', '-' and '_', and may not be empty, '.' or '..'")]
    Path(String),
    #[error("SPIFFE ID is {0} bytes, over the {MAX_LEN}-byte limit")]
    TooLong(usize),
    #[error("the certificate cannot be parsed: {0}")]
    BadCertificate(String),
    #[error("the certificate has {0} URI SANs; an X509-SVID has exactly one")]
    UriSanCount(usize),
    #[error(
        "allow-list entry {0:?} is invalid: use a full SPIFFE ID or a prefix ending in \"/*\""
    )]
    BadRule(String),
}

/// A syntactically valid SPIFFE ID (`spiffe://td/path`, path not empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId(String);

impl SpiffeId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain part.
    pub fn trust_domain(&self) -> &str {
        let rest = &self.0["spiffe://".len()..];
        rest.split('/').next().unwrap_or(rest)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SpiffeId {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_LEN {
            return Err(IdentityError::TooLong(s.len()));
        }
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| IdentityError::NotSpiffe(s.to_string()))?;
        let (td, path) = rest
            .split_once('/')
            .ok_or_else(|| IdentityError::NotSpiffe(s.to_string()))?;
        let td_ok = !td.is_empty()
            && td.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
            });
        if !td_ok {
            return Err(IdentityError::TrustDomain(s.to_string()));
        }
        if !path.split('/').all(segment_ok) {
            return Err(IdentityError::Path(s.to_string()));
        }
        Ok(SpiffeId(s.to_string()))
    }
}

fn segment_ok(seg: &str) -> bool {
    !seg.is_empty()
        && seg != "."
        && seg != ".."
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// The SPIFFE ID of a certificate: its single URI SAN (X509-SVID spec, section 2).
pub fn spiffe_id_of_cert(der: &[u8]) -> Result<SpiffeId, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let uris: Vec<&str> = san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(*u),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    match uris.as_slice() {
        [one] => one.parse(),
        other => Err(IdentityError::UriSanCount(other.len())),
    }
}

/// One allow-list entry: an exact ID, or every ID under a path prefix (`spiffe://td/ns/a/*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowRule {
    Exact(SpiffeId),
    /// Holds the prefix including its trailing '/'.
    Prefix(String),
}

impl FromStr for AllowRule {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_suffix("/*") {
            Some(base) => {
                // `spiffe://td/*` (a whole trust domain) is allowed: check the base as an ID
                // with a placeholder segment so the trust domain and any path are validated.
                format!("{base}/x")
                    .parse::<SpiffeId>()
                    .map_err(|_| IdentityError::BadRule(s.to_string()))?;
                Ok(AllowRule::Prefix(format!("{base}/")))
            }
            None => s
                .parse()
                .map(AllowRule::Exact)
                .map_err(|_| IdentityError::BadRule(s.to_string())),
        }
    }
}

impl AllowRule {
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            AllowRule::Exact(want) => want == id,
            // A valid ID never ends in '/', so a prefix match always leaves a non-empty tail.
            AllowRule::Prefix(prefix) => id.as_str().starts_with(prefix.as_str()),
        }
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowRule::Exact(id) => write!(f, "{id}"),
            AllowRule::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

/// The peers this workload talks to. Empty means nobody is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<AllowRule>);

impl AllowList {
    pub fn new(rules: Vec<AllowRule>) -> Self {
        AllowList(rules)
    }

    /// Parses each entry; the first invalid one is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, IdentityError> {
        entries
            .iter()
            .map(|e| e.as_ref().parse())
            .collect::<Result<Vec<_>, _>>()
            .map(AllowList)
    }

    pub fn allows(&self, id: &SpiffeId) -> bool {
        self.0.iter().any(|r| r.matches(id))
    }

    pub fn rules(&self) -> &[AllowRule] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    #[test]
    fn parses_valid_and_refuses_invalid_ids() {
        assert_eq!(
            id("spiffe://td.example/ns/a/sa/b").trust_domain(),
            "td.example"
        );
        for bad in [
            "https://td/ns/a",
            "spiffe://td",
            "spiffe://td/",
            "spiffe://TD/ns",
            "spiffe://td/ns//a",
            "spiffe://td/ns/../a",
            "spiffe://td/ns/a?b",
            "spiffe:///ns",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn exact_and_prefix_rules_match_as_documented() {
        let list =
            AllowList::parse(&["spiffe://td/ns/a/sa/web", "spiffe://td/ns/team-a/*"]).unwrap();
        assert!(list.allows(&id("spiffe://td/ns/a/sa/web")));
        assert!(!list.allows(&id("spiffe://td/ns/a/sa/web2")));
        assert!(list.allows(&id("spiffe://td/ns/team-a/sa/x")));
        // A prefix is a path prefix, not a string prefix.
        assert!(!list.allows(&id("spiffe://td/ns/team-ab/sa/x")));
        assert!(!list.allows(&id("spiffe://other/ns/team-a/sa/x")));
        let td = AllowList::parse(&["spiffe://td/*"]).unwrap();
        assert!(td.allows(&id("spiffe://td/anything")));
        assert!(!td.allows(&id("spiffe://td2/anything")));
        assert!(!AllowList::default().allows(&id("spiffe://td/x")));
    }

    #[test]
    fn refuses_bad_rules() {
        for bad in [
            "spiffe://td/ns/*/sa",
            "spiffe://td/ns*",
            "spiffe://td",
            "*",
            "spiffe://TD/*",
        ] {
            assert!(bad.parse::<AllowRule>().is_err(), "{bad} accepted");
        }
    }
}
