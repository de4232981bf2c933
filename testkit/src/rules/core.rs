//! Core-group and events.k8s.io rules kube-apiserver applies to ConfigMaps, Secrets and
//! Events: the decoder's type checks (400), the v1→internal conversion and defaulting of
//! Secrets, and pkg/apis/core/validation (422).

use crate::api_status::{ApiError, FieldError};
use base64::Engine;
use serde_json::{json, Map, Value};

/// What Go's encoding/json calls a JSON value's type in "cannot unmarshal X into ...".
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn undecodable(kind: &str, version: &str, why: String) -> ApiError {
    ApiError::bad_request(format!(
        "{kind} in version {version:?} cannot be handled as a {kind}: {why}"
    ))
}

/// Every value of a string map field must be a JSON string (`null` is an unset map).
fn check_string_map(
    kind: &str,
    version: &str,
    obj: &Value,
    ptr: &str,
    go_field: &str,
    go_type: &str,
) -> Result<(), ApiError> {
    match obj.pointer(ptr) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(m)) => match m.values().find(|v| !v.is_string()) {
            Some(v) => Err(undecodable(
                kind,
                version,
                format!(
                    "json: cannot unmarshal {} into Go struct field {go_field} of type {go_type}",
                    json_type(v)
                ),
            )),
            None => Ok(()),
        },
        Some(v) => Err(undecodable(
            kind,
            version,
            format!(
                "json: cannot unmarshal {} into Go struct field {go_field} of type map[string]{go_type}",
                json_type(v)
            ),
        )),
    }
}

/// Where Go's base64.StdEncoding reports a decoding error ("illegal base64 data at input
/// byte N"), or None for valid padded standard base64.
fn base64_error_at(s: &str) -> Option<usize> {
    if base64::engine::general_purpose::STANDARD.decode(s).is_ok() {
        return None;
    }
    let alphabet = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    let b = s.as_bytes();
    Some(
        b.iter()
            .position(|&c| !alphabet(c) && c != b'=')
            .unwrap_or(b.len().saturating_sub(1)),
    )
}

fn check_base64_map(kind: &str, version: &str, obj: &Value, ptr: &str) -> Result<(), ApiError> {
    if let Some(m) = obj.pointer(ptr).and_then(Value::as_object) {
        for v in m.values() {
            if let Some(at) = v.as_str().and_then(base64_error_at) {
                return Err(undecodable(
                    kind,
                    version,
                    format!("illegal base64 data at input byte {at}"),
                ));
            }
        }
    }
    Ok(())
}

/// ObjectMeta's string maps, which every built-in kind decodes into Go structs.
pub fn check_meta_decodable(kind: &str, version: &str, obj: &Value) -> Result<(), ApiError> {
    for f in ["labels", "annotations"] {
        check_string_map(
            kind,
            version,
            obj,
            &format!("/metadata/{f}"),
            &format!("ObjectMeta.metadata.{f}"),
            "string",
        )?;
    }
    Ok(())
}

/// The decoder's checks of a ConfigMap body.
pub fn check_configmap_decodable(obj: &Value, version: &str) -> Result<(), ApiError> {
    check_string_map(
        "ConfigMap",
        version,
        obj,
        "/data",
        "ConfigMap.data",
        "string",
    )?;
    check_string_map(
        "ConfigMap",
        version,
        obj,
        "/binaryData",
        "ConfigMap.binaryData",
        "[]uint8",
    )?;
    check_base64_map("ConfigMap", version, obj, "/binaryData")
}

/// The decoder's checks of a Secret body, then Convert_v1_Secret_To_core_Secret (stringData
/// is merged into data, winning over it, and not stored) and SetDefaults_Secret (type
/// Opaque).
pub fn decode_secret(mut obj: Value, version: &str) -> Result<Value, ApiError> {
    check_string_map("Secret", version, &obj, "/data", "Secret.data", "[]uint8")?;
    check_string_map(
        "Secret",
        version,
        &obj,
        "/stringData",
        "Secret.stringData",
        "string",
    )?;
    check_base64_map("Secret", version, &obj, "/data")?;
    let Some(m) = obj.as_object_mut() else {
        return Ok(obj);
    };
    if let Some(Value::Object(sd)) = m.remove("stringData") {
        let data = m.entry("data").or_insert_with(|| json!({}));
        if !data.is_object() {
            *data = json!({});
        }
        for (k, v) in sd {
            let enc = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or(""));
            data[k] = json!(enc);
        }
    }
    if m.get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        m.insert("type".into(), json!("Opaque"));
    }
    Ok(obj)
}

/// validation.IsConfigMapKey's messages for one key (empty when valid).
fn config_key_errors(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    if key.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    let ok = !key.is_empty()
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        out.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string());
    }
    if key == "." {
        out.push("must not be '.'".into());
    } else if key == ".." {
        out.push("must not be '..'".into());
    } else if key.starts_with("..") {
        out.push("must not start with '..'".into());
    }
    out
}

