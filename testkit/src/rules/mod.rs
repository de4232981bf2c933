//! The resource rules kube-apiserver applies, as pure functions over JSON objects: validation,
//! defaulting, version conversion, status strategies, NodeRestriction and RBAC.
//! The API server (`crate::apiserver`) calls these; they hold no state and do no I/O.
//!
//! Call order, as kube-apiserver runs its stages (authorization, decoding, mutating admission,
//! strategy, validating admission):
//! - PCR create: `rbac::authorize` → `pcr::check_decodable` (400) → `pcr::to_internal` →
//!   name from `generateName` → `node_restriction::admit_pcr_create` (NodeRestriction is a
//!   mutating-phase plugin) → `pcr::validate_create` (422) → store.
//! - PCR update: `pcr::validate_update`. PCR `/status`: `pcr::validate_status_update` (422)
//!   then `pcr::authorize_status_update` (422 with a Forbidden cause, as the strategy does).
//! - ClusterTrustBundle create/update: `ctb::validate_create`/`validate_update` (422), then
//!   `ctb::authorize_write`/`authorize_update` (403; ClusterTrustBundleAttest validates last).
//! - RBAC refusals: `rbac::forbidden_error`.

// The shared signatures return `ApiError`/`FieldError` by value, as the apiserver consumes them;
// refusals are rare and small in number, so boxing them buys nothing.
#![allow(clippy::result_large_err)]

pub mod core;
pub mod ctb;
pub mod gofmt;
pub mod keys;
pub mod lease;
pub mod names;
pub mod node_restriction;
pub mod pcr;
pub mod pem_go;
pub mod rbac;
pub mod service;
pub mod signers;
pub mod x509_go;

use serde_json::Value;

/// An authenticated identity (user.Info).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The default administrator: member of `system:masters`, which RBAC always allows.
    pub fn admin() -> Self {
        UserInfo {
            username: "admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }

    /// A service account identity, `system:serviceaccount:<ns>:<name>`.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        UserInfo {
            username: format!("system:serviceaccount:{namespace}:{name}"),
            uid: String::new(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }

    /// A node identity, `system:node:<name>` in group `system:nodes`.
    pub fn node(name: &str) -> Self {
        UserInfo {
            username: format!("system:node:{name}"),
            uid: String::new(),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
        }
    }
}

/// Read access to stored objects (internal form), for rules that look at other objects
/// (NodeRestriction reads pods and nodes, RBAC reads roles and bindings).
pub trait Lookup {
    /// One object; `namespace` is `None` for cluster-scoped resources.
    fn get(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value>;
    /// Every object of a resource, all namespaces.
    fn list(&self, group: &str, resource: &str) -> Vec<Value>;
}

/// Authorization attributes (authorizer.Attributes) of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// For non-resource requests (`/version`, `/api`, ...): the path.
    pub path: Option<String>,
}
