//! DNS names in the leaf. A pod asks for names through one `unverifiedUserAnnotations` key (a
//! comma-separated list); the pod author controls that value, so each name must match one of
//! the signer's templates, rendered from the request's verified fields. A template label `*`
//! matches exactly one DNS label of the requested name; a requested name can never contain a
//! wildcard itself. Names in `always` are added to every leaf without being asked for.
//!
//! A pod label (`{pod.labels.KEY}`) is a whole DNS label of a template that also contains
//! `{namespace}`, and its value must be a lowercase RFC 1123 label (no dots): a pod's author
//! sets it, so it may choose a name only inside its own namespace's names.

use std::collections::BTreeSet;

use super::labels::{self, LabelProblem};
use super::template::{split_outside_braces, Template, TemplateError, Values, Var};

/// Why a leaf's DNS names could not be formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// A requested or always-added name is not allowed (the sentence for the denial).
    Name(String),
    /// An always-added name uses a pod label that is missing or not a DNS label.
    Label(LabelProblem),
}

const LABEL_WANTED: &str = "a DNS label (lowercase letters, digits and '-', at most 63, no '.')";

/// The annotation key a pod uses to ask for DNS names, unless the signer names another.
pub const DEFAULT_ANNOTATION_KEY: &str = "podcert.dev/dns-names";
/// At most this many names may be asked for in one request.
pub const MAX_REQUESTED: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Label {
    /// `*`: any one label.
    Any,
    Fixed(Template),
}

/// A parsed DNS name template such as `{serviceAccount}.{namespace}.svc` or `*.{namespace}.svc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTemplate {
    source: String,
    labels: Vec<Label>,
}

impl DnsTemplate {
    pub fn parse(text: &str, allow_any: bool) -> Result<Self, TemplateError> {
        let invalid = |problem: String| TemplateError::Invalid {
            template: text.into(),
            problem,
        };
        if text.is_empty() || text.len() > 253 {
            return Err(invalid("a DNS name template is 1 to 253 characters".into()));
        }
        let mut labels = Vec::new();
        let mut uses_pod_labels = false;
        for label in split_outside_braces(text, '.') {
            if label == "*" {
                if !allow_any {
                    return Err(invalid(
                        "'*' is only allowed in the templates a pod may ask for, not in names added to every leaf".into(),
                    ));
                }
                labels.push(Label::Any);
                continue;
            }
            if label.is_empty() {
                return Err(invalid("it has an empty label".into()));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(invalid(format!("label {label:?} starts or ends with '-'")));
            }
            let t = Template::parse(
                label,
                |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
                "lowercase letters, digits and '-' in DNS labels; '*' only as a whole label",
            )?;
            if t.uses_labels() {
                if t.parts().len() != 1 {
                    return Err(invalid(format!(
                        "label {label:?}: a pod label must be a whole DNS label by itself"
                    )));
                }
                uses_pod_labels = true;
            }
            labels.push(Label::Fixed(t));
        }
        let has_namespace = labels
            .iter()
            .any(|l| matches!(l, Label::Fixed(t) if t.uses(Var::Namespace)));
        if uses_pod_labels && !has_namespace {
            return Err(invalid(
                "a template with a pod label must also contain {namespace}: labels are set by whoever creates pods, so only the namespace keeps names apart".into(),
            ));
        }
        if labels.len() < 2 && labels.iter().all(|l| *l == Label::Any) {
            return Err(invalid(
                "'*' alone would match any single-label name".into(),
            ));
        }
        Ok(DnsTemplate {
            source: text.into(),
            labels,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the template reads a pod label.
    pub fn uses_labels(&self) -> bool {
        self.labels
            .iter()
            .any(|l| matches!(l, Label::Fixed(t) if t.uses_labels()))
    }

    /// The template for `v` as a list of label patterns (`None` = any label). A variable's
    /// value may hold dots (service account and pod names are DNS subdomains), so rendered
    /// text is split into labels again.
    fn pattern(&self, v: &Values<'_>) -> Result<Vec<Option<String>>, LabelProblem> {
        let mut out = Vec::new();
        for l in &self.labels {
            match l {
                Label::Any => out.push(None),
                Label::Fixed(t) => out.extend(
                    t.render(v, labels::dns_label, LABEL_WANTED)?
                        .split('.')
                        .map(|s| Some(s.into())),
                ),
            }
        }
        Ok(out)
    }

    /// A template whose pod label is missing or unusable matches nothing.
    fn matches(&self, v: &Values<'_>, name: &str) -> bool {
        let Ok(pattern) = self.pattern(v) else {
            return false;
        };
        let labels: Vec<&str> = name.split('.').collect();
        pattern.len() == labels.len()
            && pattern
                .iter()
                .zip(&labels)
                .all(|(p, l)| p.as_deref().is_none_or(|p| p == *l))
    }

    /// The concrete name (templates without `*`).
    fn render(&self, v: &Values<'_>) -> Result<String, LabelProblem> {
        Ok(self
            .pattern(v)?
            .into_iter()
            .map(|l| l.unwrap_or_default())
            .collect::<Vec<_>>()
            .join("."))
    }
}

/// A signer's DNS name rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsPolicy {
    /// The `unverifiedUserAnnotations` key that carries requested names.
    pub annotation_key: String,
    /// Templates a requested name must match.
    pub allowed: Vec<DnsTemplate>,
    /// Names added to every leaf.
    pub always: Vec<DnsTemplate>,
}

/// Checks a requested name's syntax (RFC 1123, lowercase). `Err` is the problem.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    if name.contains('*') {
        return Err(format!(
            "{name:?} is a wildcard; this signer never issues wildcard names"
        ));
    }
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{name:?} is not 1 to 253 characters long"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{name:?} is not a valid DNS name (lowercase letters, digits and '-' in labels of 1 to 63 characters)"
            ));
        }
    }
    Ok(())
}

