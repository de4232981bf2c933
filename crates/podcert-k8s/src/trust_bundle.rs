//! The published trust anchors as Kubernetes objects: the ClusterTrustBundle's name (the
//! apiserver requires `<signer name with / as :>:<suffix>`), its labels, the ConfigMap copies.

use std::collections::BTreeMap;
use std::time::Duration;

/// Labels every published bundle carries; pods can select on them.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "podcert-signer");
pub const BUNDLE_LABEL: &str = "podcert.dev/trust-bundle";

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
        }
    }

    /// The ClusterTrustBundle name the apiserver requires for this signer.
    pub fn bundle_name(&self) -> String {
        format!("{}:{}", self.signer_name.replace('/', ":"), self.suffix)
    }

    pub fn all_labels(&self) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            (BUNDLE_LABEL.to_string(), self.suffix.clone()),
        ]);
        l.extend(self.labels.clone());
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
    }
}
