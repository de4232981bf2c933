//! Strategy.PrepareForCreate + ValidatePodCertificateRequestCreate
//! (pkg/apis/certificates/validation/validation.go), with the 1.36+ stubPKCS10Request carrier.

use super::{decode_bytes, spec_str, DEFAULT_MAX_EXPIRATION_SECONDS};
use crate::api_status::FieldError;
use crate::rules::keys::{self, PublicKey};
use crate::rules::{gofmt, names};
use serde_json::{json, Value};

/// certificates.MinMaxExpirationSeconds / MaxMaxExpirationSeconds /
/// KubernetesMaxMaxExpirationSeconds.
pub const MIN_MAX_EXPIRATION: i64 = 3600;
pub const MAX_MAX_EXPIRATION: i64 = 7_862_400;
pub const KUBERNETES_MAX_MAX_EXPIRATION: i64 = 86400;
/// certificates.MaxPKIXPublicKeySize / MaxProofOfPossessionSize (and the stub, per contract).
pub const MAX_KEY_MATERIAL: usize = 10 * 1024;
const MAX_UID_LEN: usize = 128;

pub const PKIX_PATH: &str = "spec.pkixPublicKey";
pub const POP_PATH: &str = "spec.proofOfPossession";
pub const STUB_PATH: &str = "spec.stubPKCS10Request";

/// PrepareForCreate clears the status; decoding defaulted maxExpirationSeconds.
pub fn prepare_for_create(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), json!({}));
    }
    if obj["spec"].is_object()
        && obj["spec"]
            .get("maxExpirationSeconds")
            .is_none_or(Value::is_null)
    {
        obj["spec"]["maxExpirationSeconds"] = json!(DEFAULT_MAX_EXPIRATION_SECONDS);
    }
}

fn bytes_of(obj: &Value, key: &str, errs: &mut Vec<FieldError>) -> Vec<u8> {
    match decode_bytes(&obj["spec"][key]) {
        Ok(b) => b,
        Err(e) => {
            errs.push(FieldError::invalid_omitted(format!("spec.{key}"), e));
            Vec::new()
        }
    }
}

/// ValidatePodCertificateRequestCreate of the kube-apiserver of minor `kube_minor`.
pub fn validate(obj: &Value, kube_minor: u32) -> Vec<FieldError> {
    let mut errs = names::validate_object_meta(obj, true, &names::name_is_dns_subdomain);
    let signer = spec_str(obj, "signerName");
    errs.extend(names::validate_signer_name("spec.signerName", signer));

    if let Some(ann) = obj["spec"]
        .get("unverifiedUserAnnotations")
        .filter(|v| !v.is_null())
    {
        errs.extend(validate_user_annotations(
            ann,
            "spec.unverifiedUserAnnotations",
        ));
    }

    for (name_field, uid_field) in [
        ("podName", "podUID"),
        ("serviceAccountName", "serviceAccountUID"),
        ("nodeName", "nodeUID"),
    ] {
        // ValidatePodName / ValidateServiceAccountName / ValidateNodeName: DNS subdomains.
        let name = spec_str(obj, name_field);
        for m in names::name_is_dns_subdomain(name, false) {
            errs.push(FieldError::invalid(
                format!("spec.{name_field}"),
                json!(name),
                m,
            ));
        }
        let uid = spec_str(obj, uid_field);
        if uid.is_empty() {
            errs.push(FieldError::invalid(
                format!("spec.{uid_field}"),
                json!(uid),
                "must not be empty",
            ));
        }
        if uid.len() > MAX_UID_LEN {
            errs.push(FieldError::too_long(
                format!("spec.{uid_field}"),
                MAX_UID_LEN,
            ));
        }
    }

    let Some(max_exp) = obj["spec"]["maxExpirationSeconds"].as_i64() else {
        errs.push(FieldError::required(
            "spec.maxExpirationSeconds",
            "must be set",
        ));
        return errs;
    };
    let upper = if names::is_kubernetes_signer_name(signer) {
        KUBERNETES_MAX_MAX_EXPIRATION
    } else {
        MAX_MAX_EXPIRATION
    };
    if !(MIN_MAX_EXPIRATION..=upper).contains(&max_exp) {
        errs.push(FieldError::invalid(
            "spec.maxExpirationSeconds",
            json!(max_exp),
            format!("must be in the range [{MIN_MAX_EXPIRATION}, {upper}]"),
        ));
    }

    let pkix = bytes_of(obj, "pkixPublicKey", &mut errs);
    let pop = bytes_of(obj, "proofOfPossession", &mut errs);
    let stub = bytes_of(obj, "stubPKCS10Request", &mut errs);
    let exactly_one = || {
        FieldError::invalid_omitted(
            "spec",
            "exactly one of (stubPKCS10Request) or (pkixPublicKey, proofOfPossession) must be set",
        )
    };
    if kube_minor >= 36 {
        // validation.go (1.36-1.38): the stub alone, or pkix and proof together; anything
        // else is one error on `spec`.
        match (stub.is_empty(), pkix.is_empty(), pop.is_empty()) {
            (false, true, true) => validate_stub(&stub, &pkix, &pop, kube_minor, &mut errs),
            (true, false, false) => {
                validate_pkix_and_proof(obj, &pkix, &pop, kube_minor, &mut errs)
            }
            _ => errs.push(exactly_one()),
        }
    } else if stub.is_empty() && pkix.is_empty() && pop.is_empty() {
        errs.push(exactly_one());
    } else if !stub.is_empty() {
        validate_stub(&stub, &pkix, &pop, kube_minor, &mut errs);
    } else {
        validate_pkix_and_proof(obj, &pkix, &pop, kube_minor, &mut errs);
    }
    errs
}

