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
            // Exactly the kubelet's owner reference: apiVersion "core/v1" (sic), no
            // `controller`/`blockOwnerDeletion`.
            "ownerReferences": [{ "apiVersion": "core/v1", "kind": "Pod", "name": p.pod, "uid": p.pod_uid }],
        },
        "spec": spec,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::config::KubeletVersion;

    fn info() -> PodInfo {
        PodInfo {
            index: 0,
            namespace: "ns".into(),
            pod: "pod-0".into(),
            pod_uid: "uid-p".into(),
            service_account: "sa-0".into(),
            service_account_uid: "uid-s".into(),
            node: "node-0".into(),
            node_uid: "uid-n".into(),
            key_type: KeyType::Ed25519,
            user_annotations: [("example.com/a".to_string(), "b".to_string())].into(),
        }
    }

    #[test]
    fn request_carries_the_kubelets_fields_and_carrier() {
        let key = KubeletKey::generate(KeyType::Ed25519).unwrap();
        let mut cfg = KubeletConfig {
            kube_version: KubeletVersion::V1_35,
            ..Default::default()
        };
        let v = pcr(&cfg, PcrVersion::V1beta1, &info(), &key).unwrap();
        assert_eq!(v["apiVersion"], "certificates.k8s.io/v1beta1");
        assert_eq!(v["metadata"]["generateName"], "req-");
        assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "uid-p");
        assert_eq!(v["metadata"]["ownerReferences"][0]["apiVersion"], "core/v1");
        assert_eq!(v["spec"]["nodeUID"], "uid-n");
        assert_eq!(v["spec"]["serviceAccountUID"], "uid-s");
        assert!(
            v["spec"]["pkixPublicKey"].is_string() && v["spec"]["proofOfPossession"].is_string()
        );
        assert!(v["spec"].get("stubPKCS10Request").is_none());
        assert_eq!(v["spec"]["unverifiedUserAnnotations"]["example.com/a"], "b");
        assert!(
            v["spec"].get("maxExpirationSeconds").is_none(),
            "left to the server's default"
        );

        cfg.kube_version = KubeletVersion::V1_37;
        cfg.max_expiration_seconds = Some(3600);
        let v = pcr(&cfg, PcrVersion::V1, &info(), &key).unwrap();
        assert!(v["spec"]["stubPKCS10Request"].is_string());
        assert!(
            v["spec"].get("pkixPublicKey").is_none()
                && v["spec"].get("proofOfPossession").is_none()
        );
        assert_eq!(v["spec"]["maxExpirationSeconds"], 3600);

        cfg.kube_version = KubeletVersion::V1_34;
        let v = pcr(&cfg, PcrVersion::V1alpha1, &info(), &key).unwrap();
        assert!(
            v["spec"].get("unverifiedUserAnnotations").is_none(),
            "1.34 has no user annotations"
        );
    }

    #[test]
    fn pod_is_bound_and_mounts_a_pod_certificate() {
        let cfg = KubeletConfig {
            signer_name: "example.com/x".into(),
            ..Default::default()
        };
        let p = pod(&cfg, &info());
        assert_eq!(p["spec"]["nodeName"], "node-0");
        assert_eq!(p["spec"]["serviceAccountName"], "sa-0");
        let src = &p["spec"]["volumes"][0]["projected"]["sources"][0]["podCertificate"];
        assert_eq!(src["signerName"], "example.com/x");
        assert_eq!(src["keyType"], "ED25519");
        assert_eq!(src["credentialBundlePath"], "credentialbundle.pem");
    }
}
