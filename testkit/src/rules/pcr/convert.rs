//! Version conversion for PodCertificateRequest: the internal form holds the union of the
//! versions' fields; each version serves only its own (staging/src/k8s.io/api/certificates/
//! {v1alpha1,v1beta1,v1}/types.go), exactly as the generated conversions drop them.

use serde_json::{Map, Value};

/// Defaulted by SetDefaults_PodCertificateRequestSpec (pkg/apis/certificates/*/defaults.go).
pub const DEFAULT_MAX_EXPIRATION_SECONDS: i64 = 86400;

const COMMON_SPEC: &[&str] = &[
    "signerName",
    "podName",
    "podUID",
    "serviceAccountName",
    "serviceAccountUID",
    "nodeName",
    "nodeUID",
    "maxExpirationSeconds",
];
const STATUS_FIELDS: &[&str] = &[
    "conditions",
    "certificateChain",
    "notBefore",
    "beginRefreshAt",
    "notAfter",
];
const CONDITION_FIELDS: &[&str] = &[
    "type",
    "status",
    "observedGeneration",
    "lastTransitionTime",
    "reason",
    "message",
];

/// The spec fields `version` has, for the Kubernetes minor release being emulated.
/// v1alpha1 (1.34): pkix + proof. v1beta1: + unverifiedUserAnnotations (1.35),
/// + stubPKCS10Request (1.36). v1 (1.37): stub and annotations, no pkix/proof.
pub fn spec_fields(version: &str, kube_minor: u32) -> Vec<&'static str> {
    let mut f = COMMON_SPEC.to_vec();
    match version {
        "v1alpha1" => f.extend(["pkixPublicKey", "proofOfPossession"]),
        "v1beta1" => {
            f.extend([
                "pkixPublicKey",
                "proofOfPossession",
                "unverifiedUserAnnotations",
            ]);
            if kube_minor >= 36 {
                f.push("stubPKCS10Request");
            }
        }
        _ => f.extend(["unverifiedUserAnnotations", "stubPKCS10Request"]),
    }
    f
}

fn keep(obj: &Value, fields: &[&str]) -> Value {
    let mut out = Map::new();
    if let Some(m) = obj.as_object() {
        for f in fields {
            if let Some(v) = m.get(*f) {
                if !v.is_null() {
                    out.insert((*f).to_string(), v.clone());
                }
            }
        }
    }
    Value::Object(out)
}

fn prune_status(status: &Value) -> Value {
    let mut s = keep(status, STATUS_FIELDS);
    if let Some(conds) = s.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in conds.iter_mut() {
            *c = keep(c, CONDITION_FIELDS);
        }
    }
    s
}

/// Decoding in `version`: unknown fields dropped (the decoder ignores them), then defaulting.
pub fn to_internal(mut obj: Value, version: &str, kube_minor: u32) -> Value {
    let fields = spec_fields(version, kube_minor);
    let mut spec = keep(&obj["spec"], &fields);
    if spec.get("maxExpirationSeconds").is_none() {
        spec["maxExpirationSeconds"] = Value::from(DEFAULT_MAX_EXPIRATION_SECONDS);
    }
    let status = prune_status(&obj["status"]);
    if let Some(m) = obj.as_object_mut() {
        m.insert("spec".into(), spec);
        m.insert("status".into(), status);
    }
    obj
}

/// Encoding in `version`: the fields it lacks are dropped.
pub fn from_internal(obj: &Value, version: &str, kube_minor: u32) -> Value {
    let mut o = obj.clone();
    let fields = spec_fields(version, kube_minor);
    let spec = keep(&obj["spec"], &fields);
    let status = prune_status(&obj["status"]);
    if let Some(m) = o.as_object_mut() {
        m.insert(
            "apiVersion".into(),
            Value::String(format!("certificates.k8s.io/{version}")),
        );
        m.insert("kind".into(), Value::String("PodCertificateRequest".into()));
        m.insert("spec".into(), spec);
        m.insert("status".into(), status);
    }
    o
}