/// The 1.35 carrier: size limits, ParsePKIXPublicKey, allowed key types, proof of possession.
fn validate_pkix_and_proof(
    obj: &Value,
    pkix: &[u8],
    pop: &[u8],
    kube_minor: u32,
    errs: &mut Vec<FieldError>,
) {
    if pkix.len() > MAX_KEY_MATERIAL {
        errs.push(FieldError::too_long(PKIX_PATH, MAX_KEY_MATERIAL));
        return;
    }
    if pop.len() > MAX_KEY_MATERIAL {
        errs.push(FieldError::too_long(POP_PATH, MAX_KEY_MATERIAL));
        return;
    }
    // Before 1.38 (Go 1.26) ParsePKIXPublicKey does not know ML-DSA at all.
    let Some(key) = keys::parse_spki(pkix).filter(|k| knows(k, kube_minor)) else {
        errs.push(FieldError::invalid_raw(
            PKIX_PATH,
            gofmt::bytes(pkix),
            "must be a valid PKIX-serialized public key",
        ));
        return;
    };
    if let Some(e) = check_pkix_key_type(&key, pkix) {
        errs.push(e);
        return;
    }
    if !keys::verify_proof_of_possession(&key, spec_str(obj, "podUID"), pop) {
        errs.push(FieldError::invalid_omitted(
            POP_PATH,
            "could not verify proof-of-possession signature",
        ));
    }
}

/// Whether Go's x509 of this release parses the key (ML-DSA from Go 1.27, Kubernetes 1.38).
fn knows(key: &PublicKey, kube_minor: u32) -> bool {
    !matches!(key, PublicKey::MlDsa { .. }) || kube_minor >= 38
}

/// validateStubPKCS10Request (1.36-1.38, read from the released sources): size,
/// ParseCertificateRequest, the key-type switch, CheckSignature.
fn validate_stub(
    stub: &[u8],
    pkix: &[u8],
    pop: &[u8],
    kube_minor: u32,
    errs: &mut Vec<FieldError>,
) {
    let mut mixed = false;
    if !pkix.is_empty() {
        errs.push(FieldError::forbidden(
            PKIX_PATH,
            "must not be set when stubPKCS10Request is set",
        ));
        mixed = true;
    }
    if !pop.is_empty() {
        errs.push(FieldError::forbidden(
            POP_PATH,
            "must not be set when stubPKCS10Request is set",
        ));
        mixed = true;
    }
    if mixed {
        return;
    }
    if stub.len() > MAX_KEY_MATERIAL {
        errs.push(FieldError::too_long(STUB_PATH, MAX_KEY_MATERIAL));
        return;
    }
    let Some(req) = keys::parse_stub_request(stub) else {
        errs.push(FieldError::invalid_omitted(
            STUB_PATH,
            "must be a valid PKCS#10 CSR",
        ));
        return;
    };
    // ParseCertificateRequest leaves PublicKey nil for an algorithm it does not know (ML-DSA
    // before Go 1.27); the switch then reaches its default.
    let key = keys::parse_spki(&req.spki_der).filter(|k| knows(k, kube_minor));
    if let Some(e) = check_stub_key_type(key.as_ref(), kube_minor) {
        errs.push(e);
        return;
    }
    if !req.signature_ok {
        errs.push(FieldError::invalid_omitted(STUB_PATH, "invalid signature"));
    }
}

