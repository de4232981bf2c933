//! The Kubernetes objects the emulator writes, as JSON: the fleet (namespaces, service
//! accounts, nodes, pods) and PodCertificateRequests shaped like the kubelet's.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kube::core::{ApiResource, DynamicObject};
use serde_json::{json, Value};

use super::config::{Carrier, KubeletConfig, PcrVersion};
use super::keys::{KeyError, KeyType, KubeletKey};

/// One emulated pod with the identities its requests carry.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// Position in the fleet (0..pods).
    pub index: usize,
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub service_account: String,
    pub service_account_uid: String,
    pub node: String,
    pub node_uid: String,
    pub key_type: KeyType,
    pub user_annotations: std::collections::BTreeMap<String, String>,
}

/// The projected volume the pod carries; the request mirrors it.
pub const VOLUME_NAME: &str = "podcert";

pub(crate) fn core_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

pub fn pcr_resource(version: PcrVersion) -> ApiResource {
    ApiResource {
        group: "certificates.k8s.io".into(),
        version: version.as_str().into(),
        api_version: format!("certificates.k8s.io/{}", version.as_str()),
        kind: "PodCertificateRequest".into(),
        plural: "podcertificaterequests".into(),
    }
}

pub(crate) fn to_dynamic(v: Value) -> Result<DynamicObject, serde_json::Error> {
    serde_json::from_value(v)
}

pub(crate) fn namespace(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } })
}

pub(crate) fn service_account(namespace: &str, name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": name, "namespace": namespace } })
}

pub(crate) fn node(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name } },
    })
}

/// A pod bound to `node` with a projected podCertificate volume for the signer.
pub(crate) fn pod(cfg: &KubeletConfig, p: &PodInfo) -> Value {
    let mut source = json!({
        "signerName": cfg.signer_name,
        "keyType": p.key_type.as_str(),
        "credentialBundlePath": super::bundle::BUNDLE_FILE,
    });
    if let Some(max) = cfg.max_expiration_seconds {
        source["maxExpirationSeconds"] = json!(max);
    }
    if cfg.kube_version.has_user_annotations() && !p.user_annotations.is_empty() {
        source["userAnnotations"] = json!(p.user_annotations);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": p.pod, "namespace": p.namespace },
        "spec": {
            "nodeName": p.node,
            "serviceAccountName": p.service_account,
            "containers": [{ "name": "app", "image": "registry.k8s.io/pause:3.10" }],
            "volumes": [{ "name": VOLUME_NAME, "projected": { "sources": [{ "podCertificate": source }] } }],
        },
    })
}

/// The request a kubelet creates for `p` with `key` (createPodCertificateRequest in
/// pkg/kubelet/podcertificate/podcertificatemanager.go).
pub(crate) fn pcr(
    cfg: &KubeletConfig,
    version: PcrVersion,
    p: &PodInfo,
    key: &KubeletKey,
) -> Result<Value, KeyError> {
    let mut spec = json!({
        "signerName": cfg.signer_name,
        "podName": p.pod,
        "podUID": p.pod_uid,
        "serviceAccountName": p.service_account,
        "serviceAccountUID": p.service_account_uid,
        "nodeName": p.node,
        "nodeUID": p.node_uid,
    });
    if let Some(max) = cfg.max_expiration_seconds {
        spec["maxExpirationSeconds"] = json!(max);
    }
    match cfg.carrier() {
        Carrier::PkixAndProof => {
            spec["pkixPublicKey"] = json!(B64.encode(key.spki_der()));
            spec["proofOfPossession"] = json!(B64.encode(key.proof_of_possession(&p.pod_uid)?));
        }
        Carrier::StubPkcs10 => {
            spec["stubPKCS10Request"] = json!(B64.encode(key.stub_pkcs10_request()?));
        }
    }
    if cfg.kube_version.has_user_annotations() && !p.user_annotations.is_empty() {
        spec["unverifiedUserAnnotations"] = json!(p.user_annotations);
    }
    let ar = pcr_resource(version);
    Ok(json!({
        "apiVersion": ar.api_version,
        "kind": ar.kind,
        "metadata": {
            "generateName": "req-",
            "namespace": p.namespace,
            // The kubelet writes the owner reference without `controller`/`blockOwnerDeletion`.
            "ownerReferences": [{ "apiVersion": "v1", "kind": "Pod", "name": p.pod, "uid": p.pod_uid }],
        },
        "spec": spec,
    }))
}
