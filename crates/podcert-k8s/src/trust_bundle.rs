//! The published trust anchors as Kubernetes objects: the ClusterTrustBundle's name (the
//! apiserver requires `<signer name with / as :>:<suffix>`), its labels, the ConfigMap copies.
//!
//! Labels follow SPIFFE Filesystem Delivery (the draft's appendix B): `k8s.spiffe.io/canarying`
//! (`live`, or `preview` on the bundle that gets a new root first), and the workload and peer
//! trust domains, so a pod selects the bundle for its own trust domain by label. A signer's own
//! bundles are for verifying peers of its own trust domain: both labels name it.

use std::collections::BTreeMap;
use std::time::Duration;

/// Labels every published bundle carries; pods can select on them.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "podcert-signer");
pub const BUNDLE_LABEL: &str = "podcert.dev/trust-bundle";
/// SPIFFE Filesystem Delivery: `live` (most pods) or `preview` (a canary fraction).
pub const CANARYING_LABEL: &str = "k8s.spiffe.io/canarying";
/// SPIFFE Filesystem Delivery: the trust domain of the workloads that load this bundle.
pub const WORKLOAD_TRUST_DOMAIN_LABEL: &str = "k8s.spiffe.io/workload-trust-domain";
/// SPIFFE Filesystem Delivery: the trust domain whose peers this bundle verifies.
pub const PEER_TRUST_DOMAIN_LABEL: &str = "k8s.spiffe.io/peer-trust-domain";

/// Which of a signer's two bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canary {
    /// Every root to publish, as soon as it is to be published.
    Preview,
    /// What most pods load: a root that is not yet signing arrives here after the preview time.
    Live,
}

impl Canary {
    pub fn as_str(self) -> &'static str {
        match self {
            Canary::Preview => "preview",
            Canary::Live => "live",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrustBundleConfig {
    pub signer_name: String,
    /// Last part of the ClusterTrustBundle name: `<signer with / as :>:<suffix>`.
    pub suffix: String,
    /// Extra labels (added to the defaults).
    pub labels: BTreeMap<String, String>,
    /// Namespaces that also get a ConfigMap with the bundle (key `ca.crt`).
    pub configmap_namespaces: Vec<String>,
    pub configmap_name: String,
    /// How often to check the published objects even when nothing changed.
    pub resync: Duration,
    /// The signer's trust domain (the Filesystem Delivery labels); None: no such labels.
    pub trust_domain: Option<String>,
    /// How long a root that does not sign yet (a rotation's next CA) is in the preview bundle
    /// before the live one; None: no wait (the preview bundle holds what the live one does).
    pub preview: Option<Duration>,
}

impl TrustBundleConfig {
    pub fn new(signer_name: &str) -> Self {
        TrustBundleConfig {
            signer_name: signer_name.into(),
            suffix: "live".into(),
            labels: BTreeMap::new(),
            configmap_namespaces: Vec::new(),
            configmap_name: "podcert-trust-bundle".into(),
            resync: Duration::from_secs(10),
            trust_domain: None,
            preview: None,
        }
    }

    /// The ClusterTrustBundle name the apiserver requires for this signer.
    pub fn bundle_name(&self) -> String {
        format!("{}:{}", self.signer_name.replace('/', ":"), self.suffix)
    }

    /// The preview bundle's name: `<signer>:preview` beside the default `live`, else
    /// `<signer>:<suffix>-preview`.
    pub fn preview_name(&self) -> String {
        let suffix = if self.suffix == "live" {
            "preview".to_string()
        } else {
            format!("{}-preview", self.suffix)
        };
        format!("{}:{}", self.signer_name.replace('/', ":"), suffix)
    }

    /// The live bundle's labels (also the ConfigMaps').
    pub fn all_labels(&self) -> BTreeMap<String, String> {
        self.labels_for(Canary::Live)
    }

    /// Ours, then the extra labels, then the Filesystem Delivery ones, which the extra labels
    /// cannot change (a preview bundle labelled `live` would defeat the canary).
    pub fn labels_for(&self, canary: Canary) -> BTreeMap<String, String> {
        let bundle = match canary {
            Canary::Live => self.suffix.clone(),
            Canary::Preview => format!("{}-preview", self.suffix),
        };
        let mut l = BTreeMap::from([
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            (BUNDLE_LABEL.to_string(), bundle),
        ]);
        l.extend(self.labels.clone());
        l.insert(CANARYING_LABEL.to_string(), canary.as_str().to_string());
        if let Some(td) = &self.trust_domain {
            l.insert(WORKLOAD_TRUST_DOMAIN_LABEL.to_string(), td.clone());
            l.insert(PEER_TRUST_DOMAIN_LABEL.to_string(), td.clone());
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_apiserver_rule() {
        let c = TrustBundleConfig::new("example.com/spiffe");
        assert_eq!(c.bundle_name(), "example.com:spiffe:live");
        let l = c.all_labels();
        assert_eq!(
            l.get("podcert.dev/trust-bundle").map(String::as_str),
            Some("live")
        );
        assert_eq!(c.preview_name(), "example.com:spiffe:preview");
        let mut other = c.clone();
        other.suffix = "blue".into();
        assert_eq!(other.preview_name(), "example.com:spiffe:blue-preview");
    }

    #[test]
    fn filesystem_delivery_labels_cannot_be_overridden() {
        let mut c = TrustBundleConfig::new("example.com/spiffe");
        c.trust_domain = Some("a.example".into());
        c.labels.insert(CANARYING_LABEL.into(), "live".into());
        c.labels.insert("team".into(), "x".into());
        let live = c.labels_for(Canary::Live);
        let preview = c.labels_for(Canary::Preview);
        assert_eq!(live[CANARYING_LABEL], "live");
        assert_eq!(preview[CANARYING_LABEL], "preview");
        for l in [&live, &preview] {
            assert_eq!(l[WORKLOAD_TRUST_DOMAIN_LABEL], "a.example");
            assert_eq!(l[PEER_TRUST_DOMAIN_LABEL], "a.example");
            assert_eq!(l["team"], "x");
        }
        assert_eq!(preview[BUNDLE_LABEL], "live-preview");
        // Without a trust domain (a bundle published for another purpose) no domain labels.
        let bare = TrustBundleConfig::new("example.com/spiffe").labels_for(Canary::Live);
        assert!(!bare.contains_key(WORKLOAD_TRUST_DOMAIN_LABEL));
    }
}
