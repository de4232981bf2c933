//! Kubernetes label selector semantics (`matchLabels` + `matchExpressions`), for the namespace
//! selector. Same meaning as apimachinery's `LabelSelectorAsSelector`: an empty selector
//! matches everything; `NotIn` also matches when the key is absent.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
    pub expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("matchExpressions operator {0:?} is not one of In, NotIn, Exists, DoesNotExist")]
    Operator(String),
    #[error("matchExpressions for key {0:?}: In and NotIn need at least one value")]
    NoValues(String),
    #[error("matchExpressions for key {0:?}: Exists and DoesNotExist take no values")]
    UnexpectedValues(String),
}

impl Operator {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        match s {
            "In" => Ok(Operator::In),
            "NotIn" => Ok(Operator::NotIn),
            "Exists" => Ok(Operator::Exists),
            "DoesNotExist" => Ok(Operator::DoesNotExist),
            other => Err(SelectorError::Operator(other.into())),
        }
    }
}

impl Requirement {
    pub fn new(key: &str, operator: Operator, values: &[String]) -> Result<Self, SelectorError> {
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(SelectorError::NoValues(key.into()))
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(SelectorError::UnexpectedValues(key.into()))
            }
            _ => {}
        }
        Ok(Requirement {
            key: key.into(),
            operator,
            values: values.iter().cloned().collect(),
        })
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match self.operator {
            Operator::In => v.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => v.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => v.is_some(),
            Operator::DoesNotExist => v.is_none(),
        }
    }
}

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for Selector {
    /// The selector in kubectl's `-l` syntax, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.expressions {
            let vals = r.values.iter().cloned().collect::<Vec<_>>().join(",");
            parts.push(match r.operator {
                Operator::In => format!("{} in ({vals})", r.key),
                Operator::NotIn => format!("{} notin ({vals})", r.key),
                Operator::Exists => r.key.clone(),
                Operator::DoesNotExist => format!("!{}", r.key),
            });
        }
        if parts.is_empty() {
            f.write_str("(everything)")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: Operator, vals: &[&str]) -> Requirement {
        let v: Vec<String> = vals.iter().map(|s| s.to_string()).collect();
        Requirement::new(key, op, &v).unwrap()
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(Selector::default().matches(&labels(&[])));
    }

    #[test]
    fn operators_follow_apimachinery() {
        let l = labels(&[("env", "prod"), ("team", "a")]);
        let none = labels(&[]);
        let cases = [
            (req("env", Operator::In, &["prod", "stage"]), true, false),
            (req("env", Operator::NotIn, &["prod"]), false, true),
            (req("env", Operator::Exists, &[]), true, false),
            (req("env", Operator::DoesNotExist, &[]), false, true),
        ];
        for (r, with, without) in cases {
            let s = Selector {
                expressions: vec![r.clone()],
                ..Default::default()
            };
            assert_eq!(s.matches(&l), with, "{r:?} on {l:?}");
            assert_eq!(s.matches(&none), without, "{r:?} on no labels");
        }
        let s = Selector {
            match_labels: labels(&[("team", "b")]),
            ..Default::default()
        };
        assert!(!s.matches(&l));
    }

    #[test]
    fn refuses_malformed_requirements() {
        assert!(Requirement::new("k", Operator::In, &[]).is_err());
        assert!(Requirement::new("k", Operator::Exists, &["x".into()]).is_err());
        assert!(Operator::parse("Equals").is_err());
    }
}
