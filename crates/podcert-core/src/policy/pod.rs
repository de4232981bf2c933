//! The request's pod, for signers whose policy reads it (pod labels, `podSelector`, Services).
//! The signer reads the pod by the request's namespace and `podName`; it is the request's pod
//! only if its UID is the request's `podUID` (the apiserver verified that one): a pod deleted
//! and re-created under the same name is another pod, and its labels are never used.

use std::collections::BTreeMap;

use crate::request::Request;

/// What the signer read about the pod named by the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub uid: String,
    pub labels: BTreeMap<String, String>,
}

/// What is known about the request's pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PodFacts<'a> {
    /// Not read (the policy may not need it).
    #[default]
    Unknown,
    /// The API has no pod of that name in the namespace.
    NotFound,
    Found(&'a PodInfo),
}

/// The pod is needed but was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pod {namespace}/{name} has not been read yet (the signer's policy uses its labels or Services)")]
pub struct PodUnknown {
    pub namespace: String,
    pub name: String,
}

/// Why the pod cannot be this request's: `None` when it is.
pub fn mismatch(req: &Request, pod: PodFacts<'_>) -> Option<String> {
    match pod {
        PodFacts::Found(p) if p.uid == req.pod_uid => None,
        PodFacts::Found(p) => Some(format!(
            "pod {}/{} has UID {}, not the request's podUID {}: the request's pod is gone, so its labels and Services are not used",
            req.namespace, req.pod_name, p.uid, req.pod_uid
        )),
        PodFacts::NotFound | PodFacts::Unknown => Some(format!(
            "pod {}/{} (UID {}) does not exist: the request's pod is gone",
            req.namespace, req.pod_name, req.pod_uid
        )),
    }
}
