//! PodCertificateRequest create/update rules (ValidatePodCertificateRequestCreate/Update,
//! Strategy.PrepareForCreate/PrepareForUpdate), the cleaner and field selectors.

use podcert_testkit::api_status::{ApiError, FieldError, FieldErrorKind};
use podcert_testkit::rules::pcr;
use serde_json::{json, Value};
use time::OffsetDateTime;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/kubelet-vectors");

fn vector_object(name: &str) -> Value {
    let all: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/vectors.json")).unwrap())
            .unwrap();
    let mut o = all.into_iter().find(|v| v["name"] == name).unwrap()["object"].clone();
    o["metadata"]["name"] = json!(o["metadata"]["name"].as_str().unwrap().to_lowercase());
    o
}

/// A valid v1beta1 proof-of-possession request, internal form.
fn base() -> Value {
    pcr::to_internal(vector_object("ED25519-pop-v1beta1"), "v1beta1")
}

/// Create validation of a 1.37 kube-apiserver.
fn create(mut obj: Value) -> Result<Value, Vec<FieldError>> {
    pcr::validate_create(&mut obj, 37).map(|()| obj)
}

fn first(obj: Value) -> FieldError {
    create(obj).unwrap_err().into_iter().next().unwrap()
}

#[test]
fn status_is_cleared_and_max_expiration_defaulted() {
    let mut o = base();
    o["status"] =
        json!({ "certificateChain": "x", "conditions": [{ "type": "Issued", "status": "True" }] });
    o["spec"]
        .as_object_mut()
        .unwrap()
        .remove("maxExpirationSeconds");
    let stored = create(o).unwrap();
    assert_eq!(stored["status"], json!({}));
    assert_eq!(stored["spec"]["maxExpirationSeconds"], 86400);
    // Decoding defaults it too.
    let mut raw = vector_object("ED25519-pop-v1beta1");
    raw["spec"]
        .as_object_mut()
        .unwrap()
        .remove("maxExpirationSeconds");
    assert_eq!(
        pcr::to_internal(raw, "v1beta1")["spec"]["maxExpirationSeconds"],
        86400
    );
}

#[test]
fn max_expiration_bounds() {
    for (signer, secs, ok) in [
        ("example.com/s", 3599, false),
        ("example.com/s", 3600, true),
        ("example.com/s", 7_862_400, true),
        ("example.com/s", 7_862_401, false),
        ("kubernetes.io/s", 86400, true),
        ("kubernetes.io/s", 86401, false),
        ("x.kubernetes.io/s", 86401, false),
    ] {
        let mut o = base();
        o["spec"]["signerName"] = json!(signer);
        o["spec"]["maxExpirationSeconds"] = json!(secs);
        // The proof covers the pod UID only, so changing the signer keeps it valid.
        let r = create(o);
        assert_eq!(r.is_ok(), ok, "{signer} {secs}: {r:?}");
    }
    let mut o = base();
    o["spec"]["maxExpirationSeconds"] = json!(60);
    assert_eq!(
        first(o).message(),
        "spec.maxExpirationSeconds: Invalid value: 60: must be in the range [3600, 7862400]"
    );
    let mut o = base();
    o["spec"]["signerName"] = json!("kubernetes.io/kube-apiserver-client-pod");
    o["spec"]["maxExpirationSeconds"] = json!(90000);
    assert_eq!(first(o).detail, "must be in the range [3600, 86400]");
}

#[test]
fn signer_name_format() {
    let mut o = base();
    o["spec"]["signerName"] = json!("no-slash");
    let e = first(o);
    assert_eq!(
        e.message(),
        "spec.signerName: Invalid value: \"no-slash\": must be a fully qualified domain and path of the form 'example.com/signer-name'"
    );
    let mut o = base();
    o["spec"]["signerName"] = json!("");
    assert_eq!(first(o).message(), "spec.signerName: Required value");
}

#[test]
fn identity_fields() {
    let mut o = base();
    o["spec"]["podUID"] = json!("");
    let errs = create(o).unwrap_err();
    assert_eq!(
        errs[0].message(),
        "spec.podUID: Invalid value: \"\": must not be empty"
    );

    let mut o = base();
    o["spec"]["nodeUID"] = json!("u".repeat(129));
    assert_eq!(
        first(o).message(),
        "spec.nodeUID: Too long: may not be more than 128 bytes"
    );

    let mut o = base();
    o["spec"]["serviceAccountName"] = json!("Bad_SA");
    let e = first(o);
    assert_eq!(e.field, "spec.serviceAccountName");
    assert!(
        e.detail.starts_with("a lowercase RFC 1123 subdomain"),
        "{}",
        e.detail
    );

    let mut o = base();
    o["spec"]["podName"] = json!("");
    assert_eq!(first(o).field, "spec.podName");
    let mut o = base();
    o["spec"]["nodeName"] = json!("node_a");
    assert_eq!(first(o).field, "spec.nodeName");

    let mut o = base();
    o["metadata"]["namespace"] = json!("");
    assert_eq!(first(o).message(), "metadata.namespace: Required value");
}

