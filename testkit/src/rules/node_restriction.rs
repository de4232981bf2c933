//! The NodeRestriction admission plugin for PodCertificateRequests
//! (plugin/pkg/admission/noderestriction/admission.go admitPodCertificateRequest, with the
//! node identity of pkg/auth/nodeidentifier). Order, codes and messages follow
//! k8s.io/kubernetes v1.37.2's plugin, and `scripts/difftest.sh` compares them with the real
//! server: UID mismatches and missing objects are plain errors (500 with no reason: they can be
//! informer lag), the rest 403 Forbidden. Not emulated: 1.37's fallback that lets a node
//! authorised for verb `request-serviceaccounts-podcertificate-signer` request a signer its pod
//! does not mount (such requests are refused here).

use super::{ctb::admission_name, Lookup, UserInfo};
use crate::api_status::ApiError;
use serde_json::{json, Value};

const GROUP: &str = "certificates.k8s.io";
const RESOURCE: &str = "podcertificaterequests";
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What the emulated release checks beyond 1.34-1.36.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PcrAdmission {
    /// 1.37: the pod must mount a `podCertificate` projected volume for the signer.
    pub require_pod_certificate_volume: bool,
}

/// nodeidentifier.NodeIdentity: `Some(name)` for a node (`system:node:<name>` in
/// `system:nodes`); the name may be empty.
pub fn node_identity(user: &UserInfo) -> Option<&str> {
    let name = user.username.strip_prefix("system:node:")?;
    user.groups
        .iter()
        .any(|g| g == "system:nodes")
        .then_some(name)
}

/// Admits (or refuses) the creation of a PCR by `user`, as 1.34-1.36 do. Only node
/// identities are restricted.
pub fn admit_pcr_create(user: &UserInfo, obj: &Value, lookup: &dyn Lookup) -> Result<(), ApiError> {
    admit_pcr_create_with(user, obj, lookup, PcrAdmission::default())
}

/// As `admit_pcr_create`, with the checks of the emulated release.
pub fn admit_pcr_create_with(
    user: &UserInfo,
    obj: &Value,
    lookup: &dyn Lookup,
    opts: PcrAdmission,
) -> Result<(), ApiError> {
    let Some(node_name) = node_identity(user) else {
        return Ok(());
    };
    let forbidden = |msg: String| ApiError::forbidden(GROUP, RESOURCE, &admission_name(obj), &msg);
    if node_name.is_empty() {
        return Err(forbidden(format!(
            "could not determine node from user {:?}",
            user.username
        )));
    }
    let spec = &obj["spec"];
    let s = |k: &str| spec[k].as_str().unwrap_or("").to_string();
    let namespace = obj["metadata"]["namespace"].as_str().unwrap_or("");
    let pod_name = s("podName");
    let pod_ref = format!("{namespace}/{pod_name}");

    if s("nodeName") != node_name {
        return Err(forbidden(format!(
            "PodCertificateRequest.Spec.NodeName={:?}, which is not the requesting node {node_name:?}",
            s("nodeName")
        )));
    }
    // Plain (non-Status) errors, which kube-apiserver answers as 500 with no reason: the
    // informer-lag cases (admission.go wraps the listers' NotFound with %w, not Forbidden).
    let Some(node) = lookup.get("", "nodes", None, node_name) else {
        return Err(ApiError::unknown(format!(
            "while retrieving node {node_name:?} named in the PodCertificateRequest: node {node_name:?} not found"
        )));
    };
    let node_uid = uid(&node);
    if node_uid != s("nodeUID") {
        return Err(ApiError::unknown(format!(
            "PodCertificateRequest for pod {pod_ref:?} names node UID {:?}, inconsistent with the running node ({node_uid:?})",
            s("nodeUID")
        )));
    }
    let Some(pod) = lookup.get("", "pods", Some(namespace), &pod_name) else {
        return Err(ApiError::unknown(format!(
            "while retrieving pod {pod_ref:?} named in the PodCertificateRequest: pod {pod_name:?} not found"
        )));
    };
    let pod_uid = uid(&pod);
    if s("podUID") != pod_uid {
        return Err(ApiError::unknown(format!(
            "PodCertificateRequest for pod {pod_ref:?} contains pod UID ({:?}) which differs from running pod {pod_uid:?}",
            s("podUID")
        )));
    }
    if pod["spec"]["nodeName"].as_str().unwrap_or("") != node_name {
        return Err(forbidden(format!(
            "pod {pod_ref:?} is not running on node {node_name:?} named in the PodCertificateRequest"
        )));
    }
    if pod["metadata"]["annotations"]
        .get(MIRROR_POD_ANNOTATION)
        .is_some()
    {
        return Err(forbidden(format!("pod {pod_ref:?} is a mirror pod")));
    }
    let pod_sa = pod["spec"]["serviceAccountName"].as_str().unwrap_or("");
    if s("serviceAccountName") != pod_sa {
        return Err(forbidden(format!(
            "PodCertificateRequest for pod {pod_ref:?} contains serviceAccountName ({:?}) that differs from running pod ({pod_sa:?})",
            s("serviceAccountName")
        )));
    }
    let sa_ref = format!("{namespace}/{}", s("serviceAccountName"));
    let Some(sa) = lookup.get(
        "",
        "serviceaccounts",
        Some(namespace),
        &s("serviceAccountName"),
    ) else {
        return Err(ApiError::unknown(format!(
            "while retrieving service account {sa_ref:?} named in the PodCertificateRequest: serviceaccount {:?} not found",
            s("serviceAccountName")
        )));
    };
    let sa_uid = uid(&sa);
    if sa_uid != s("serviceAccountUID") {
        return Err(ApiError::unknown(format!(
            "PodCertificateRequest for pod {pod_ref:?} names service account UID {:?}, which differs from the running service account ({sa_uid:?})",
            s("serviceAccountUID")
        )));
    }
    if opts.require_pod_certificate_volume && !mounts_signer(&pod, &s("signerName")) {
        // 1.37 validateNodePodCertificateSigner: the pod must project a certificate from this
        // signer. (Its RBAC fallback, verb request-serviceaccounts-podcertificate-signer, is
        // not emulated.)
        return Err(forbidden(format!(
            "pod {pod_ref:?} does not mount a podCertificate projected volume for signer {:?}",
            s("signerName")
        )));
    }
    Ok(())
}

fn uid(obj: &Value) -> String {
    obj["metadata"]["uid"].as_str().unwrap_or("").to_string()
}

/// Whether any projected volume of the pod has a `podCertificate` source for `signer`.
fn mounts_signer(pod: &Value, signer: &str) -> bool {
    let empty = Vec::new();
    pod["spec"]["volumes"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .any(|v| {
            v["projected"]["sources"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .any(|src| src["podCertificate"]["signerName"] == json!(signer))
        })
}
