//! ClusterTrustBundle rules: ValidateClusterTrustBundle/Update and validateTrustBundle
//! (pkg/apis/certificates/validation/validation.go), the name rule
//! (pkg/apis/core/validation/names.go ValidateClusterTrustBundleName) and the
//! ClusterTrustBundleAttest admission plugin (plugin/pkg/admission/certificates/ctbattest).

use super::{names, pem_go, signers, Attributes, UserInfo};
use crate::api_status::{ApiError, FieldError};
use serde_json::{json, Map, Value};

/// certificates.MaxTrustBundleSize.
pub const MAX_TRUST_BUNDLE_SIZE: usize = 1024 * 1024;
const PATH: &str = "spec.trustBundle";
const OMITTED: &str = "<value omitted>";

fn spec_str<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj["spec"][key].as_str().unwrap_or("")
}

/// Converts an object received in `version` (`v1beta1`, `v1`) to the internal form; both
/// versions carry the same spec (signerName, trustBundle); unknown fields are dropped.
pub fn to_internal(mut obj: Value, _version: &str) -> Value {
    let mut spec = Map::new();
    for k in ["signerName", "trustBundle"] {
        if let Some(v) = obj["spec"].get(k).filter(|v| !v.is_null()) {
            spec.insert(k.into(), v.clone());
        }
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("spec".into(), Value::Object(spec));
    }
    obj
}

/// Converts a stored object to what `version` serves.
pub fn from_internal(obj: &Value, version: &str) -> Value {
    let mut o = obj.clone();
    o["apiVersion"] = Value::String(format!("certificates.k8s.io/{version}"));
    o["kind"] = Value::String("ClusterTrustBundle".into());
    o
}

/// ValidateClusterTrustBundle with bundle parsing.
pub fn validate_create(obj: &mut Value) -> Result<(), Vec<FieldError>> {
    into_result(validate(obj, true))
}

/// ValidateClusterTrustBundleUpdate: the bundle is re-parsed only when it changed, and
/// spec.signerName is immutable.
pub fn validate_update(old: &Value, new: &mut Value) -> Result<(), Vec<FieldError>> {
    let parse = spec_str(old, "trustBundle") != spec_str(new, "trustBundle");
    let mut errs = validate(new, parse);
    let (o, n) = (spec_str(old, "signerName"), spec_str(new, "signerName"));
    if o != n {
        errs.push(FieldError::invalid(
            "spec.signerName",
            json!(n),
            "field is immutable",
        ));
    }
    into_result(errs)
}

fn into_result(errs: Vec<FieldError>) -> Result<(), Vec<FieldError>> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

fn validate(obj: &Value, parse_bundle: bool) -> Vec<FieldError> {
    let signer = spec_str(obj, "signerName").to_string();
    let name_fn =
        move |name: &str, prefix: bool| names::cluster_trust_bundle_name(&signer, name, prefix);
    let mut errs = names::validate_object_meta(obj, false, &name_fn);
    let signer = spec_str(obj, "signerName");
    if !signer.is_empty() {
        errs.extend(names::validate_signer_name("spec.signerName", signer));
    }
    if parse_bundle {
        errs.extend(validate_trust_bundle(spec_str(obj, "trustBundle")));
    }
    errs
}

/// validateTrustBundle: CERTIFICATE blocks only, no headers, each an X.509 CA certificate,
/// no duplicates, at least one.
pub fn validate_trust_bundle(bundle: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if bundle.len() > MAX_TRUST_BUNDLE_SIZE {
        errs.push(FieldError::too_long(PATH, MAX_TRUST_BUNDLE_SIZE));
        return errs;
    }
    // First occurrence order keeps the duplicate report deterministic (Go iterates a map).
    let mut dedupe: Vec<(Vec<u8>, Vec<usize>)> = Vec::new();
    for (i, b) in pem_go::decode_all(bundle.as_bytes())
        .into_iter()
        .enumerate()
    {
        let bad = |d: String| FieldError::invalid(PATH, json!(OMITTED), d);
        if b.kind != "CERTIFICATE" {
            errs.push(bad(format!("entry {i} has bad block type: {}", b.kind)));
            continue;
        }
        if !b.headers.is_empty() {
            errs.push(bad(format!("entry {i} has PEM block headers")));
            continue;
        }
        let Some(cert) = crate::rules::x509_go::parse_certificate(&b.bytes) else {
            errs.push(bad(format!("entry {i} does not parse as X.509")));
            continue;
        };
        let bc = cert.basic_constraints().ok().flatten();
        if !bc.is_some_and(|bc| bc.value.ca) {
            errs.push(bad(format!("entry {i} does not have the CA bit set")));
            continue;
        }
        match dedupe.iter_mut().find(|(k, _)| *k == b.bytes) {
            Some((_, idx)) => idx.push(i),
            None => dedupe.push((b.bytes, vec![i])),
        }
    }
    if !errs.is_empty() {
        return errs;
    }
    if dedupe.is_empty() {
        errs.push(FieldError::invalid(
            PATH,
            json!(OMITTED),
            "at least one trust anchor must be provided",
        ));
    }
    for (_, idx) in dedupe {
        if idx.len() > 1 {
            let list = idx
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            errs.push(FieldError::invalid(
                PATH,
                json!(OMITTED),
                format!("duplicate trust anchor (indices [{list}])"),
            ));
        }
    }
    errs
}

/// The name admission errors carry (admission.extractResourceName).
pub(crate) fn admission_name(obj: &Value) -> String {
    let m = &obj["metadata"];
    [m["name"].as_str(), m["generateName"].as_str()]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty())
        .unwrap_or("Unknown")
        .to_string()
}

/// ClusterTrustBundleAttest on create: writing a bundle with `spec.signerName` needs `attest`
/// on `signers` for that name (or `<domain>/*`). A validating admission plugin: it runs after
/// validation, so call it once `validate_create` passed.
pub fn authorize_write(
    user: &UserInfo,
    obj: &Value,
    authorize: &dyn Fn(&Attributes) -> bool,
) -> Result<(), ApiError> {
    let signer = spec_str(obj, "signerName");
    if signer.is_empty()
        || signers::is_authorized_for_signer_name(user, "attest", signer, authorize)
    {
        return Ok(());
    }
    Err(ApiError::forbidden(
        "certificates.k8s.io",
        "clustertrustbundles",
        &admission_name(obj),
        &format!("user not permitted to attest for signerName {signer:?}"),
    ))
}

/// ClusterTrustBundleAttest on update: skipped when only garbage-collection fields
/// (ownerReferences, finalizers) changed (rbac.IsOnlyMutatingGCFields).
pub fn authorize_update(
    user: &UserInfo,
    old: &Value,
    new: &Value,
    authorize: &dyn Fn(&Attributes) -> bool,
) -> Result<(), ApiError> {
    if only_gc_fields_changed(old, new) {
        return Ok(());
    }
    authorize_write(user, new, authorize)
}

fn only_gc_fields_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v["metadata"].as_object_mut() {
            for k in [
                "ownerReferences",
                "finalizers",
                "resourceVersion",
                "managedFields",
            ] {
                m.remove(k);
            }
        }
        v
    };
    strip(old) == strip(new)
}

/// Field selector values (`metadata.name`, `spec.signerName`).
pub fn field_value(obj: &Value, field: &str) -> Option<String> {
    let v = match field {
        "metadata.name" => &obj["metadata"]["name"],
        "spec.signerName" => &obj["spec"]["signerName"],
        _ => return None,
    };
    Some(v.as_str().unwrap_or("").to_string())
}