/// The key-type switch of validateStubPKCS10Request.
fn check_stub_key_type(key: Option<&PublicKey>, kube_minor: u32) -> Option<FieldError> {
    match key {
        Some(PublicKey::Ed25519(_)) | Some(PublicKey::MlDsa { .. }) => None,
        Some(PublicKey::Ec { curve, .. }) => match curve {
            keys::Curve::P256 | keys::Curve::P384 | keys::Curve::P521 => None,
            other => Some(FieldError::invalid(
                STUB_PATH,
                json!(format!("curve {}", other.go_name())),
                "elliptic public keys must use curve P256, P384, or P521",
            )),
        },
        Some(k @ PublicKey::Rsa { .. }) => rsa_size_error(k, STUB_PATH),
        Some(PublicKey::Other) | None => Some(FieldError::invalid_omitted(
            STUB_PATH,
            if kube_minor >= 38 {
                "unknown public key type; supported types are Ed25519, ECDSA, RSA, and ML-DSA"
            } else {
                "unknown public key type; supported types are Ed25519, ECDSA, and RSA"
            },
        )),
    }
}

fn rsa_size_error(key: &PublicKey, path: &str) -> Option<FieldError> {
    let bits = key.rsa_size_bits().unwrap_or(0);
    (bits != 3072 && bits != 4096).then(|| {
        FieldError::invalid(
            path,
            json!(format!("{bits}-bit modulus")),
            "RSA keys must have modulus size 3072 or 4096",
        )
    })
}

/// The key-type switch of validateDeprecatedPKIXPublicKey (unchanged in 1.38: ML-DSA keys
/// parse there but fall to its default).
fn check_pkix_key_type(key: &PublicKey, der: &[u8]) -> Option<FieldError> {
    match key {
        PublicKey::Ed25519(_) => None,
        PublicKey::Ec { curve, .. } => match curve {
            keys::Curve::P256 | keys::Curve::P384 | keys::Curve::P521 => None,
            other => Some(FieldError::invalid(
                PKIX_PATH,
                json!(format!("curve {}", other.go_name())),
                "elliptic public keys must use curve P256 or P384",
            )),
        },
        PublicKey::Rsa { .. } => rsa_size_error(key, PKIX_PATH),
        PublicKey::MlDsa { .. } | PublicKey::Other => Some(FieldError::invalid_raw(
            PKIX_PATH,
            gofmt::bytes(der),
            "unknown public key type; supported types are Ed25519, ECDSA, and RSA",
        )),
    }
}

/// ValidateUserAnnotations (pkg/apis/core/validation): keys are annotation keys (qualified
/// names, case-insensitive) that must carry a domain prefix (validation.IsDomainPrefixedKey);
/// values are free; the whole map is bounded like metadata.annotations.
pub fn validate_user_annotations(ann: &Value, field: &str) -> Vec<FieldError> {
    let Some(map) = ann.as_object() else {
        return vec![FieldError::new(
            crate::api_status::FieldErrorKind::TypeInvalid,
            field,
            Some(ann.clone()),
            "must be a map of strings",
        )];
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut errs = Vec::new();
    let mut total = 0usize;
    for k in keys {
        let lower = k.to_lowercase();
        for mut e in names::is_domain_prefixed_key(field, &lower) {
            if e.bad_value.is_some() {
                e.bad_value = Some(json!(k));
            }
            errs.push(e);
        }
        total += k.len() + map[k].as_str().map_or(0, str::len);
    }
    if total > names::TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(
            field,
            names::TOTAL_ANNOTATION_SIZE_LIMIT,
        ));
    }
    errs
}

/// How Go prints the spec struct as the bad value of `field is immutable` (%#v).
pub fn go_spec_value(spec: &Value) -> String {
    let s = |k: &str| gofmt::quote(spec[k].as_str().unwrap_or(""));
    let b = |k: &str| gofmt::bytes(&decode_bytes(&spec[k]).unwrap_or_default());
    let max = spec["maxExpirationSeconds"]
        .as_i64()
        .map_or("(*int32)(nil)".to_string(), |v| format!("&{v}"));
    let ann = spec["unverifiedUserAnnotations"].as_object().map_or(
        "map[string]string(nil)".to_string(),
        |m| {
            let inner = m
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}:{}",
                        gofmt::quote(k),
                        gofmt::quote(v.as_str().unwrap_or(""))
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("map[string]string{{{inner}}}")
        },
    );
    format!(
        "certificates.PodCertificateRequestSpec{{SignerName:{}, PodName:{}, PodUID:{}, ServiceAccountName:{}, ServiceAccountUID:{}, NodeName:{}, NodeUID:{}, MaxExpirationSeconds:{}, PKIXPublicKey:{}, ProofOfPossession:{}, StubPKCS10Request:{}, UnverifiedUserAnnotations:{}}}",
        s("signerName"),
        s("podName"),
        s("podUID"),
        s("serviceAccountName"),
        s("serviceAccountUID"),
        s("nodeName"),
        s("nodeUID"),
        max,
        b("pkixPublicKey"),
        b("proofOfPossession"),
        b("stubPKCS10Request"),
        ann
    )
}
