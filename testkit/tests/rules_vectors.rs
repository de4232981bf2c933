//! Every kubelet vector goes through conversion and create validation and is accepted or
//! refused exactly as its `expect` says kube-apiserver would.

use podcert_testkit::rules::pcr;
use serde_json::Value;

fn read(file: &str) -> Vec<Value> {
    let path = format!(
        "{}/../testdata/kubelet-vectors/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn vectors() -> Vec<Value> {
    read("vectors.json")
}

/// Kubernetes 1.38's ML-DSA requests, built by Go 1.27's crypto/mldsa and crypto/x509.
fn mldsa_vectors() -> Vec<Value> {
    read("vectors-mldsa.json")
}

/// The object as the kubelet would submit it. The vectors' names (`req-ED25519-pop`) carry
/// upper case, which kube-apiserver refuses for any object name (DNS-1123 subdomain); kubelets
/// use `generateName: req-`, so the name is lower-cased as a generated one would be.
fn submitted(v: &Value) -> Value {
    let mut o = v["object"].clone();
    let name = o["metadata"]["name"].as_str().unwrap().to_lowercase();
    o["metadata"]["name"] = Value::String(name);
    o
}

fn version(v: &Value) -> String {
    let api = v["object"]["apiVersion"].as_str().unwrap();
    api.rsplit('/').next().unwrap().to_string()
}

#[test]
fn every_vector_is_accepted_or_refused_as_expected() {
    let all = vectors();
    assert_eq!(all.len(), 45);
    let mut wrong = Vec::new();
    for v in &all {
        let ver = version(v);
        pcr::check_decodable(&v["object"], &ver).unwrap();
        let mut obj = pcr::to_internal(submitted(v), &ver);
        let verdict = pcr::validate_create(&mut obj, 37);
        let expect = v["expect"].as_str().unwrap();
        let want_ok = matches!(expect, "Issued" | "Denied" | "NoForgedNames");
        if verdict.is_ok() != want_ok {
            wrong.push(format!("{}: expected {expect}, got {verdict:?}", v["name"]));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

fn refusal(name: &str) -> Vec<podcert_testkit::api_status::FieldError> {
    refusal_on(name, 37)
}

fn refusal_on(name: &str, kube_minor: u32) -> Vec<podcert_testkit::api_status::FieldError> {
    let v = vectors()
        .into_iter()
        .chain(mldsa_vectors())
        .find(|v| v["name"] == name)
        .unwrap();
    let mut obj = pcr::to_internal(submitted(&v), &version(&v));
    pcr::validate_create(&mut obj, kube_minor).unwrap_err()
}

#[test]
fn mldsa_vectors_are_accepted_or_refused_as_1_38_does() {
    let all = mldsa_vectors();
    assert_eq!(all.len(), 15);
    let mut wrong = Vec::new();
    for v in &all {
        let ver = version(v);
        let mut obj = pcr::to_internal(submitted(v), &ver);
        let verdict = pcr::validate_create(&mut obj, 38);
        let want_ok = v["expect"] == "Issued";
        if verdict.is_ok() != want_ok {
            wrong.push(format!(
                "{}: expected {}, got {verdict:?}",
                v["name"], v["expect"]
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn mldsa_refusals_carry_the_apiserver_messages() {
    // 1.38: a stub signed by another key, or claiming another parameter set, fails
    // CheckSignature; the pkix carrier parses the key but knows no ML-DSA proof.
    for name in [
        "MLDSA65-stub-signed-by-other-key",
        "MLDSA44-stub-claims-mldsa65",
        "MLDSA87-stub-bad-signature",
        "ECDSAP256-stub-claims-mldsa65",
    ] {
        let e = refusal_on(name, 38);
        assert_eq!(
            e[0].message(),
            "spec.stubPKCS10Request: Invalid value: invalid signature",
            "{name}"
        );
    }
    let e = refusal_on("MLDSA65-pop-v1beta1", 38);
    assert_eq!(e[0].field, "spec.pkixPublicKey");
    assert!(
        e[0].message()
            .ends_with(": unknown public key type; supported types are Ed25519, ECDSA, and RSA"),
        "{}",
        e[0].message()
    );
    // 1.37 (Go 1.26 knows no ML-DSA): the stub parses with no key, the pkix key not at all.
    for name in ["MLDSA44-stub-v1", "MLDSA65-stub-v1beta1", "MLDSA87-stub-v1"] {
        let e = refusal_on(name, 37);
        assert_eq!(
            e[0].message(),
            "spec.stubPKCS10Request: Invalid value: unknown public key type; supported types are Ed25519, ECDSA, and RSA",
            "{name}"
        );
    }
    let e = refusal_on("MLDSA65-pop-v1beta1", 37);
    assert!(
        e[0].message()
            .ends_with(": must be a valid PKIX-serialized public key"),
        "{}",
        e[0].message()
    );
}

#[test]
fn upper_case_names_are_refused_like_any_object_name() {
    let v = vectors()
        .into_iter()
        .find(|v| v["name"] == "ED25519-pop-v1beta1")
        .unwrap();
    let mut obj = pcr::to_internal(v["object"].clone(), "v1beta1");
    let e = pcr::validate_create(&mut obj, 37).unwrap_err();
    assert_eq!(e[0].field, "metadata.name");
}

#[test]
fn rejected_vectors_fail_with_the_apiserver_error() {
    let e = refusal("ED25519-pop-wrong-uid");
    assert_eq!(e[0].field, "spec.proofOfPossession");
    assert_eq!(
        e[0].message(),
        "spec.proofOfPossession: Invalid value: could not verify proof-of-possession signature"
    );

    for name in [
        "RSA3072-pop-wrong-uid",
        "ECDSAP521-pop-wrong-uid",
        "pop-from-other-key",
    ] {
        assert_eq!(
            refusal(name)[0].detail,
            "could not verify proof-of-possession signature",
            "{name}"
        );
    }

    let e = refusal("RSA2048-pop");
    assert_eq!(e[0].message(), "spec.pkixPublicKey: Invalid value: \"2048-bit modulus\": RSA keys must have modulus size 3072 or 4096");

    let e = refusal("ECDSAP224-pop");
    assert_eq!(e[0].message(), "spec.pkixPublicKey: Invalid value: \"curve P-224\": elliptic public keys must use curve P256 or P384");

    let e = refusal("garbage-spki");
    assert_eq!(e[0].field, "spec.pkixPublicKey");
    assert!(
        e[0].message()
            .ends_with(": must be a valid PKIX-serialized public key"),
        "{}",
        e[0].message()
    );
    assert!(
        e[0].message().contains("Invalid value: []byte{0x"),
        "{}",
        e[0].message()
    );

    for kt in [
        "ED25519",
        "ECDSAP256",
        "ECDSAP384",
        "ECDSAP521",
        "RSA3072",
        "RSA4096",
    ] {
        let e = refusal(&format!("{kt}-stub-bad-signature"));
        assert_eq!(e[0].field, "spec.stubPKCS10Request", "{kt}");
        assert_eq!(e[0].detail, "invalid signature", "{kt}");
    }
}

#[test]
fn v1_view_drops_the_deprecated_carrier_and_v1alpha1_the_new_fields() {
    let v = vectors()
        .into_iter()
        .find(|v| v["name"] == "unknown-user-annotation")
        .unwrap();
    let internal = pcr::to_internal(v["object"].clone(), "v1beta1");
    let as_v1 = pcr::from_internal(&internal, "v1");
    assert!(as_v1["spec"].get("pkixPublicKey").is_none());
    assert!(as_v1["spec"].get("proofOfPossession").is_none());
    assert_eq!(
        as_v1["spec"]["unverifiedUserAnnotations"],
        internal["spec"]["unverifiedUserAnnotations"]
    );
    assert_eq!(as_v1["apiVersion"], "certificates.k8s.io/v1");
    let as_alpha = pcr::from_internal(&internal, "v1alpha1");
    assert!(as_alpha["spec"].get("unverifiedUserAnnotations").is_none());
    assert!(as_alpha["spec"].get("pkixPublicKey").is_some());

    let stub = vectors()
        .into_iter()
        .find(|v| v["name"] == "ED25519-stub-v1")
        .unwrap();
    let internal = pcr::to_internal(stub["object"].clone(), "v1");
    assert!(pcr::from_internal(&internal, "v1alpha1")["spec"]
        .get("stubPKCS10Request")
        .is_none());
    assert!(pcr::from_internal(&internal, "v1beta1")["spec"]
        .get("stubPKCS10Request")
        .is_some());
    assert!(pcr::from_internal_at(&internal, "v1beta1", 35)["spec"]
        .get("stubPKCS10Request")
        .is_none());
    // A v1 write cannot smuggle the deprecated carrier in: the decoder drops it.
    let pop = vectors()
        .into_iter()
        .find(|v| v["name"] == "ED25519-pop-v1beta1")
        .unwrap();
    let internal = pcr::to_internal(pop["object"].clone(), "v1");
    assert!(internal["spec"].get("pkixPublicKey").is_none());
}
