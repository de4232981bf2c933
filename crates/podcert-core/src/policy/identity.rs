//! The SPIFFE ID a request gets: `spiffe://<trust domain>/<path template rendered>`.
//!
//! # Which templates are accepted, and why they give every workload its own ID
//!
//! Rules (checked by [`IdTemplate::parse`]):
//! 1. Every variable is a whole path segment by itself (`ns/{namespace}`, not
//!    `ns-{namespace}` or `{namespace}-{serviceAccount}`).
//! 2. `{namespace}` appears. Either `{serviceAccount}` appears too (one identity per service
//!    account), or no other variable does (one identity per namespace, e.g. `ns/{namespace}`).
//! 3. `{podName}` and `{nodeName}` only narrow an identity: they need both `{namespace}` and
//!    `{serviceAccount}`, and come after both.
//! 4. A literal segment that names a variable (`ns`, `namespace(s)`, `sa`,
//!    `serviceaccount(s)`, `pod(s)`, `node(s)`, any case) is followed by that variable's
//!    segment: `sa/{podName}` and `ns/{serviceAccount}` are refused, since a reader of
//!    `sa/X` takes X for the service account.
//!
//! Why distinct (namespace, service account) pairs get distinct IDs: every value is checked to
//! be a Kubernetes name before rendering ([`check_identity`]: a namespace is a DNS label, the
//! other names are DNS subdomains), so no value contains `/`. The literals are fixed, so a
//! rendered path has exactly as many `/`-separated segments as the template, and segment i of
//! the ID is segment i of the template rendered. By rule 1 the segment of `{namespace}` renders
//! to the namespace itself, and likewise for `{serviceAccount}`: both values can be read back
//! from the ID, so two requests that differ in either get different IDs. (Without rule 1,
//! `{namespace}-{serviceAccount}` gives `a-b-c` for namespace `a-b`, account `c` and for
//! namespace `a`, account `b-c`: Kubernetes names may contain `-` and `.`.) A per-namespace
//! template likewise names exactly one namespace. Other signers cannot mint IDs in this
//! trust domain: one trust domain is served by one signer and one CA (podcert-runtime signer_manager/conflict.rs).

use std::collections::BTreeMap;

use crate::request::Request;
use crate::spiffe_id::{self, SpiffeIdError, TrustDomain};

use super::labels::{self, LabelProblem};
use super::template::{split_outside_braces, Part, Template, TemplateError, Values, Var};

/// The default path: one identity per service account, like SPIRE's Kubernetes workload
/// attestor and Istio.
pub const DEFAULT_PATH: &str = "ns/{namespace}/sa/{serviceAccount}";

/// A validated SPIFFE ID path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTemplate(Template);

/// The variable a literal segment announces (rule 4), compared without case.
fn named_var(literal: &str) -> Option<Var> {
    match literal.to_ascii_lowercase().as_str() {
        "ns" | "namespace" | "namespaces" => Some(Var::Namespace),
        "sa" | "serviceaccount" | "serviceaccounts" => Some(Var::ServiceAccount),
        "pod" | "pods" => Some(Var::PodName),
        "node" | "nodes" => Some(Var::NodeName),
        _ => None,
    }
}

/// One segment of a path template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment<'a> {
    Literal(&'a str),
    Var(Var),
    Label,
}

