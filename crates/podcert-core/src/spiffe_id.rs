//! SPIFFE IDs: validating trust domains and path segments, building `spiffe://td/path`.
//! Rules from the SPIFFE ID specification (section 2): trust domain `[a-z0-9.-_]`, path
//! segments `[a-zA-Z0-9.-_]`, no empty, `.` or `..` segments, at most 2048 bytes in all.

use std::fmt;

/// The SPIFFE ID length limit (bytes).
pub const MAX_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("trust domain {0:?} is invalid: use lowercase letters, digits, '.', '-' and '_' only")]
    TrustDomain(String),
    /// A trust domain is a DNS-like name: `a..b`, `.a` and `a.` have an empty label, which
    /// other SPIFFE implementations and X.509 name constraints treat as a different name.
    #[error("trust domain {0:?} is invalid: it may not start or end with '.' or contain '..' (an empty label)")]
    TrustDomainEmptyLabel(String),
    #[error("SPIFFE ID path segment {0:?} is invalid: segments use letters, digits, '.', '-' and '_', and may not be empty, '.' or '..'")]
    Segment(String),
    #[error("SPIFFE ID path is empty: a workload ID needs at least one segment")]
    EmptyPath,
    #[error("SPIFFE ID is {0} bytes, over the {MAX_LEN}-byte limit")]
    TooLong(usize),
}

/// A validated trust domain name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrustDomain(String);

impl TrustDomain {
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        let ok = !name.is_empty()
            && name.len() <= 255
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
            });
        if !ok {
            return Err(SpiffeIdError::TrustDomain(name.to_string()));
        }
        if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
            return Err(SpiffeIdError::TrustDomainEmptyLabel(name.to_string()));
        }
        Ok(TrustDomain(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks one path segment.
pub fn check_segment(seg: &str) -> Result<(), SpiffeIdError> {
    let ok = !seg.is_empty()
        && seg != "."
        && seg != ".."
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(SpiffeIdError::Segment(seg.to_string()))
    }
}

/// Builds `spiffe://<td>/<seg>/<seg>...` from segments, validating each.
pub fn build(td: &TrustDomain, segments: &[&str]) -> Result<String, SpiffeIdError> {
    if segments.is_empty() {
        return Err(SpiffeIdError::EmptyPath);
    }
    let mut id = String::with_capacity(64);
    id.push_str("spiffe://");
    id.push_str(td.as_str());
    for seg in segments {
        check_segment(seg)?;
        id.push('/');
        id.push_str(seg);
    }
    if id.len() > MAX_LEN {
        return Err(SpiffeIdError::TooLong(id.len()));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_default_workload_id() {
        let td = TrustDomain::new("cluster.local").unwrap();
        assert_eq!(
            build(&td, &["ns", "team-1", "sa", "default"]).unwrap(),
            "spiffe://cluster.local/ns/team-1/sa/default"
        );
    }

    #[test]
    fn refuses_bad_trust_domains_and_segments() {
        for bad in ["", "Upper.example", "has space", "a/b", "x:1"] {
            assert!(TrustDomain::new(bad).is_err(), "{bad:?} accepted");
        }
        for bad in [
            "a..b",
            ".cluster.local",
            "cluster.local.",
            ".",
            "..",
            "a.b..",
            "..a",
        ] {
            assert_eq!(
                TrustDomain::new(bad),
                Err(SpiffeIdError::TrustDomainEmptyLabel(bad.into())),
                "{bad:?}"
            );
        }
        assert!(TrustDomain::new("a.b-c_d.example").is_ok());
        let td = TrustDomain::new("td").unwrap();
        for bad in ["", ".", "..", "a/b", "a%2f", "é"] {
            assert_eq!(
                build(&td, &["ns", bad]),
                Err(SpiffeIdError::Segment(bad.into()))
            );
        }
        assert_eq!(build(&td, &[]), Err(SpiffeIdError::EmptyPath));
        let long = "a".repeat(2100);
        assert!(matches!(
            build(&td, &[&long]),
            Err(SpiffeIdError::TooLong(_))
        ));
    }
}