fn keys_of<'a>(obj: &'a Value, f: &str) -> Vec<&'a String> {
    obj.get(f)
        .and_then(Value::as_object)
        .map(|m| m.keys().collect())
        .unwrap_or_default()
}

fn validate_keys(obj: &Value, f: &str, errs: &mut Vec<FieldError>) {
    for k in keys_of(obj, f) {
        for m in config_key_errors(k) {
            errs.push(FieldError::invalid(format!("{f}[{k}]"), json!(k), m));
        }
    }
}

/// ValidateConfigMap: valid keys, none in both data and binaryData.
pub fn validate_configmap(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_keys(obj, "data", &mut errs);
    validate_keys(obj, "binaryData", &mut errs);
    let binary = keys_of(obj, "binaryData");
    for k in keys_of(obj, "data") {
        if binary.contains(&k) {
            errs.push(FieldError::invalid(
                format!("data[{k}]"),
                json!(k),
                "duplicate of key present in binaryData",
            ));
        }
    }
    errs
}

/// ValidateSecret: valid keys and the keys each well-known type requires.
pub fn validate_secret(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_keys(obj, "data", &mut errs);
    let data = keys_of(obj, "data");
    let required: &[&str] = match obj["type"].as_str().unwrap_or("") {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        _ => &[],
    };
    for r in required {
        if !data.iter().any(|k| k == r) {
            errs.push(FieldError::required(format!("data[{r}]"), ""));
        }
    }
    errs
}

const IMMUTABLE_SET: &str = "field is immutable when `immutable` is set";

/// The update rules shared by Secrets and ConfigMaps: once `immutable` is true the payload
/// fields and `immutable` itself are frozen (ValidateSecretUpdate, ValidateConfigMapUpdate).
fn validate_immutable(old: &Value, new: &Value, fields: &[&str], errs: &mut Vec<FieldError>) {
    if old["immutable"] != json!(true) {
        return;
    }
    if new["immutable"] != json!(true) {
        errs.push(FieldError::forbidden("immutable", IMMUTABLE_SET));
    }
    let empty = Value::Object(Map::new());
    let norm = |v: &Value| {
        if v.is_null() {
            empty.clone()
        } else {
            v.clone()
        }
    };
    for f in fields {
        if norm(&old[*f]) != norm(&new[*f]) {
            errs.push(FieldError::forbidden(*f, IMMUTABLE_SET));
        }
    }
}

pub fn validate_configmap_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = validate_configmap(new);
    validate_immutable(old, new, &["data", "binaryData"], &mut errs);
    errs
}

pub fn validate_secret_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = validate_secret(new);
    if old["type"] != new["type"] {
        errs.push(FieldError::invalid(
            "type",
            new["type"].clone(),
            "field is immutable",
        ));
    }
    validate_immutable(old, new, &["data"], &mut errs);
    errs
}

/// ValidateEventCreate for an events.k8s.io/v1 Event, on its internal (core) field names:
/// regarding is involvedObject, note is message.
pub fn validate_event_create(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let s = |k: &str| obj[k].as_str().unwrap_or("");
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
    let involved_ns = obj["regarding"]["namespace"].as_str().unwrap_or("");
    let has_time = !s("eventTime").is_empty();
    // legacyValidateEvent.
    let ns_ok = if !has_time {
        if involved_ns.is_empty() {
            ns.is_empty() || ns == "default"
        } else {
            ns == involved_ns
        }
    } else {
        !involved_ns.is_empty() || ns == "default" || ns == "kube-system"
    };
    if !ns_ok {
        errs.push(FieldError::invalid(
            "involvedObject.namespace",
            json!(involved_ns),
            "does not match event.namespace",
        ));
    }
    if has_time {
        for f in [
            "reportingController",
            "reportingInstance",
            "action",
            "reason",
        ] {
            if s(f).is_empty() {
                errs.push(FieldError::required(f, ""));
            }
        }
    }
    // The strict events.k8s.io/v1 rules.
    if !has_time {
        errs.push(FieldError::required("eventTime", ""));
    }
    let ty = s("type");
    if ty != "Normal" && ty != "Warning" {
        errs.push(FieldError::invalid(
            "type",
            json!(""),
            format!("has invalid value: {ty}"),
        ));
    }
    for (f, internal) in [
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
    ] {
        if !s(f).is_empty() {
            errs.push(FieldError::invalid(
                internal,
                json!(""),
                "needs to be unset",
            ));
        }
    }
    if obj["deprecatedCount"].as_i64().is_some_and(|c| c != 0) {
        errs.push(FieldError::invalid("count", json!(""), "needs to be unset"));
    }
    let src = &obj["deprecatedSource"];
    if ["component", "host"]
        .iter()
        .any(|k| !src[*k].as_str().unwrap_or("").is_empty())
    {
        errs.push(FieldError::invalid(
            "source",
            json!(""),
            "needs to be unset",
        ));
    }
    errs
}