#[test]
fn user_annotation_keys_must_be_domain_prefixed() {
    let mut o = base();
    o["spec"]["unverifiedUserAnnotations"] =
        json!({ "example.com/ok": "v", "Example.COM/Mixed": "v" });
    create(o).unwrap();

    let mut o = base();
    o["spec"]["unverifiedUserAnnotations"] = json!({ "plain": "v" });
    assert_eq!(
        first(o).message(),
        "spec.unverifiedUserAnnotations: Invalid value: \"plain\": must be a domain-prefixed key (such as \"acme.io/foo\")"
    );
    let mut o = base();
    o["spec"]["unverifiedUserAnnotations"] = json!({ "example.com/a/b": "v" });
    assert!(first(o)
        .detail
        .starts_with("a qualified name must consist of"));
    let mut o = base();
    o["spec"]["unverifiedUserAnnotations"] = json!({ "example.com/k": "v".repeat(256 * 1024) });
    assert_eq!(
        first(o).message(),
        "spec.unverifiedUserAnnotations: Too long: may not be more than 262144 bytes"
    );
}

#[test]
fn key_material_size_limits() {
    use base64::Engine as _;
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![0u8; n]);
    let mut o = base();
    o["spec"]["pkixPublicKey"] = json!(b64(10 * 1024 + 1));
    assert_eq!(
        first(o).message(),
        "spec.pkixPublicKey: Too long: may not be more than 10240 bytes"
    );
    let mut o = base();
    o["spec"]["proofOfPossession"] = json!(b64(10 * 1024 + 1));
    assert_eq!(
        first(o).message(),
        "spec.proofOfPossession: Too long: may not be more than 10240 bytes"
    );
    let mut o = pcr::to_internal(vector_object("ED25519-stub-v1"), "v1");
    o["spec"]["stubPKCS10Request"] = json!(b64(10 * 1024 + 1));
    assert_eq!(
        first(o).message(),
        "spec.stubPKCS10Request: Too long: may not be more than 10240 bytes"
    );
}

#[test]
fn carriers() {
    let on_1_35 = |mut o: Value| {
        pcr::validate_create(&mut o, 35)
            .unwrap_err()
            .into_iter()
            .next()
            .unwrap()
    };
    // Proof without key, key without proof: refused by the 1.35 rules.
    let mut o = base();
    o["spec"].as_object_mut().unwrap().remove("pkixPublicKey");
    let e = on_1_35(o.clone());
    assert_eq!(
        e.message(),
        "spec.pkixPublicKey: Invalid value: []byte{}: must be a valid PKIX-serialized public key"
    );
    // 1.36-1.38: one error on `spec` (ValidatePodCertificateRequestCreate's carrier switch).
    assert_eq!(
        first(o).message(),
        "spec: Invalid value: exactly one of (stubPKCS10Request) or (pkixPublicKey, proofOfPossession) must be set"
    );
    let mut o = base();
    o["spec"]
        .as_object_mut()
        .unwrap()
        .remove("proofOfPossession");
    assert_eq!(
        on_1_35(o.clone()).detail,
        "could not verify proof-of-possession signature"
    );
    assert_eq!(
        first(o).detail,
        "exactly one of (stubPKCS10Request) or (pkixPublicKey, proofOfPossession) must be set"
    );

    // Stub together with the deprecated fields: refused, as one error on `spec`
    // (ValidatePodCertificateRequestCreate, 1.36-1.38).
    let pop = base();
    let mut o = pcr::to_internal(vector_object("ED25519-stub-v1beta1"), "v1beta1");
    o["spec"]["pkixPublicKey"] = pop["spec"]["pkixPublicKey"].clone();
    o["spec"]["proofOfPossession"] = pop["spec"]["proofOfPossession"].clone();
    let errs = create(o).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].kind, FieldErrorKind::Invalid);
    assert_eq!(
        errs[0].message(),
        "spec: Invalid value: exactly one of (stubPKCS10Request) or (pkixPublicKey, proofOfPossession) must be set"
    );

    // A stub that is not a PKCS#10 request.
    let mut o = pcr::to_internal(vector_object("ED25519-stub-v1"), "v1");
    o["spec"]["stubPKCS10Request"] = json!("AQID");
    assert_eq!(
        first(o).message(),
        "spec.stubPKCS10Request: Invalid value: must be a valid PKCS#10 CSR"
    );
}

#[test]
fn stub_key_types_follow_the_same_rules() {
    use base64::Engine as _;
    // An RSA-2048 stub made here (the kubelet never sends one): refused with the RSA message.
    let k = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&k)
        .unwrap();
    let mut o = pcr::to_internal(vector_object("ED25519-stub-v1"), "v1");
    o["spec"]["stubPKCS10Request"] =
        json!(base64::engine::general_purpose::STANDARD.encode(csr.der()));
    assert_eq!(
        first(o).message(),
        "spec.stubPKCS10Request: Invalid value: \"2048-bit modulus\": RSA keys must have modulus size 3072 or 4096"
    );
    // P-256 with SHA-256 made by rcgen: accepted.
    let k = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&k)
        .unwrap();
    let mut o = pcr::to_internal(vector_object("ED25519-stub-v1"), "v1");
    o["spec"]["stubPKCS10Request"] =
        json!(base64::engine::general_purpose::STANDARD.encode(csr.der()));
    create(o).unwrap();
}

