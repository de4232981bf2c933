//! Which service accounts may get certificates: allow and deny lists of `namespace/name`
//! patterns (`*` for any). Deny wins; an empty allow list allows every account the deny list
//! does not name.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountPattern {
    /// `None`: any namespace.
    pub namespace: Option<String>,
    /// `None`: any service account.
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("service account pattern {0:?} is invalid: write NAMESPACE/NAME, with * for any (e.g. team-a/web, team-a/*, */default)")]
pub struct PatternError(String);

impl AccountPattern {
    /// `NAMESPACE/NAME`, either part `*`.
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        let (ns, name) = s.split_once('/').ok_or_else(|| PatternError(s.into()))?;
        let part = |p: &str| -> Result<Option<String>, PatternError> {
            if p == "*" {
                return Ok(None);
            }
            // Names are DNS subdomains (service accounts) or labels (namespaces): no wildcards
            // inside a name, so a pattern cannot match more than it says.
            let ok = !p.is_empty()
                && p.len() <= 253
                && p.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if ok {
                Ok(Some(p.to_string()))
            } else {
                Err(PatternError(s.into()))
            }
        };
        Ok(AccountPattern {
            namespace: part(ns)?,
            name: part(name)?,
        })
    }

    pub fn matches(&self, namespace: &str, name: &str) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == namespace)
            && self.name.as_deref().is_none_or(|n| n == name)
    }
}

impl fmt::Display for AccountPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.namespace.as_deref().unwrap_or("*"),
            self.name.as_deref().unwrap_or("*")
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountRules {
    pub allow: Vec<AccountPattern>,
    pub deny: Vec<AccountPattern>,
}

impl AccountRules {
    /// `Err` carries the sentence for the denial.
    pub fn check(&self, namespace: &str, name: &str) -> Result<(), String> {
        if let Some(p) = self.deny.iter().find(|p| p.matches(namespace, name)) {
            return Err(format!(
                "service account {namespace}/{name} is on this signer's deny list (pattern {p})"
            ));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|p| p.matches(namespace, name)) {
            let list = self
                .allow
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(format!(
                "service account {namespace}/{name} is not on this signer's allow list ({list})"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> AccountRules {
        AccountRules {
            allow: allow
                .iter()
                .map(|s| AccountPattern::parse(s).unwrap())
                .collect(),
            deny: deny
                .iter()
                .map(|s| AccountPattern::parse(s).unwrap())
                .collect(),
        }
    }

    #[test]
    fn empty_rules_allow_everyone() {
        assert!(AccountRules::default().check("a", "b").is_ok());
    }

    #[test]
    fn allow_list_restricts_and_deny_wins() {
        let r = rules(&["team-a/*", "*/ingress"], &["team-a/default"]);
        assert!(r.check("team-a", "web").is_ok());
        assert!(r.check("team-b", "ingress").is_ok());
        let e = r.check("team-b", "web").unwrap_err();
        assert!(e.contains("not on this signer's allow list"), "{e}");
        let e = r.check("team-a", "default").unwrap_err();
        assert!(e.contains("deny list (pattern team-a/default)"), "{e}");
    }

    #[test]
    fn patterns_cannot_hide_wildcards_inside_names() {
        for bad in [
            "team-a",
            "team-*/web",
            "team-a/we*",
            "/web",
            "Team/web",
            "a/b/c",
        ] {
            assert!(AccountPattern::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