/// The key types kubelets make for a `podCertificate` projected source (1.34-1.37), and the
/// ML-DSA ones 1.38 adds behind `PodCertificateMLDSA`.
const POD_CERTIFICATE_KEY_TYPES: [&str; 6] = [
    "RSA3072",
    "RSA4096",
    "ECDSAP256",
    "ECDSAP384",
    "ECDSAP521",
    "ED25519",
];
const POD_CERTIFICATE_MLDSA_KEY_TYPES: [&str; 3] = ["MLDSA44", "MLDSA65", "MLDSA87"];

/// The `podCertificate.keyType` check of ValidatePodSpec (pkg/apis/core/validation,
/// validateProjectionSources): an ML-DSA type is NotSupported unless `allow_mldsa` (1.38 with
/// the `PodCertificateMLDSA` gate; before 1.38 there is no such type), listing only the
/// classical types; any other unknown type lists the ML-DSA ones too when they are allowed.
/// Checked on create only: a pod's volumes are immutable (and 1.38 allows an update of a pod
/// that already had an ML-DSA source).
pub fn validate_pod_certificate_key_types(pod: &Value, allow_mldsa: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volumes = pod["spec"]["volumes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, vol) in volumes.iter().enumerate() {
        let sources = vol["projected"]["sources"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (j, src) in sources.iter().enumerate() {
            let Some(pc) = src.get("podCertificate").filter(|v| v.is_object()) else {
                continue;
            };
            let key_type = pc["keyType"].as_str().unwrap_or("");
            if POD_CERTIFICATE_KEY_TYPES.contains(&key_type)
                || (allow_mldsa && POD_CERTIFICATE_MLDSA_KEY_TYPES.contains(&key_type))
            {
                continue;
            }
            let mut supported: Vec<&str> = POD_CERTIFICATE_KEY_TYPES.to_vec();
            if allow_mldsa && !POD_CERTIFICATE_MLDSA_KEY_TYPES.contains(&key_type) {
                supported.extend(POD_CERTIFICATE_MLDSA_KEY_TYPES);
            }
            errs.push(FieldError::not_supported(
                format!("spec.volumes[{i}].projected.sources[{j}].podCertificate.keyType"),
                json!(key_type),
                &supported,
            ));
        }
    }
    errs
}
/// kube-apiserver's pod strategy with the `ClusterTrustBundleProjection` gate off
/// (pkg/api/pod/util.go dropDisabledClusterTrustBundleProjection, called by PrepareForCreate):
/// the `clusterTrustBundle` field of every projected volume source is cleared, leaving an empty
/// source, unless the old pod (an update) already used one. Returns whether anything was dropped.
pub fn drop_disabled_cluster_trust_bundle_projection(pod: &mut Value, old: Option<&Value>) -> bool {
    fn uses(pod: &Value) -> bool {
        pod.pointer("/spec/volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.pointer("/projected/sources").and_then(Value::as_array))
            .flatten()
            .any(|s| s.get("clusterTrustBundle").is_some_and(|c| !c.is_null()))
    }
    if old.is_some_and(uses) {
        return false;
    }
    let mut dropped = false;
    let volumes = pod
        .pointer_mut("/spec/volumes")
        .and_then(Value::as_array_mut);
    for v in volumes.into_iter().flatten() {
        let sources = v
            .pointer_mut("/projected/sources")
            .and_then(Value::as_array_mut);
        for s in sources.into_iter().flatten() {
            if let Some(m) = s.as_object_mut() {
                dropped |= m.remove("clusterTrustBundle").is_some();
            }
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_errors_at_the_first_bad_byte_like_go() {
        assert_eq!(base64_error_at("aGk="), None);
        assert_eq!(base64_error_at("!!notbase64"), Some(0));
        assert_eq!(base64_error_at("aG!k"), Some(2));
    }

    #[test]
    fn config_keys() {
        assert!(config_key_errors("a.b-c_D9").is_empty());
        assert_eq!(config_key_errors("a b").len(), 1);
        assert_eq!(
            config_key_errors(".."),
            vec!["must not be '..'".to_string()]
        );
        assert_eq!(config_key_errors("..x").len(), 1);
    }

    #[test]
    fn cluster_trust_bundle_projection_dropped_when_the_gate_is_off() {
        let pod = || {
            serde_json::json!({"spec": {"volumes": [
                {"name": "b", "projected": {"sources": [
                    {"clusterTrustBundle": {"signerName": "x.dev/y", "path": "ca.crt"}},
                    {"configMap": {"name": "c"}}
                ]}},
                {"name": "e", "emptyDir": {}}
            ]}})
        };
        let mut p = pod();
        assert!(drop_disabled_cluster_trust_bundle_projection(&mut p, None));
        // The source stays, emptied, as Go's `Sources[j].ClusterTrustBundle = nil` leaves it.
        assert_eq!(
            p["spec"]["volumes"][0]["projected"]["sources"],
            serde_json::json!([{}, {"configMap": {"name": "c"}}])
        );
        // An update of a pod that already used one keeps it.
        let old = pod();
        let mut p = pod();
        assert!(!drop_disabled_cluster_trust_bundle_projection(
            &mut p,
            Some(&old)
        ));
        assert_eq!(p, pod());
    }
}
