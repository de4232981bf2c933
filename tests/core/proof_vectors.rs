//! Every kubelet vector through decode + extract_subject_key, and an independent RustCrypto
//! re-verification of every proof of possession (aws-lc-rs does the production checks).

use podcert_core::key_type::KeyType;
use podcert_core::proof::{extract_subject_key, ProofError};
use podcert_core::request::wire;

use crate::fixtures::keys::{self, spki_from_key_file};
use crate::fixtures::vectors::{self, object_of, vectors};

#[test]
fn every_vector_meets_its_expectation() {
    let vectors = vectors();
    assert_eq!(
        vectors.len(),
        60,
        "the vector file changed; review this test"
    );
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        let expect = v["expect"].as_str().unwrap();
        let obj = wire::from_value(object_of(v)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = extract_subject_key(&obj.request);
        match expect {
            "Issued" | "Denied" | "NoForgedNames" => {
                let key = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                let want_type: KeyType = v["keyType"].as_str().unwrap().parse().unwrap();
                assert_eq!(key.key_type, want_type, "{name}");
                if let Some(file) = v["keyFile"].as_str() {
                    assert_eq!(key.spki_der, spki_from_key_file(file, want_type), "{name}");
                }
            }
            "Rejected" => {
                let err = got.expect_err(name);
                let class_ok = match name {
                    "RSA2048-pop" | "ECDSAP224-pop" => {
                        matches!(err, ProofError::UnsupportedKeyType(_))
                    }
                    // 1.38 takes ML-DSA keys only in the stub request.
                    n if n.starts_with("MLDSA") && n.ends_with("-pop-v1beta1") => {
                        matches!(err, ProofError::UnsupportedKeyType(_))
                    }
                    // Signed by another ML-DSA key, or under another parameter set's OID.
                    "MLDSA65-stub-signed-by-other-key"
                    | "MLDSA44-stub-claims-mldsa65"
                    | "ECDSAP256-stub-claims-mldsa65" => {
                        matches!(err, ProofError::InvalidProof(_))
                    }
                    // Not DER at all: refused as malformed, never as a key type.
                    "garbage-spki" => matches!(err, ProofError::Malformed(_)),
                    n if n.ends_with("-wrong-uid")
                        || n.ends_with("-bad-signature")
                        || n == "pop-from-other-key" =>
                    {
                        matches!(err, ProofError::InvalidProof(_))
                    }
                    other => panic!("unclassified Rejected vector {other}: {err}"),
                };
                assert!(class_ok, "{name}: wrong error class: {err:?}");
            }
            other => panic!("{name}: unknown expectation {other}"),
        }
    }
}

#[test]
fn rsa_2048_refusal_names_the_size_and_suggests_supported_types() {
    let v = vectors::vector("RSA2048-pop");
    let req = wire::from_value(object_of(&v)).unwrap().request;
    let err = extract_subject_key(&req).unwrap_err();
    assert_eq!(
        err,
        ProofError::UnsupportedKeyType(
            "RSA 2048-bit keys are not supported; use ECDSAP256, ED25519, RSA3072 or RSA4096"
                .into()
        )
    );
    assert_eq!(
        podcert_core::policy::DenyReason::from(&err).as_str(),
        "UnsupportedKeyType"
    );
}

#[test]
fn p224_refusal_names_the_curve() {
    let v = vectors::vector("ECDSAP224-pop");
    let req = wire::from_value(object_of(&v)).unwrap().request;
    let err = extract_subject_key(&req).unwrap_err();
    let ProofError::UnsupportedKeyType(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("P-224"), "{msg}");
    assert!(msg.contains("ECDSAP256"), "{msg}");
}

#[test]
fn both_rsa_salt_lengths_verify() {
    // Go's default (maximum) salt and a 32-byte salt, for both RSA sizes.
    for name in [
        "RSA3072-pop-v1beta1",
        "RSA3072-pop-salt32",
        "RSA4096-pop-v1beta1",
        "RSA4096-pop-salt32",
    ] {
        let v = vectors::vector(name);
        let req = wire::from_value(object_of(&v)).unwrap().request;
        assert!(extract_subject_key(&req).is_ok(), "{name}");
    }
}

/// The production path verifies with aws-lc-rs; this re-verifies every pkix proof with
/// RustCrypto and checks that both accept the vectors and both reject a corrupted proof.
#[test]
fn aws_lc_and_rustcrypto_agree_on_every_proof_vector() {
    let mut checked = 0;
    for v in vectors() {
        let name = v["name"].as_str().unwrap().to_string();
        let req = wire::from_value(object_of(&v)).unwrap().request;
        let (Some(pkix), Some(proof)) = (&req.pkix_public_key, &req.proof_of_possession) else {
            continue;
        };
        let Ok(key_type) = v["keyType"].as_str().unwrap().parse::<KeyType>() else {
            continue; // RSA2048, P-224, garbage: refused before any verification
        };
        let salt32 = name.ends_with("salt32");
        let ours = extract_subject_key(&req).is_ok();
        let theirs = keys::rustcrypto_verify(key_type, pkix, req.pod_uid.as_bytes(), proof, salt32);
        assert_eq!(ours, theirs, "{name}: aws-lc-rs and RustCrypto disagree");

        let mut bad = req.clone();
        let mut tampered = proof.clone();
        let mid = tampered.len() / 2;
        tampered[mid] ^= 0x01;
        bad.proof_of_possession = Some(tampered.clone());
        assert!(
            extract_subject_key(&bad).is_err(),
            "{name}: tampered proof accepted"
        );
        assert!(
            !keys::rustcrypto_verify(key_type, pkix, req.pod_uid.as_bytes(), &tampered, salt32),
            "{name}: RustCrypto accepted a tampered proof"
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} proof vectors checked");
}

#[test]
fn the_forged_names_stub_yields_only_its_key() {
    let v = vectors::vector("stub-with-subject-and-sans");
    let req = wire::from_value(object_of(&v)).unwrap().request;
    let key = extract_subject_key(&req).unwrap();
    // The SubjectKey is the only output: an SPKI that holds no name, equal to the key file's.
    assert_eq!(
        key.spki_der,
        spki_from_key_file("keys/loaded.key.pem", KeyType::Ed25519)
    );
    let text = String::from_utf8_lossy(&key.spki_der);
    assert!(!text.contains("admin") && !text.contains("kubernetes.default"));
}
