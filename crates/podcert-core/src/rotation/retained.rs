//! The record of the roots this signer published, kept as an annotation on the
//! ClusterTrustBundle it owns ([`RETAINED_ROOTS_ANNOTATION`]): each root's SHA-256 and, once
//! its CA no longer signs, the time it may leave the bundle. An externally managed CA has no
//! stored state, so on start-up this record is what tells the signer which roots in its bundle
//! are its own (a root without a record is not kept) and until when (never extended).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::state::{anchor_fingerprint, RotationState};

/// JSON list of [`RetainedRoot`], written by the trust-bundle publisher.
pub const RETAINED_ROOTS_ANNOTATION: &str = "podcert.dev/retained-roots";
/// The last rotation request acted on for an externally managed CA (its state is not stored
/// anywhere else), so a restart does not act on it again.
pub const HANDLED_ROTATE_ANNOTATION: &str = "podcert.dev/rotate-handled";

/// At most this many roots are recorded (a bundle rarely holds more than three).
pub const MAX_RETAINED_ROOTS: usize = 64;
/// A longer annotation is ignored without being parsed.
pub const MAX_RETAINED_ROOTS_BYTES: usize = 16 * 1024;
/// A longer handled request value is ignored.
pub const MAX_HANDLED_BYTES: usize = 256;

/// One published root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetainedRoot {
    /// SHA-256 of the root's DER, lowercase hex.
    pub sha256: String,
    /// When it may leave the bundle; None while its CA is active or prepared (it may still
    /// sign, so its end is not known yet).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub retain_until: Option<OffsetDateTime>,
}

/// Why (part of) a record was ignored; never quotes the annotation (anyone allowed to edit
/// the bundle can write anything there).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordProblem {
    #[error("{RETAINED_ROOTS_ANNOTATION} is longer than {MAX_RETAINED_ROOTS_BYTES} bytes")]
    TooLong,
    #[error("{RETAINED_ROOTS_ANNOTATION} is not a JSON list: {0}")]
    NotAList(String),
    #[error("{RETAINED_ROOTS_ANNOTATION} has more than {MAX_RETAINED_ROOTS} entries; the rest are ignored")]
    TooMany,
    #[error("{RETAINED_ROOTS_ANNOTATION} has {0} malformed entries (ignored)")]
    Malformed(usize),
}

/// The record for `state`'s published roots, in bundle order: a retired CA's roots until its
/// drop time, the active and prepared CAs' roots open-ended. A root shared by several CAs
/// takes the longest retention (open-ended wins).
pub fn retained_roots(state: &RotationState) -> Vec<RetainedRoot> {
    let mut out: Vec<RetainedRoot> = Vec::new();
    let in_use = std::iter::once(&state.active)
        .chain(state.next.iter())
        .map(|r| (r, None));
    let retired = state
        .retired
        .iter()
        .map(|r| (r, Some(r.drop_at.unwrap_or(r.not_after))));
    for (r, until) in in_use.chain(retired) {
        for a in &r.anchors_pem {
            let Some(sha256) = anchor_fingerprint(a) else {
                continue;
            };
            match out.iter_mut().find(|e| e.sha256 == sha256) {
                Some(e) => {
                    e.retain_until = match (e.retain_until, until) {
                        (Some(x), Some(y)) => Some(x.max(y)),
                        _ => None,
                    }
                }
                None => out.push(RetainedRoot {
                    sha256,
                    retain_until: until,
                }),
            }
        }
    }
    out.truncate(MAX_RETAINED_ROOTS);
    out
}

/// The annotation value for `roots`.
pub fn encode_retained(roots: &[RetainedRoot]) -> String {
    // A list of plain strings and RFC 3339 times always serialises.
    serde_json::to_string(roots).unwrap_or_else(|_| "[]".into())
}

/// Reads the annotation: the well-formed entries (at most [`MAX_RETAINED_ROOTS`]) and what
/// was wrong with the rest. A malformed entry (a fingerprint that is not 64 hex digits, a
/// time that is not RFC 3339, another shape) is left out: its root is then not kept.
pub fn parse_retained(text: &str) -> (Vec<RetainedRoot>, Option<RecordProblem>) {
    if text.len() > MAX_RETAINED_ROOTS_BYTES {
        return (Vec::new(), Some(RecordProblem::TooLong));
    }
    let items: Vec<serde_json::Value> = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let problem = format!(
                "{} at line {}, column {}",
                super::state::json_problem(&e),
                e.line(),
                e.column()
            );
            return (Vec::new(), Some(RecordProblem::NotAList(problem)));
        }
    };
    let too_many = items.len() > MAX_RETAINED_ROOTS;
    let mut malformed = 0;
    let mut out: Vec<RetainedRoot> = Vec::new();
    for item in items.into_iter().take(MAX_RETAINED_ROOTS) {
        match serde_json::from_value::<RetainedRoot>(item) {
            Ok(mut r) if is_sha256_hex(&r.sha256) => {
                r.sha256.make_ascii_lowercase();
                if !out.iter().any(|e| e.sha256 == r.sha256) {
                    out.push(r);
                }
            }
            _ => malformed += 1,
        }
    }
    let problem = if too_many {
        Some(RecordProblem::TooMany)
    } else if malformed > 0 {
        Some(RecordProblem::Malformed(malformed))
    } else {
        None
    };
    (out, problem)
}

/// The handled request value recorded on the bundle, if it is plausible.
pub fn parse_handled(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty() && t.len() <= MAX_HANDLED_BYTES).then(|| t.to_string())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_entries_are_left_out_without_quoting_them() {
        let good = "ab".repeat(32);
        let text = format!(
            r#"[{{"sha256":"{good}","retainUntil":"2030-01-01T00:00:00Z"}},
               {{"sha256":"-----BEGIN PRIVATE KEY-----"}},
               {{"sha256":"{}","retainUntil":"-----BEGIN PRIVATE KEY-----"}},
               "-----BEGIN PRIVATE KEY-----",
               {{"sha256":"{}"}}]"#,
            "cd".repeat(32),
            "EF".repeat(32)
        );
        let (roots, problem) = parse_retained(&text);
        assert_eq!(roots.len(), 2);
        assert_eq!(roots[0].sha256, good);
        assert!(roots[0].retain_until.is_some());
        assert_eq!(roots[1].sha256, "ef".repeat(32));
        assert_eq!(roots[1].retain_until, None);
        assert_eq!(problem, Some(RecordProblem::Malformed(3)));

        let (roots, problem) = parse_retained(r#"{"sha256": "-----BEGIN PRIVATE KEY-----"}"#);
        assert!(roots.is_empty());
        let text = problem.unwrap().to_string();
        assert!(!text.contains("BEGIN"), "{text}");
        assert!(parse_retained(&" ".repeat(MAX_RETAINED_ROOTS_BYTES + 1))
            .0
            .is_empty());
    }

    #[test]
    fn too_many_entries_are_cut() {
        let list: Vec<RetainedRoot> = (0..MAX_RETAINED_ROOTS + 5)
            .map(|i| RetainedRoot {
                sha256: format!("{i:064x}"),
                retain_until: None,
            })
            .collect();
        let (roots, problem) = parse_retained(&encode_retained(&list));
        assert_eq!(roots.len(), MAX_RETAINED_ROOTS);
        assert_eq!(problem, Some(RecordProblem::TooMany));
    }
}