impl DnsPolicy {
    /// Whether any template reads a pod label (the pod must be read to decide).
    pub fn uses_labels(&self) -> bool {
        self.allowed
            .iter()
            .chain(&self.always)
            .any(DnsTemplate::uses_labels)
    }

    /// The DNS names for the leaf: the `always` names, then the requested ones, without
    /// duplicates.
    pub fn resolve(&self, v: &Values<'_>) -> Result<Vec<String>, DnsError> {
        let req = v.req;
        let mut out: Vec<String> = Vec::new();
        let mut seen = BTreeSet::new();
        for t in &self.always {
            let name = t.render(v).map_err(DnsError::Label)?;
            check_name(&name).map_err(|e| {
                DnsError::Name(format!(
                    "the signer's always-added name template {:?} gives {e}",
                    t.as_str()
                ))
            })?;
            if seen.insert(name.clone()) {
                out.push(name);
            }
        }
        let Some(value) = req.unverified_user_annotations.get(&self.annotation_key) else {
            return Ok(out);
        };
        let requested: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if requested.len() > MAX_REQUESTED {
            return Err(DnsError::Name(format!(
                "{} asks for {} DNS names; at most {MAX_REQUESTED} are allowed",
                self.annotation_key,
                requested.len()
            )));
        }
        for name in requested {
            // Compared as written: uppercase is refused rather than folded, so what the pod
            // asked for is exactly what it gets.
            check_name(name)
                .map_err(|e| DnsError::Name(format!("{}: {e}", self.annotation_key)))?;
            if !self.allowed.iter().any(|t| t.matches(v, name)) {
                let allowed = if self.allowed.is_empty() {
                    "none".to_string()
                } else {
                    self.allowed
                        .iter()
                        .map(|t| format!("{:?}", t.render_for_message(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(DnsError::Name(format!(
                    "{}: {name:?} matches none of the names this pod may ask for ({allowed})",
                    self.annotation_key
                )));
            }
            if seen.insert(name.to_string()) {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }
}

impl DnsTemplate {
    /// The template with this request's values in place and `*` kept, for messages (the
    /// template itself when a pod label is unusable).
    fn render_for_message(&self, v: &Values<'_>) -> String {
        match self.pattern(v) {
            Ok(p) => p
                .into_iter()
                .map(|l| l.unwrap_or_else(|| "*".into()))
                .collect::<Vec<_>>()
                .join("."),
            Err(_) => self.source.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests_support::req;
    use crate::request::Request;
    use std::collections::BTreeMap;

    fn policy(allowed: &[&str], always: &[&str]) -> DnsPolicy {
        DnsPolicy {
            annotation_key: DEFAULT_ANNOTATION_KEY.into(),
            allowed: allowed
                .iter()
                .map(|t| DnsTemplate::parse(t, true).unwrap())
                .collect(),
            always: always
                .iter()
                .map(|t| DnsTemplate::parse(t, false).unwrap())
                .collect(),
        }
    }

    fn resolve(p: &DnsPolicy, r: &Request) -> Result<Vec<String>, String> {
        p.resolve(&Values::request(r)).map_err(|e| match e {
            DnsError::Name(m) => m,
            DnsError::Label(l) => l.to_string(),
        })
    }

    fn asking(names: &str) -> Request {
        let mut r = req();
        r.unverified_user_annotations
            .insert(DEFAULT_ANNOTATION_KEY.into(), names.into());
        r
    }

    #[test]
    fn always_names_are_added_without_asking() {
        let p = policy(&[], &["{serviceAccount}.{namespace}.svc"]);
        assert_eq!(resolve(&p, &req()).unwrap(), vec!["web.team-a.svc"]);
    }

    #[test]
    fn requested_names_must_match_a_template() {
        let p = policy(
            &[
                "{serviceAccount}.{namespace}.svc",
                "{serviceAccount}.{namespace}.svc.cluster.local",
            ],
            &[],
        );
        assert_eq!(
            resolve(
                &p,
                &asking("web.team-a.svc, web.team-a.svc.cluster.local,web.team-a.svc")
            )
            .unwrap(),
            vec!["web.team-a.svc", "web.team-a.svc.cluster.local"]
        );
        // Another namespace's service.
        let e = resolve(&p, &asking("web.team-b.svc")).unwrap_err();
        assert!(e.contains("matches none"), "{e}");
        assert!(e.contains("\"web.team-a.svc\""), "{e}");
        // Another service account's name.
        assert!(resolve(&p, &asking("db.team-a.svc")).is_err());
        // A suffix trick.
        assert!(resolve(&p, &asking("web.team-a.svc.evil.example")).is_err());
    }

    #[test]
    fn star_matches_exactly_one_label_of_the_right_namespace() {
        let p = policy(&["*.{namespace}.svc"], &[]);
        assert!(resolve(&p, &asking("api.team-a.svc")).is_ok());
        assert!(resolve(&p, &asking("a.b.team-a.svc")).is_err());
        assert!(resolve(&p, &asking("api.team-b.svc")).is_err());
        assert!(resolve(&p, &asking("team-a.svc")).is_err());
    }

    #[test]
    fn wildcards_and_bad_names_are_refused() {
        let p = policy(&["*.{namespace}.svc"], &[]);
        let e = resolve(&p, &asking("*.team-a.svc")).unwrap_err();
        assert!(e.contains("wildcard"), "{e}");
        for bad in [
            "Api.team-a.svc",
            "-a.team-a.svc",
            "a..team-a.svc",
            "a_b.team-a.svc",
        ] {
            assert!(resolve(&p, &asking(bad)).is_err(), "{bad} accepted");
        }
        let many = (0..17)
            .map(|i| format!("n{i}.team-a.svc"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(resolve(&p, &asking(&many))
            .unwrap_err()
            .contains("at most 16"));
    }

    #[test]
    fn no_templates_means_no_names_may_be_asked_for() {
        let p = policy(&[], &[]);
        assert!(resolve(&p, &req()).unwrap().is_empty());
        assert!(resolve(&p, &asking("web.team-a.svc"))
            .unwrap_err()
            .contains("(none)"));
    }

    #[test]
    fn pod_labels_are_whole_dns_labels_inside_the_namespace() {
        let p = policy(
            &["{pod.labels.app}.{namespace}.svc"],
            &["{pod.labels.app}.{namespace}.svc.cluster.local"],
        );
        assert!(p.uses_labels());
        let mut labels = BTreeMap::new();
        labels.insert("app".to_string(), "api".to_string());
        let mut r = asking("api.team-a.svc");
        let v = Values {
            req: &r,
            labels: Some(&labels),
        };
        assert_eq!(
            p.resolve(&v).unwrap(),
            vec!["api.team-a.svc.cluster.local", "api.team-a.svc"]
        );
        // Another label value's name, and no label at all.
        r = asking("db.team-a.svc");
        let v = Values {
            req: &r,
            labels: Some(&labels),
        };
        assert!(matches!(p.resolve(&v), Err(DnsError::Name(_))));
        assert_eq!(
            p.resolve(&Values::request(&req())),
            Err(DnsError::Label(LabelProblem::Missing("app".into())))
        );
        // A value with a dot would add a label; uppercase is no DNS name.
        for bad in ["a.evil", "API", "a_b"] {
            labels.insert("app".into(), bad.into());
            let r = req();
            let v = Values {
                req: &r,
                labels: Some(&labels),
            };
            assert!(
                matches!(
                    p.resolve(&v),
                    Err(DnsError::Label(LabelProblem::Invalid { .. }))
                ),
                "{bad}"
            );
        }
        for (bad, needle) in [
            ("{pod.labels.app}.svc", "{namespace}"),
            ("x-{pod.labels.app}.{namespace}.svc", "whole DNS label"),
            ("*.{pod.labels.app}.example.com", "{namespace}"),
        ] {
            match DnsTemplate::parse(bad, true) {
                Ok(_) => panic!("{bad} accepted"),
                Err(e) => assert!(e.to_string().contains(needle), "{bad}: {e}"),
            }
        }
        // A key with dots stays one variable.
        assert!(
            DnsTemplate::parse("{pod.labels.app.kubernetes.io/name}.{namespace}.svc", false)
                .is_ok()
        );
    }

    #[test]
    fn templates_are_checked_when_loaded() {
        assert!(DnsTemplate::parse("*.{namespace}.svc", false).is_err());
        assert!(DnsTemplate::parse("*", true).is_err());
        assert!(DnsTemplate::parse("a..b", true).is_err());
        assert!(DnsTemplate::parse("{annotation}.svc", true).is_err());
        assert!(DnsTemplate::parse("Web.svc", true).is_err());
        assert!(DnsTemplate::parse("we*b.svc", true).is_err());
    }
}