impl IdTemplate {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let t = Template::parse(
            text,
            |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'),
            "letters, digits, '.', '-', '_' and '/' between segments",
        )?;
        let invalid = |problem: String| TemplateError::Invalid {
            template: text.into(),
            problem,
        };
        let raw_segments = split_outside_braces(text, '/');
        if raw_segments.iter().any(|s| s.is_empty()) {
            return Err(invalid(
                "a path has no leading, trailing or doubled '/' (write ns/{namespace}, not /ns/{namespace})".into(),
            ));
        }
        // A segment made only of literal dots would be "." or ".." whatever the request says.
        for seg in &raw_segments {
            if *seg == "." || *seg == ".." {
                return Err(invalid(
                    "'.' and '..' are not valid SPIFFE ID segments".into(),
                ));
            }
        }
        if !t
            .parts()
            .iter()
            .any(|p| matches!(p, Part::Var(_) | Part::Label(_)))
        {
            return Err(invalid(
                "it uses no variable, so every pod would get the same identity".into(),
            ));
        }
        // Rule 1 (the template parsed, so braces are balanced and names are known).
        let mut segments = Vec::new();
        for seg in raw_segments {
            if !seg.contains('{') {
                segments.push(Segment::Literal(seg));
                continue;
            }
            let label = seg
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .filter(|s| !s.contains('{') && !s.contains('}'))
                .and_then(|s| s.strip_prefix(labels::PREFIX));
            if label.is_some() {
                segments.push(Segment::Label);
                continue;
            }
            let var = seg
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .filter(|s| !s.contains('{'))
                .and_then(Var::parse);
            match var {
                Some(v) => segments.push(Segment::Var(v)),
                None => {
                    return Err(invalid(format!(
                        "segment {seg:?}: each variable must be a whole path segment by itself (like ns/{{namespace}}/sa/{{serviceAccount}}), since values joined in one segment can collide (namespace a-b with account c, and namespace a with account b-c)"
                    )))
                }
            }
        }
        let position = |v: Var| segments.iter().position(|s| *s == Segment::Var(v));
        let (ns, sa) = (position(Var::Namespace), position(Var::ServiceAccount));
        // Rule 2.
        if ns.is_none() {
            return Err(invalid(
                "it must contain {namespace} as a segment (with {serviceAccount}, or alone for one identity per namespace): without it, workloads of different namespaces share IDs".into(),
            ));
        }
        let extra: Vec<Var> = [Var::PodName, Var::NodeName]
            .into_iter()
            .filter(|v| position(*v).is_some())
            .collect();
        // Rule 3.
        if let Some(v) = extra.first() {
            let Some(sa) = sa else {
                return Err(invalid(format!(
                    "{{{}}} may only narrow a per-service-account identity: add {{serviceAccount}} as a segment (pod and node names are not identities; a pod may be named like another account)",
                    v.name()
                )));
            };
            let first_extra = extra.iter().filter_map(|v| position(*v)).min();
            let after = ns.max(Some(sa));
            if first_extra < after {
                return Err(invalid(
                    "{podName} and {nodeName} must come after {namespace} and {serviceAccount}, so an ID begins with the workload's identity".into(),
                ));
            }
        }
        // Rule 4.
        for (i, seg) in segments.iter().enumerate() {
            let Segment::Literal(lit) = seg else { continue };
            let Some(v) = named_var(lit) else { continue };
            if segments.get(i + 1) != Some(&Segment::Var(v)) {
                let next = match segments.get(i + 1) {
                    Some(Segment::Var(n)) => format!("{{{}}}", n.name()),
                    Some(Segment::Literal(l)) => format!("{l:?}"),
                    Some(Segment::Label) => "a pod label".into(),
                    None => "nothing".into(),
                };
                return Err(invalid(format!(
                    "segment {lit:?} names {{{}}}, so the segment after it must be {{{}}}, not {next} (a reader of {lit}/X takes X for the {})",
                    v.name(),
                    v.name(),
                    v.name()
                )));
            }
        }
        Ok(IdTemplate(t))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Whether the path reads a pod label.
    pub fn uses_labels(&self) -> bool {
        self.0.uses_labels()
    }

    /// The full SPIFFE ID for `req`, validated segment by segment. The request's names are
    /// checked first: the injectivity argument above needs them to be Kubernetes names.
    pub fn render(&self, td: &TrustDomain, req: &Request) -> Result<String, IdentityError> {
        self.render_with(td, req, None)
    }