#[test]
fn undecodable_bytes_are_a_bad_request() {
    let mut o = vector_object("ED25519-pop-v1beta1");
    o["spec"]["pkixPublicKey"] = json!("not base64!");
    let e: ApiError = pcr::check_decodable(&o, "v1beta1").unwrap_err();
    assert_eq!(e.code, 400);
    assert_eq!(
        e.message,
        "PodCertificateRequest in version \"v1beta1\" cannot be handled as a PodCertificateRequest: illegal base64 data at input byte 3"
    );
}

#[test]
fn invalid_error_body_like_the_apiserver() {
    let mut o = base();
    o["spec"]["maxExpirationSeconds"] = json!(60);
    o["spec"]["nodeUID"] = json!("");
    let errs = create(o).unwrap_err();
    let e = ApiError::invalid(pcr::GROUP, pcr::KIND, "req-ed25519-pop", &errs);
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "PodCertificateRequest.certificates.k8s.io \"req-ed25519-pop\" is invalid: [spec.nodeUID: Invalid value: \"\": must not be empty, spec.maxExpirationSeconds: Invalid value: 60: must be in the range [3600, 7862400]]"
    );
    assert_eq!(
        e.to_status()["details"]["causes"][1]["field"],
        "spec.maxExpirationSeconds"
    );
}

#[test]
fn spec_is_immutable_and_status_ignored_on_the_main_resource() {
    let old = create(base()).unwrap();
    let mut same = old.clone();
    same["status"] = json!({ "conditions": [{ "type": "Issued", "status": "True" }] });
    same["metadata"]["labels"] = json!({ "a": "b" });
    pcr::validate_update(&old, &mut same).unwrap();
    assert_eq!(same["status"], old["status"]);

    let mut changed = old.clone();
    changed["spec"]["podName"] = json!("other");
    let e = pcr::validate_update(&old, &mut changed).unwrap_err();
    assert_eq!(e[0].field, "spec");
    assert!(e[0]
        .message()
        .starts_with("spec: Invalid value: certificates.PodCertificateRequestSpec{SignerName:"));
    assert!(e[0].message().ends_with(": field is immutable"));
}

#[test]
fn cleaner_deletes_after_max_age() {
    let o = create(base()).unwrap();
    let created = OffsetDateTime::from_unix_timestamp(1_795_600_800).unwrap(); // the vector's creationTimestamp
    let age = time::Duration::minutes(15);
    assert!(!pcr::should_clean(&o, created + age, age));
    assert!(pcr::should_clean(
        &o,
        created + age + time::Duration::seconds(1),
        age
    ));
    let mut no_ts = o.clone();
    no_ts["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("creationTimestamp");
    assert!(!pcr::should_clean(
        &no_ts,
        created + time::Duration::days(1),
        age
    ));
}

#[test]
fn field_selectors() {
    let o = create(base()).unwrap();
    assert_eq!(
        pcr::field_value(&o, "spec.signerName").as_deref(),
        Some("acceptance.podcert.test/spiffe")
    );
    assert_eq!(
        pcr::field_value(&o, "spec.nodeName").as_deref(),
        Some("node-a")
    );
    assert_eq!(
        pcr::field_value(&o, "spec.podName").as_deref(),
        Some("pod-1")
    );
    assert_eq!(
        pcr::field_value(&o, "metadata.namespace").as_deref(),
        Some("team-1")
    );
    assert_eq!(
        pcr::field_value(&o, "metadata.name").as_deref(),
        Some("req-ed25519-pop")
    );
    assert_eq!(pcr::field_value(&o, "spec.podUID"), None);
}

#[test]
fn mistyped_fields_are_a_bad_request() {
    let mut o = vector_object("ED25519-pop-v1beta1");
    o["spec"]["maxExpirationSeconds"] = json!("3600");
    let e = pcr::check_decodable(&o, "v1beta1").unwrap_err();
    assert_eq!(e.code, 400);
    assert_eq!(
        e.message,
        "PodCertificateRequest in version \"v1beta1\" cannot be handled as a PodCertificateRequest: json: cannot unmarshal string into Go struct field PodCertificateRequestSpec.spec.maxExpirationSeconds of type int32"
    );
    o["spec"]["maxExpirationSeconds"] = json!(4_294_967_296_i64);
    assert!(pcr::check_decodable(&o, "v1beta1").unwrap_err().message.ends_with("cannot unmarshal number 4294967296 into Go struct field PodCertificateRequestSpec.spec.maxExpirationSeconds of type int32"));
    let mut o = vector_object("ED25519-pop-v1beta1");
    o["spec"]["unverifiedUserAnnotations"] = json!({ "example.com/k": 1 });
    assert!(pcr::check_decodable(&o, "v1beta1").is_err());
    pcr::check_decodable(&vector_object("ED25519-pop-v1beta1"), "v1beta1").unwrap();
}
