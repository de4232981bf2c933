//! Templates over a request's verified identity: `{namespace}`, `{serviceAccount}`, `{podName}`,
//! `{nodeName}`, and the pod's labels `{pod.labels.KEY}`. Used for the SPIFFE ID path and for
//! DNS names. The four fields are checked by the apiserver (NodeRestriction ties them to the
//! requesting kubelet's pod). Labels are read from the pod object (its UID checked against the
//! request) and are set by whoever may create pods in the namespace: a value is checked by the
//! caller's rule before it is used, and the templates that use one must contain `{namespace}`.

use std::collections::BTreeMap;
use std::fmt;

use crate::request::Request;

use super::labels::{self, LabelProblem};

/// A verified request field a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Namespace,
    ServiceAccount,
    PodName,
    NodeName,
}

impl Var {
    pub const ALL: [Var; 4] = [
        Var::Namespace,
        Var::ServiceAccount,
        Var::PodName,
        Var::NodeName,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Var::Namespace => "namespace",
            Var::ServiceAccount => "serviceAccount",
            Var::PodName => "podName",
            Var::NodeName => "nodeName",
        }
    }

    pub(super) fn parse(name: &str) -> Option<Var> {
        Var::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The value from the request's apiserver-verified fields.
    pub fn value(self, req: &Request) -> &str {
        match self {
            Var::Namespace => &req.namespace,
            Var::ServiceAccount => &req.service_account_name,
            Var::PodName => &req.pod_name,
            Var::NodeName => &req.node_name,
        }
    }
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Var(Var),
    /// `{pod.labels.KEY}`: the value of the pod's label KEY.
    Label(String),
}

/// What a template is rendered from: the request and, when the signer read it, the pod's labels.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    pub req: &'a Request,
    pub labels: Option<&'a BTreeMap<String, String>>,
}

impl<'a> Values<'a> {
    /// The request alone (no pod read).
    pub fn request(req: &'a Request) -> Self {
        Values { req, labels: None }
    }
}

/// Splits `text` at `sep` where it is not inside braces (a label key may hold `.` and `/`).
pub(super) fn split_outside_braces(text: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if c == sep && depth == 0 => {
                out.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

/// A parsed template: literal text and variables, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template:?}: unknown variable {{{name}}}; use {{namespace}}, {{serviceAccount}}, {{podName}}, {{nodeName}} or {{pod.labels.KEY}}")]
    UnknownVar { template: String, name: String },
    #[error("template {template:?}: unbalanced braces")]
    Unbalanced { template: String },
    #[error("template {template:?}: {problem}")]
    Invalid { template: String, problem: String },
}

impl Template {
    /// Parses `text`; every literal character must satisfy `literal_ok` (the caller's alphabet).
    pub fn parse(
        text: &str,
        literal_ok: impl Fn(char) -> bool,
        alphabet: &str,
    ) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => {
                                return Err(TemplateError::Unbalanced {
                                    template: text.into(),
                                })
                            }
                            Some(ch) => name.push(ch),
                        }
                    }
                    let part = match name.strip_prefix(labels::PREFIX) {
                        Some(key) if labels::valid_key(key) => Part::Label(key.to_string()),
                        Some(key) => {
                            return Err(TemplateError::Invalid {
                                template: text.into(),
                                problem: format!("{key:?} is not a valid label key ([prefix/]name, as Kubernetes allows)"),
                            })
                        }
                        None => Part::Var(Var::parse(&name).ok_or_else(|| {
                            TemplateError::UnknownVar {
                                template: text.into(),
                                name: name.clone(),
                            }
                        })?),
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                }
                '}' => {
                    return Err(TemplateError::Unbalanced {
                        template: text.into(),
                    })
                }
                c if literal_ok(c) => literal.push(c),
                c => {
                    return Err(TemplateError::Invalid {
                        template: text.into(),
                        problem: format!("character {c:?} is not allowed here ({alphabet})"),
                    })
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if parts.is_empty() {
            return Err(TemplateError::Invalid {
                template: text.into(),
                problem: "it is empty".into(),
            });
        }
        Ok(Template {
            source: text.into(),
            parts,
        })
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the template reads a pod label.
    pub fn uses_labels(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Label(_)))
    }

    /// Whether the template uses `var`.
    pub fn uses(&self, var: Var) -> bool {
        self.parts.contains(&Part::Var(var))
    }

    /// The template with the request's verified fields and the pod's labels substituted; a
    /// label value must pass `value_ok` (`wanted` says what that is, for the message).
    pub fn render(
        &self,
        v: &Values<'_>,
        value_ok: fn(&str) -> bool,
        wanted: &'static str,
    ) -> Result<String, LabelProblem> {
        let mut out = String::with_capacity(self.source.len() + 32);
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Var(var) => out.push_str(var.value(v.req)),
                Part::Label(key) => out.push_str(labels::lookup(v.labels, key, value_ok, wanted)?),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '.')
    }

    #[test]
    fn parses_literals_and_variables() {
        let t = Template::parse("ns/{namespace}/sa/{serviceAccount}", any, "x").unwrap();
        assert_eq!(
            t.parts(),
            &[
                Part::Literal("ns/".into()),
                Part::Var(Var::Namespace),
                Part::Literal("/sa/".into()),
                Part::Var(Var::ServiceAccount),
            ]
        );
    }

    #[test]
    fn parses_label_variables_with_dots_and_slashes_in_the_key() {
        let t = Template::parse("{pod.labels.app.kubernetes.io/name}", any, "x").unwrap();
        assert_eq!(t.parts(), &[Part::Label("app.kubernetes.io/name".into())]);
        assert!(t.uses_labels());
        assert!(Template::parse("{pod.labels.}", any, "x").is_err());
        assert!(Template::parse("{pod.labels.a b}", any, "x").is_err());
        assert_eq!(
            split_outside_braces("ns/{namespace}/{pod.labels.a.b/c}", '/'),
            vec!["ns", "{namespace}", "{pod.labels.a.b/c}"]
        );
    }

    #[test]
    fn refuses_unknown_variables_and_bad_braces() {
        assert!(matches!(
            Template::parse("{annotation}", any, "x"),
            Err(TemplateError::UnknownVar { .. })
        ));
        for bad in ["{namespace", "namespace}", "{{namespace}}", ""] {
            assert!(Template::parse(bad, any, "x").is_err(), "{bad}");
        }
        assert!(matches!(
            Template::parse("a b", any, "x"),
            Err(TemplateError::Invalid { .. })
        ));
    }
}
