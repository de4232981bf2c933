//! The resources the server serves: built-in ones and those defined by CRDs.

use super::config::KubeVersion;
use serde_json::Value;

/// How stored (internal) objects are converted to and from served versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// Same shape in every version: only `apiVersion` changes.
    None,
    /// `rules::pcr::{to_internal_at, from_internal_at}` for the emulated minor version.
    Pcr { kube_minor: u32 },
    /// `rules::ctb::{to_internal, from_internal}`.
    Ctb,
}

/// Create-only virtual resources answered by the authorizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Virtual {
    SelfSubjectAccessReview,
    SubjectAccessReview,
}

/// One served resource (one REST storage), in every version it is served in.
#[derive(Debug, Clone)]
pub struct ResourceDef {
    pub group: String,
    /// Served versions, preferred first.
    pub versions: Vec<String>,
    pub resource: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub has_status: bool,
    pub conversion: Conversion,
    /// rest.RESTUpdateStrategy.AllowCreateOnUpdate of the resource's strategy.
    pub allow_create_on_update: bool,
    /// rest.RESTUpdateStrategy.AllowUnconditionalUpdate of the resource's strategy.
    pub allow_unconditional_update: bool,
    pub virtual_kind: Option<Virtual>,
    /// For custom resources: the structural schema per version (pruning, `required`).
    pub crd_schemas: Vec<(String, Value)>,
    /// Whether this resource is defined by a CRD.
    pub custom: bool,
}

impl ResourceDef {
    fn builtin(
        group: &str,
        versions: &[&str],
        resource: &str,
        kind: &str,
        namespaced: bool,
    ) -> Self {
        ResourceDef {
            group: group.into(),
            versions: versions.iter().map(|s| s.to_string()).collect(),
            resource: resource.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            namespaced,
            short_names: vec![],
            categories: vec![],
            has_status: false,
            conversion: Conversion::None,
            allow_create_on_update: false,
            allow_unconditional_update: true,
            virtual_kind: None,
            crd_schemas: vec![],
            custom: false,
        }
    }
    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }
    fn status(mut self) -> Self {
        self.has_status = true;
        self
    }
    fn create_on_update(mut self) -> Self {
        self.allow_create_on_update = true;
        self
    }
    fn all(mut self) -> Self {
        self.categories = vec!["all".into()];
        self
    }

    /// `group/version` (or `version` for the core group).
    pub fn group_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    /// The version objects are stored in (kept in `apiVersion` of stored objects).
    pub fn storage_version(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        if self.virtual_kind.is_some() {
            return vec!["create"];
        }
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }

    /// Whether stored objects carry `metadata.generation` bumped on spec changes.
    pub fn tracks_generation(&self) -> bool {
        self.custom
            || matches!(
                self.resource.as_str(),
                "pods"
                    | "podcertificaterequests"
                    | "customresourcedefinitions"
                    | "clustertrustbundles"
                    | "validatingadmissionpolicies"
                    | "validatingadmissionpolicybindings"
            )
    }

    pub fn schema_for(&self, version: &str) -> Option<&Value> {
        self.crd_schemas
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, s)| s)
    }
}

/// Every served resource.
#[derive(Debug, Clone)]
pub struct Registry {
    pub defs: Vec<ResourceDef>,
}

/// The groups in the order `/apis` lists them (built-in first, CRD groups after).
const GROUP_ORDER: &[&str] = &[
    "",
    "events.k8s.io",
    "authorization.k8s.io",
    "certificates.k8s.io",
    "rbac.authorization.k8s.io",
    "admissionregistration.k8s.io",
    "coordination.k8s.io",
    "apiextensions.k8s.io",
];

