//! The SPIFFE ID a request gets: `spiffe://<trust domain>/<path template rendered>`.

use crate::api::Request;
use crate::spiffe_id::{self, SpiffeIdError, TrustDomain};

use super::template::{Part, Template, TemplateError};

/// The default path: one identity per service account, like SPIRE's Kubernetes workload
/// attestor and Istio.
pub const DEFAULT_PATH: &str = "ns/{namespace}/sa/{serviceAccount}";

/// A validated SPIFFE ID path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTemplate(Template);

impl IdTemplate {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let t = Template::parse(
            text,
            |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'),
            "letters, digits, '.', '-', '_' and '/' between segments",
        )?;
        let invalid = |problem: &str| TemplateError::Invalid {
            template: text.into(),
            problem: problem.into(),
        };
        if text.starts_with('/') || text.ends_with('/') || text.contains("//") {
            return Err(invalid(
                "a path has no leading, trailing or doubled '/' (write ns/{namespace}, not /ns/{namespace})",
            ));
        }
        // A segment made only of literal dots would be "." or ".." whatever the request says.
        for seg in text.split('/') {
            if seg == "." || seg == ".." {
                return Err(invalid("'.' and '..' are not valid SPIFFE ID segments"));
            }
        }
        if !t.parts().iter().any(|p| matches!(p, Part::Var(_))) {
            return Err(invalid(
                "it uses no variable, so every pod would get the same identity",
            ));
        }
        Ok(IdTemplate(t))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The full SPIFFE ID for `req`, validated segment by segment.
    pub fn render(&self, td: &TrustDomain, req: &Request) -> Result<String, SpiffeIdError> {
        let path = self.0.render(req);
        let segments: Vec<&str> = path.split('/').collect();
        spiffe_id::build(td, &segments)
    }
}

impl Default for IdTemplate {
    fn default() -> Self {
        IdTemplate::parse(DEFAULT_PATH).expect("the default template is valid")
    }
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
    fn renders_pod_and_node_names() {
        let td = TrustDomain::new("td").unwrap();
        let t = IdTemplate::parse("k8s/{nodeName}/pod/{namespace}-{podName}").unwrap();
        assert_eq!(
            t.render(&td, &req()).unwrap(),
            "spiffe://td/k8s/node-1/pod/team-a-web-0"
        );
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
}