    /// As [`IdTemplate::render`], with the pod's labels for `{pod.labels.KEY}`.
    pub fn render_with(
        &self,
        td: &TrustDomain,
        req: &Request,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Result<String, IdentityError> {
        check_identity(req)?;
        let path = self.0.render(
            &Values { req, labels },
            labels::valid_value,
            "a Kubernetes label value (letters, digits, '-', '_', '.', at most 63, starting and ending with a letter or digit)",
        )?;
        let segments: Vec<&str> = path.split('/').collect();
        Ok(spiffe_id::build(td, &segments)?)
    }
}

impl Default for IdTemplate {
    fn default() -> Self {
        IdTemplate::parse(DEFAULT_PATH).expect("the default template is valid")
    }
}

/// Why a request's identity cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the request's {field} {value:?} is not a valid Kubernetes name (a {kind}: lowercase letters, digits{extra}, at most {max} characters, starting and ending with a letter or digit); the apiserver admits no such request")]
    Name {
        field: &'static str,
        value: String,
        kind: &'static str,
        extra: &'static str,
        max: usize,
    },
    #[error(transparent)]
    SpiffeId(#[from] SpiffeIdError),
    #[error("SPIFFE ID: {0}")]
    Label(#[from] LabelProblem),
}

/// An RFC 1123 label as Kubernetes checks it (`IsDNS1123Label`).
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// An RFC 1123 subdomain as Kubernetes checks it (`IsDNS1123Subdomain`: at most 253
/// characters, dot-separated labels; the labels themselves have no 63-character limit there).
fn dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Checks that every identity field of the request is a name the apiserver would have
/// accepted: namespace a DNS label, service account, pod and node DNS subdomains. The
/// apiserver keeps other values out of the controller, but offline `sign` reads any file, and
/// the policy must not depend on that: a `/` in a value would become extra ID segments.
pub fn check_identity(req: &Request) -> Result<(), IdentityError> {
    for v in Var::ALL {
        let value = v.value(req);
        let (field, ok, kind, extra, max) = match v {
            Var::Namespace => ("namespace", dns_label(value), "DNS label", " and '-'", 63),
            Var::ServiceAccount => (
                "serviceAccountName",
                dns_subdomain(value),
                "DNS subdomain",
                ", '-' and '.'",
                253,
            ),
            Var::PodName => (
                "podName",
                dns_subdomain(value),
                "DNS subdomain",
                ", '-' and '.'",
                253,
            ),
            Var::NodeName => (
                "nodeName",
                dns_subdomain(value),
                "DNS subdomain",
                ", '-' and '.'",
                253,
            ),
        };
        if !ok {
            return Err(IdentityError::Name {
                field,
                value: value.to_string(),
                kind,
                extra,
                max,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests_support::req;

    #[test]
    fn default_is_namespace_and_service_account() {
        let td = TrustDomain::new("cluster.local").unwrap();
        assert_eq!(
            IdTemplate::default().render(&td, &req()).unwrap(),
            "spiffe://cluster.local/ns/team-a/sa/web"
        );
    }

    #[test]
    fn renders_pod_and_node_names_after_the_account() {
        let td = TrustDomain::new("td").unwrap();
        let t =
            IdTemplate::parse("ns/{namespace}/sa/{serviceAccount}/node/{nodeName}/pod/{podName}")
                .unwrap();
        assert_eq!(
            t.render(&td, &req()).unwrap(),
            "spiffe://td/ns/team-a/sa/web/node/node-1/pod/web-0"
        );
    }

    #[test]
    fn accepts_shapes_that_name_each_account_once() {
        for good in [
            "ns/{namespace}/sa/{serviceAccount}",
            "{namespace}/{serviceAccount}",
            "k8s/{namespace}/{serviceAccount}",
            "cluster-a/ns/{namespace}/sa/{serviceAccount}",
            "{serviceAccount}/{namespace}",
            "ns/{namespace}/sa/{serviceAccount}/pod/{podName}",
            "{namespace}/{serviceAccount}/{nodeName}",
            "NS/{namespace}/SA/{serviceAccount}",
            "namespaces/{namespace}/serviceaccounts/{serviceAccount}",
            // Per namespace.
            "ns/{namespace}",
            "{namespace}",
            "x/{namespace}",
            "tenant/{namespace}/workload",
        ] {
            let t = IdTemplate::parse(good);
            assert!(t.is_ok(), "{good} refused: {}", t.unwrap_err());
        }
    }

    #[test]
    fn refuses_shapes_that_collide_or_mislead() {
        let cases: &[(&str, &str)] = &[
            // The finding: a pod name where the account belongs.
            ("ns/{namespace}/sa/{podName}", "narrow"),
            ("sa/{serviceAccount}", "{namespace}"),
            ("{serviceAccount}", "{namespace}"),
            ("pod/{podName}", "{namespace}"),
            ("node/{nodeName}", "{namespace}"),
            ("{namespace}-{serviceAccount}", "whole path segment"),
            ("{namespace}.{serviceAccount}", "whole path segment"),
            ("{namespace}_{serviceAccount}", "whole path segment"),
            ("ns/{namespace}/sa/x-{serviceAccount}", "whole path segment"),
            ("ns/{namespace}{serviceAccount}", "whole path segment"),
            ("ns/{namespace}/pod/{podName}", "narrow"),
            ("ns/{namespace}/{nodeName}", "narrow"),
            (
                "k8s/{nodeName}/pod/{namespace}-{podName}",
                "whole path segment",
            ),
            ("{podName}/ns/{namespace}/sa/{serviceAccount}", "come after"),
            (
                "ns/{namespace}/pod/{podName}/sa/{serviceAccount}",
                "come after",
            ),
            // A keyword followed by another variable, a literal or nothing.
            ("ns/{serviceAccount}/sa/{namespace}", "names {namespace}"),
            (
                "{namespace}/sa/{serviceAccount}/pod/{nodeName}",
                "names {podName}",
            ),
            (
                "ns/{namespace}/sa/{serviceAccount}/node/{podName}",
                "names {nodeName}",
            ),
            (
                "ns/{namespace}/Sa/default/{serviceAccount}",
                "names {serviceAccount}",
            ),
            ("{namespace}/{serviceAccount}/sa", "not nothing"),
            (
                "namespace/x/{namespace}/{serviceAccount}",
                "names {namespace}",
            ),
        ];
        for (bad, needle) in cases {
            match IdTemplate::parse(bad) {
                Ok(_) => panic!("{bad} accepted"),
                Err(e) => assert!(e.to_string().contains(needle), "{bad}: {e}"),
            }
        }
    }

    #[test]
    fn label_segments_render_checked_values_and_need_the_namespace() {
        let td = TrustDomain::new("td").unwrap();
        let t =
            IdTemplate::parse("ns/{namespace}/app/{pod.labels.app.kubernetes.io/name}").unwrap();
        assert!(t.uses_labels());
        let mut labels = BTreeMap::new();
        labels.insert("app.kubernetes.io/name".to_string(), "Web_1.v2".to_string());
        assert_eq!(
            t.render_with(&td, &req(), Some(&labels)).unwrap(),
            "spiffe://td/ns/team-a/app/Web_1.v2"
        );
        // A missing label is named; a value that is no label value never reaches the ID.
        let e = t.render_with(&td, &req(), None).unwrap_err();
        assert_eq!(
            e,
            IdentityError::Label(LabelProblem::Missing("app.kubernetes.io/name".into()))
        );
        for bad in ["a/b", "..", "", "x/../admin"] {
            labels.insert("app.kubernetes.io/name".into(), bad.into());
            assert!(matches!(
                t.render_with(&td, &req(), Some(&labels)),
                Err(IdentityError::Label(LabelProblem::Invalid { .. }))
            ));
        }
        for (bad, needle) in [
            ("app/{pod.labels.app}", "{namespace}"),
            ("ns/{namespace}/app-{pod.labels.app}", "whole path segment"),
            (
                "ns/{namespace}/{pod.labels.app}{pod.labels.x}",
                "whole path segment",
            ),
            (
                "ns/{namespace}/sa/{pod.labels.app}",
                "names {serviceAccount}",
            ),
            ("ns/{namespace}/{pod.labels.Bad/x}", "label key"),
        ] {
            match IdTemplate::parse(bad) {
                Ok(_) => panic!("{bad} accepted"),
                Err(e) => assert!(e.to_string().contains(needle), "{bad}: {e}"),
            }
        }
    }

    #[test]
    fn refuses_paths_that_cannot_form_an_id() {
        for bad in [
            "/ns/{namespace}",
            "ns/{namespace}/",
            "ns//{namespace}",
            "ns/../{namespace}",
            "fixed/path",
            "ns/{namespace}?x",
            "ns/{annotations}",
        ] {
            assert!(IdTemplate::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn names_the_apiserver_refuses_are_never_rendered() {
        let td = TrustDomain::new("td").unwrap();
        let t = IdTemplate::default();
        type Tweak = fn(&mut Request);
        let cases: &[(&str, Tweak)] = &[
            ("namespace", |r| r.namespace = "a/b".into()),
            ("namespace", |r| r.namespace = "a.b".into()),
            ("namespace", |r| r.namespace = "A".into()),
            ("namespace", |r| r.namespace = String::new()),
            ("namespace", |r| r.namespace = "x".repeat(64)),
            ("serviceAccountName", |r| {
                r.service_account_name = "web/../admin".into()
            }),
            ("serviceAccountName", |r| {
                r.service_account_name = "-web".into()
            }),
            ("serviceAccountName", |r| {
                r.service_account_name = "web.".into()
            }),
            ("serviceAccountName", |r| {
                r.service_account_name = "w_b".into()
            }),
            ("podName", |r| r.pod_name = "p/q".into()),
            ("nodeName", |r| r.node_name = "n%2Fm".into()),
        ];
        for (field, tweak) in cases {
            let mut r = req();
            tweak(&mut r);
            let e = t.render(&td, &r).unwrap_err();
            assert!(
                matches!(e, IdentityError::Name { field: f, .. } if f == *field),
                "{e}"
            );
            assert!(check_identity(&r).is_err());
        }
        // Dots are fine where Kubernetes allows them, and long subdomain labels too.
        let mut r = req();
        r.service_account_name = "web.v2".into();
        r.pod_name = format!("{}.x", "p".repeat(100));
        assert_eq!(
            t.render(&td, &r).unwrap(),
            "spiffe://td/ns/team-a/sa/web.v2"
        );
    }
}
