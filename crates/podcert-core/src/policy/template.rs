//! Templates over a request's verified identity: `{namespace}`, `{serviceAccount}`, `{podName}`,
//! `{nodeName}`. Used for the SPIFFE ID path and for DNS names. Only these four fields are
//! offered because only they are checked by the apiserver (NodeRestriction ties them to the
//! requesting kubelet's pod); nothing a pod author writes can reach a template.

use std::fmt;

use crate::request::Request;

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
}

/// A parsed template: literal text and variables, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template:?}: unknown variable {{{name}}}; use {{namespace}}, {{serviceAccount}}, {{podName}} or {{nodeName}}")]
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
                    let var = Var::parse(&name).ok_or_else(|| TemplateError::UnknownVar {
                        template: text.into(),
                        name: name.clone(),
                    })?;
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Var(var));
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

    /// The template with the request's verified fields substituted.
    pub fn render(&self, req: &Request) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Var(v) => out.push_str(v.value(req)),
            }
        }
        out
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