impl Registry {
    pub fn new(version: KubeVersion, pcr_versions: Vec<String>, ctb_versions: Vec<String>) -> Self {
        let pcr_v: Vec<&str> = pcr_versions.iter().map(String::as_str).collect();
        let ctb_v: Vec<&str> = ctb_versions.iter().map(String::as_str).collect();
        let mut defs = vec![
            ResourceDef::builtin("", &["v1"], "namespaces", "Namespace", false)
                .short(&["ns"])
                .status(),
            ResourceDef::builtin("", &["v1"], "pods", "Pod", true)
                .short(&["po"])
                .status()
                .all(),
            ResourceDef::builtin("", &["v1"], "serviceaccounts", "ServiceAccount", true)
                .short(&["sa"]),
            ResourceDef::builtin("", &["v1"], "services", "Service", true)
                .short(&["svc"])
                .status()
                .all(),
            ResourceDef::builtin("", &["v1"], "nodes", "Node", false)
                .short(&["no"])
                .status(),
            ResourceDef::builtin("", &["v1"], "secrets", "Secret", true),
            ResourceDef::builtin("", &["v1"], "configmaps", "ConfigMap", true).short(&["cm"]),
            ResourceDef::builtin("", &["v1"], "events", "Event", true)
                .short(&["ev"])
                .create_on_update(),
            ResourceDef::builtin("events.k8s.io", &["v1"], "events", "Event", true)
                .short(&["ev"])
                .create_on_update(),
            {
                // lease strategy: AllowCreateOnUpdate true, AllowUnconditionalUpdate false.
                let mut d =
                    ResourceDef::builtin("coordination.k8s.io", &["v1"], "leases", "Lease", true)
                        .create_on_update();
                d.allow_unconditional_update = false;
                d
            },
            ResourceDef::builtin("rbac.authorization.k8s.io", &["v1"], "roles", "Role", true)
                .create_on_update(),
            ResourceDef::builtin(
                "rbac.authorization.k8s.io",
                &["v1"],
                "rolebindings",
                "RoleBinding",
                true,
            )
            .create_on_update(),
            ResourceDef::builtin(
                "rbac.authorization.k8s.io",
                &["v1"],
                "clusterroles",
                "ClusterRole",
                false,
            )
            .create_on_update(),
            ResourceDef::builtin(
                "rbac.authorization.k8s.io",
                &["v1"],
                "clusterrolebindings",
                "ClusterRoleBinding",
                false,
            )
            .create_on_update(),
            {
                // customresourcedefinition strategy: AllowUnconditionalUpdate false.
                let mut d = ResourceDef::builtin(
                    "apiextensions.k8s.io",
                    &["v1"],
                    "customresourcedefinitions",
                    "CustomResourceDefinition",
                    false,
                )
                .short(&["crd", "crds"])
                .status();
                d.allow_unconditional_update = false;
                d
            },
            ResourceDef::builtin(
                "admissionregistration.k8s.io",
                &["v1"],
                "validatingadmissionpolicies",
                "ValidatingAdmissionPolicy",
                false,
            )
            .status(),
            ResourceDef::builtin(
                "admissionregistration.k8s.io",
                &["v1"],
                "validatingadmissionpolicybindings",
                "ValidatingAdmissionPolicyBinding",
                false,
            ),
            {
                let mut d = ResourceDef::builtin(
                    "authorization.k8s.io",
                    &["v1"],
                    "selfsubjectaccessreviews",
                    "SelfSubjectAccessReview",
                    false,
                );
                d.virtual_kind = Some(Virtual::SelfSubjectAccessReview);
                d
            },
            {
                let mut d = ResourceDef::builtin(
                    "authorization.k8s.io",
                    &["v1"],
                    "subjectaccessreviews",
                    "SubjectAccessReview",
                    false,
                );
                d.virtual_kind = Some(Virtual::SubjectAccessReview);
                d
            },
        ];
        if !pcr_v.is_empty() {
            // podcertificaterequest/strategy.go: AllowUnconditionalUpdate() returns false.
            let mut d = ResourceDef::builtin(
                "certificates.k8s.io",
                &pcr_v,
                "podcertificaterequests",
                "PodCertificateRequest",
                true,
            )
            .status();
            d.conversion = Conversion::Pcr {
                kube_minor: version.minor(),
            };
            d.allow_unconditional_update = false;
            defs.push(d);
        }
        if !ctb_v.is_empty() {
            let mut d = ResourceDef::builtin(
                "certificates.k8s.io",
                &ctb_v,
                "clustertrustbundles",
                "ClusterTrustBundle",
                false,
            );
            d.conversion = Conversion::Ctb;
            // clustertrustbundle/strategy.go: AllowUnconditionalUpdate() returns false.
            d.allow_unconditional_update = false;
            defs.push(d);
        }
        Registry { defs }
    }

    pub fn find(&self, group: &str, resource: &str) -> Option<&ResourceDef> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.resource == resource)
    }

    /// The resource served at `group/version/resource`, if that version is served.
    pub fn find_served(&self, group: &str, version: &str, resource: &str) -> Option<&ResourceDef> {
        self.find(group, resource).filter(|d| d.serves(version))
    }

    /// The resource for an object's `apiVersion` and `kind`.
    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<(&ResourceDef, String)> {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.defs
            .iter()
            .find(|d| d.group == group && d.kind == kind && d.serves(version))
            .map(|d| (d, version.to_string()))
    }

    /// Groups with their versions (preferred first), ordered like `/apis`.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for d in &self.defs {
            match out.iter_mut().find(|(g, _)| *g == d.group) {
                Some((_, vs)) => {
                    for v in &d.versions {
                        if !vs.contains(v) {
                            vs.push(v.clone());
                        }
                    }
                }
                None => out.push((d.group.clone(), d.versions.clone())),
            }
        }
        for (_, vs) in out.iter_mut() {
            vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        out.sort_by_key(|(g, _)| {
            GROUP_ORDER
                .iter()
                .position(|x| x == g)
                .unwrap_or(GROUP_ORDER.len())
        });
        out
    }

    /// Resources served in `group/version`.
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a ResourceDef> + 'a {
        self.defs
            .iter()
            .filter(move |d| d.group == group && d.serves(version))
    }

    pub fn remove_custom(&mut self, group: &str, resource: &str) {
        self.defs
            .retain(|d| !(d.custom && d.group == group && d.resource == resource));
    }

    pub fn upsert_custom(&mut self, def: ResourceDef) {
        self.remove_custom(&def.group, &def.resource);
        self.defs.push(def);
    }
}

/// Kubernetes version priority (apimachinery/pkg/version CompareKubeAwareVersionStrings):
/// GA > beta > alpha, higher major first; non-matching strings sort last.
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let Ok(major) = digits.parse::<u32>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
        (2, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n)
    } else {
        return (0, 0, 0);
    };
    match num.parse::<u32>() {
        Ok(n) => (level, major, n),
        Err(_) => (0, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_priority_orders_like_kubernetes() {
        let mut v = vec!["v1alpha1", "v1beta1", "v1", "v2beta1", "v2"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, vec!["v2", "v1", "v2beta1", "v1beta1", "v1alpha1"]);
    }
}
