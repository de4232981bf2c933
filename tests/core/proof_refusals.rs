//! Each refusal path of extract_subject_key, with hand-made keys, proofs and CSRs.

use crate::fixtures::der_writer::*;
use crate::fixtures::keys::*;
use crate::fixtures::vectors::*;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature as awssig;
use podcert_core::key_type::KeyType;
use podcert_core::proof::{
    extract_subject_key, ProofError, MAX_PKIX_PUBLIC_KEY_BYTES, MAX_PROOF_OF_POSSESSION_BYTES,
    MAX_STUB_PKCS10_REQUEST_BYTES,
};
use podcert_core::request::{wire, Request};

const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
const SHA1_WITH_RSA: &str = "1.2.840.113549.1.1.5";
const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const ECDSA_SHA1: &str = "1.2.840.10045.4.1";
const ED25519: &str = "1.3.101.112";

fn request(name: &str) -> Request {
    wire::from_value(object_of(&vector(name))).unwrap().request
}

fn malformed(r: Result<impl std::fmt::Debug, ProofError>) -> String {
    match r {
        Err(ProofError::Malformed(m)) => m,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

fn unsupported(r: Result<impl std::fmt::Debug, ProofError>) -> String {
    match r {
        Err(ProofError::UnsupportedKeyType(m)) => m,
        other => panic!("expected UnsupportedKeyType, got {other:?}"),
    }
}

fn invalid_proof(r: Result<impl std::fmt::Debug, ProofError>) -> String {
    match r {
        Err(ProofError::InvalidProof(m)) => m,
        other => panic!("expected InvalidProof, got {other:?}"),
    }
}

/// A stub-carrier request whose CSR is `csr`.
fn with_stub(csr: Vec<u8>) -> Request {
    let mut req = request("ED25519-stub-v1");
    req.stub_pkcs10_request = Some(csr);
    req
}

fn ed25519_signer() -> (Vec<u8>, ed25519_dalek::SigningKey) {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let key =
        ed25519_dalek::SigningKey::from_pkcs8_der(&pkcs8_der("keys/ED25519.key.pem")).unwrap();
    (
        spki_from_key_file("keys/ED25519.key.pem", KeyType::Ed25519),
        key,
    )
}

// --- carriers ----------------------------------------------------------------------------------

#[test]
fn neither_carrier_is_malformed() {
    let mut req = request("ED25519-pop-v1beta1");
    req.pkix_public_key = None;
    req.proof_of_possession = None;
    let msg = malformed(extract_subject_key(&req));
    assert!(msg.contains("no public key"), "{msg}");
}

#[test]
fn empty_fields_count_as_absent() {
    let mut req = request("ED25519-stub-v1beta1");
    req.pkix_public_key = Some(Vec::new());
    req.proof_of_possession = Some(Vec::new());
    assert!(extract_subject_key(&req).is_ok());
}

#[test]
fn pkix_without_proof_and_proof_without_pkix_are_malformed() {
    let mut req = request("ED25519-pop-v1beta1");
    req.proof_of_possession = None;
    assert!(malformed(extract_subject_key(&req)).contains("without spec.proofOfPossession"));

    let mut req = request("ED25519-pop-v1beta1");
    req.pkix_public_key = None;
    assert!(malformed(extract_subject_key(&req)).contains("without spec.pkixPublicKey"));
}

#[test]
fn both_carriers_are_malformed() {
    let pop = request("ED25519-pop-v1beta1");
    let mut req = request("ED25519-stub-v1beta1");
    req.pkix_public_key = pop.pkix_public_key.clone();
    req.proof_of_possession = pop.proof_of_possession.clone();
    assert!(malformed(extract_subject_key(&req)).contains("must not be combined"));

    // Even half of the old pair next to the stub is refused.
    let mut req = request("ED25519-stub-v1beta1");
    req.pkix_public_key = pop.pkix_public_key;
    assert!(malformed(extract_subject_key(&req)).contains("must not be combined"));
}

// --- size limits -------------------------------------------------------------------------------

#[test]
fn oversize_fields_are_malformed() {
    let mut req = request("ED25519-pop-v1beta1");
    req.pkix_public_key = Some(vec![0x30; MAX_PKIX_PUBLIC_KEY_BYTES + 1]);
    let msg = malformed(extract_subject_key(&req));
    assert!(msg.contains("spec.pkixPublicKey is 10241 bytes"), "{msg}");

    let mut req = request("ED25519-pop-v1beta1");
    req.proof_of_possession = Some(vec![0; MAX_PROOF_OF_POSSESSION_BYTES + 1]);
    assert!(malformed(extract_subject_key(&req)).contains("spec.proofOfPossession is"));

    let req = with_stub(vec![0x30; MAX_STUB_PKCS10_REQUEST_BYTES + 1]);
    assert!(malformed(extract_subject_key(&req)).contains("spec.stubPKCS10Request is"));
}

#[test]
fn a_proof_at_the_limit_is_checked_not_refused_for_size() {
    let mut req = request("ED25519-pop-v1beta1");
    req.proof_of_possession = Some(vec![0; MAX_PROOF_OF_POSSESSION_BYTES]);
    invalid_proof(extract_subject_key(&req));
}

// --- DER ---------------------------------------------------------------------------------------

#[test]
fn truncated_or_padded_der_is_malformed() {
    let good = request("ECDSAP256-pop-v1beta1");
    let pkix = good.pkix_public_key.clone().unwrap();

    let mut req = good.clone();
    req.pkix_public_key = Some(pkix[..pkix.len() - 1].to_vec());
    malformed(extract_subject_key(&req));

    let mut req = good.clone();
    let mut padded = pkix.clone();
    padded.push(0);
    req.pkix_public_key = Some(padded);
    malformed(extract_subject_key(&req));

    let stub = request("ECDSAP256-stub-v1").stub_pkcs10_request.unwrap();
    let msg = malformed(extract_subject_key(&with_stub(
        stub[..stub.len() - 3].to_vec(),
    )));
    assert!(msg.contains("PKCS#10"), "{msg}");
    let mut padded = stub.clone();
    padded.extend_from_slice(&[0, 0]);
    malformed(extract_subject_key(&with_stub(padded)));
}

#[test]
fn garbage_spki_is_malformed_with_a_clear_message() {
    let msg = malformed(extract_subject_key(&request("garbage-spki")));
    assert!(
        msg.starts_with("spec.pkixPublicKey is not a DER SubjectPublicKeyInfo"),
        "{msg}"
    );
}

// --- key types ---------------------------------------------------------------------------------

fn pkix_request(spki_der: Vec<u8>) -> Request {
    let mut req = request("ED25519-pop-v1beta1");
    req.pkix_public_key = Some(spki_der);
    req
}

#[test]
fn other_algorithms_are_unsupported_and_named() {
    let x25519 = spki(&alg_id("1.3.101.110", None), &[9; 32]);
    assert!(unsupported(extract_subject_key(&pkix_request(x25519))).contains("X25519"));

    let ed448 = spki(&alg_id("1.3.101.113", None), &[9; 57]);
    assert!(unsupported(extract_subject_key(&pkix_request(ed448))).contains("Ed448"));

    let dsa_params = seq(&[&[2, 1, 5], &[2, 1, 3], &[2, 1, 2]]);
    let dsa = spki(&alg_id("1.2.840.10040.4.1", Some(&dsa_params)), &[2, 1, 7]);
    assert!(unsupported(extract_subject_key(&pkix_request(dsa))).contains("DSA"));

    let unknown = spki(&alg_id("1.2.3.4.5", None), &[1, 2, 3]);
    let msg = unsupported(extract_subject_key(&pkix_request(unknown)));
    assert!(
        msg.contains("1.2.3.4.5") && msg.contains("use ECDSAP256"),
        "{msg}"
    );

    let k1 = spki(
        &alg_id("1.2.840.10045.2.1", Some(&oid("1.3.132.0.10"))),
        &[4; 65],
    );
    assert!(unsupported(extract_subject_key(&pkix_request(k1))).contains("secp256k1"));
}

#[test]
fn bad_key_encodings_are_malformed() {
    let p256 = request("ECDSAP256-pop-v1beta1");
    let pkix = p256.pkix_public_key.clone().unwrap();
    let point = &pkix[pkix.len() - 65..];

    // Compressed point: Go accepts only the uncompressed form.
    let mut compressed = vec![0x02 | (point[64] & 1)];
    compressed.extend_from_slice(&point[1..33]);
    let ec_alg = alg_id("1.2.840.10045.2.1", Some(&oid("1.2.840.10045.3.1.7")));
    let mut req = p256.clone();
    req.pkix_public_key = Some(spki(&ec_alg, &compressed));
    assert!(malformed(extract_subject_key(&req)).contains("uncompressed"));

    // A point that is not on the curve.
    let mut off_curve = point.to_vec();
    off_curve[64] ^= 1;
    let mut req = p256.clone();
    req.pkix_public_key = Some(spki(&ec_alg, &off_curve));
    malformed(extract_subject_key(&req));

    // EC key without a named curve.
    let mut req = p256.clone();
    req.pkix_public_key = Some(spki(&alg_id("1.2.840.10045.2.1", None), point));
    assert!(malformed(extract_subject_key(&req)).contains("curve"));

    // Ed25519 with parameters, and of the wrong length.
    let ed = request("ED25519-pop-v1beta1").pkix_public_key.unwrap();
    let raw = &ed[ed.len() - 32..];
    let with_params = spki(&alg_id(ED25519, Some(NULL)), raw);
    malformed(extract_subject_key(&pkix_request(with_params)));
    let short = spki(&alg_id(ED25519, None), &raw[..31]);
    malformed(extract_subject_key(&pkix_request(short)));

    // RSA without the NULL parameters Go requires.
    let rsa = request("RSA3072-pop-v1beta1").pkix_public_key.unwrap();
    let spki_rsa = spki_parts(&rsa);
    let no_null = spki(&alg_id("1.2.840.113549.1.1.1", None), &spki_rsa);
    assert!(malformed(extract_subject_key(&pkix_request(no_null))).contains("NULL"));

    // RSA with an even exponent.
    let modulus = tlv(0x02, &[&[0u8][..], &[0xc5; 384]].concat());
    let even = seq(&[&modulus, &[2, 1, 4]]);
    let even_e = spki(&alg_id("1.2.840.113549.1.1.1", Some(NULL)), &even);
    assert!(malformed(extract_subject_key(&pkix_request(even_e))).contains("exponent"));
}

/// The subjectPublicKey bytes of an SPKI (the part after the BIT STRING's unused-bits octet).
fn spki_parts(spki_der: &[u8]) -> Vec<u8> {
    use der::Decode;
    let parsed = spki::SubjectPublicKeyInfoRef::from_der(spki_der).unwrap();
    parsed.subject_public_key.raw_bytes().to_vec()
}

#[test]
fn other_rsa_sizes_are_unsupported_with_their_size() {
    for bits in [1024usize, 2048, 8192] {
        let modulus = tlv(0x02, &[&[0u8][..], &vec![0xc5; bits / 8]].concat());
        let key = seq(&[&modulus, &[2, 3, 1, 0, 1]]);
        let der = spki(&alg_id("1.2.840.113549.1.1.1", Some(NULL)), &key);
        let msg = unsupported(extract_subject_key(&pkix_request(der)));
        assert_eq!(
            msg,
            format!(
                "RSA {bits}-bit keys are not supported; use ECDSAP256, ED25519, RSA3072 or RSA4096"
            )
        );
    }
}

// --- proofs ------------------------------------------------------------------------------------

#[test]
fn a_proof_for_another_uid_is_invalid() {
    let mut req = request("ECDSAP384-pop-v1beta1");
    req.pod_uid.push('x');
    let msg = invalid_proof(extract_subject_key(&req));
    assert!(msg.contains("pod UID"), "{msg}");
}

#[test]
fn rsa_pss_with_any_salt_length_verifies() {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{RandomizedSigner, SignatureEncoding};
    let key = rsa::RsaPrivateKey::from_pkcs8_der(&pkcs8_der("keys/RSA3072.key.pem")).unwrap();
    let base = request("RSA3072-pop-v1beta1");
    for salt in [0usize, 1, 20, 32, 64, 200, 350] {
        let signer = rsa::pss::SigningKey::<sha2::Sha256>::new_with_salt_len(key.clone(), salt);
        let sig = signer.sign_with_rng(&mut rand::thread_rng(), base.pod_uid.as_bytes());
        let mut req = base.clone();
        req.proof_of_possession = Some(sig.to_vec());
        let got = extract_subject_key(&req).unwrap_or_else(|e| panic!("salt {salt}: {e}"));
        assert_eq!(got.key_type, KeyType::Rsa3072);
    }
}

#[test]
fn an_rsa_pkcs1_proof_is_not_accepted_as_pss() {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let key = rsa::RsaPrivateKey::from_pkcs8_der(&pkcs8_der("keys/RSA3072.key.pem")).unwrap();
    let mut req = request("RSA3072-pop-v1beta1");
    let sig = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key).sign(req.pod_uid.as_bytes());
    req.proof_of_possession = Some(sig.to_vec());
    invalid_proof(extract_subject_key(&req));
}

// --- stub CSRs ---------------------------------------------------------------------------------

#[test]
fn a_csr_with_an_rsa_2048_key_is_unsupported() {
    let rsa2048 = request("RSA2048-pop").pkix_public_key.unwrap();
    let der = csr(&rsa2048, &alg_id(SHA256_WITH_RSA, Some(NULL)), |_| {
        vec![1; 256]
    });
    let msg = unsupported(extract_subject_key(&with_stub(der)));
    assert!(
        msg.starts_with("RSA 2048-bit keys are not supported"),
        "{msg}"
    );
}

#[test]
fn an_unsupported_csr_signature_algorithm_is_refused_by_name() {
    let (spki_ed, key) = ed25519_signer();
    use ed25519_dalek::Signer;
    // Correctly signed, but labelled with an algorithm outside the accepted set.
    let der = csr(&spki_ed, &alg_id(SHA1_WITH_RSA, Some(NULL)), |info| {
        key.sign(info).to_bytes().to_vec()
    });
    let msg = invalid_proof(extract_subject_key(&with_stub(der)));
    assert!(
        msg.contains("sha1WithRSAEncryption is not supported"),
        "{msg}"
    );

    let der = csr(&spki_ed, &alg_id(ECDSA_SHA1, None), |info| {
        key.sign(info).to_bytes().to_vec()
    });
    assert!(invalid_proof(extract_subject_key(&with_stub(der))).contains("ecdsa-with-SHA1"));

    let der = csr(&spki_ed, &alg_id("1.2.3.4", None), |info| {
        key.sign(info).to_bytes().to_vec()
    });
    assert!(invalid_proof(extract_subject_key(&with_stub(der))).contains("OID 1.2.3.4"));
}

#[test]
fn a_csr_signature_algorithm_for_another_key_type_is_refused() {
    let (spki_ed, key) = ed25519_signer();
    use ed25519_dalek::Signer;
    let der = csr(&spki_ed, &alg_id(ECDSA_SHA256, None), |info| {
        key.sign(info).to_bytes().to_vec()
    });
    let msg = invalid_proof(extract_subject_key(&with_stub(der)));
    assert!(
        msg.contains("ecdsa-with-SHA256 but its public key is ED25519"),
        "{msg}"
    );
}

#[test]
fn a_hand_made_ed25519_csr_verifies_and_a_tampered_one_does_not() {
    let (spki_ed, key) = ed25519_signer();
    use ed25519_dalek::Signer;
    let der = csr(&spki_ed, &alg_id(ED25519, None), |info| {
        key.sign(info).to_bytes().to_vec()
    });
    let got = extract_subject_key(&with_stub(der.clone())).unwrap();
    assert_eq!(got.spki_der, spki_ed);

    let der = csr(&spki_ed, &alg_id(ED25519, None), |info| {
        let mut s = key.sign(info).to_bytes().to_vec();
        s[0] ^= 1;
        s
    });
    invalid_proof(extract_subject_key(&with_stub(der)));

    // Parameters on an Ed25519 signature algorithm are malformed (RFC 8410).
    let der = csr(&spki_ed, &alg_id(ED25519, Some(NULL)), |info| {
        key.sign(info).to_bytes().to_vec()
    });
    malformed(extract_subject_key(&with_stub(der)));
}

#[test]
fn ecdsa_csr_hash_follows_the_signature_algorithm() {
    // A P-256 key signing with SHA-384: verified with the hash the OID names.
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::pkcs8::DecodePrivateKey;
    use sha2::Digest;
    let pkcs8 = pkcs8_der("keys/ECDSAP256.key.pem");
    let spki_p256 = spki_from_key_file("keys/ECDSAP256.key.pem", KeyType::EcdsaP256);
    let signer = p256::ecdsa::SigningKey::from_pkcs8_der(&pkcs8).unwrap();
    let sign = |info: &[u8]| {
        let sig: p256::ecdsa::Signature = signer.sign_prehash(&sha2::Sha384::digest(info)).unwrap();
        sig.to_der().as_bytes().to_vec()
    };

    let der = csr(&spki_p256, &alg_id(ECDSA_SHA384, None), sign);
    let got = extract_subject_key(&with_stub(der)).unwrap();
    assert_eq!(got.key_type, KeyType::EcdsaP256);
    assert_eq!(got.spki_der, spki_p256);

    // The same SHA-384 signature labelled as SHA-256 does not verify.
    let der = csr(&spki_p256, &alg_id(ECDSA_SHA256, None), sign);
    invalid_proof(extract_subject_key(&with_stub(der)));
}

#[test]
fn rsa_csr_with_sha256_pkcs1_verifies() {
    let pkcs8 = pkcs8_der("keys/RSA4096.key.pem");
    let spki_rsa = spki_from_key_file("keys/RSA4096.key.pem", KeyType::Rsa4096);
    let signer = awssig::RsaKeyPair::from_pkcs8(&pkcs8).unwrap();
    let rng = SystemRandom::new();
    let sign = |info: &[u8]| {
        let mut sig = vec![0; signer.public_modulus_len()];
        signer
            .sign(&awssig::RSA_PKCS1_SHA256, &rng, info, &mut sig)
            .unwrap();
        sig
    };
    // Go omits nothing: NULL parameters; absent parameters are tolerated as Go does.
    for params in [Some(NULL), None] {
        let der = csr(&spki_rsa, &alg_id(SHA256_WITH_RSA, params), sign);
        assert_eq!(
            extract_subject_key(&with_stub(der)).unwrap().key_type,
            KeyType::Rsa4096
        );
    }
}

#[test]
fn csr_structure_errors_are_malformed() {
    let (spki_ed, key) = ed25519_signer();
    use ed25519_dalek::Signer;
    // Version 1 instead of 0.
    let info = seq(&[&[0x02, 0x01, 0x01], &seq(&[]), &spki_ed, &tlv(0xa0, &[])]);
    let sig = key.sign(&info).to_bytes();
    let der = seq(&[&info, &alg_id(ED25519, None), &bit_string(&sig)]);
    malformed(extract_subject_key(&with_stub(der)));

    // Attributes missing.
    let info = seq(&[&[0x02, 0x01, 0x00], &seq(&[]), &spki_ed]);
    let sig = key.sign(&info).to_bytes();
    let der = seq(&[&info, &alg_id(ED25519, None), &bit_string(&sig)]);
    malformed(extract_subject_key(&with_stub(der)));

    // Not a CSR at all.
    malformed(extract_subject_key(&with_stub(
        b"not a certificate request".to_vec(),
    )));
}

#[test]
fn every_refusal_maps_to_a_valid_reason() {
    let re_ok = |r: &str| {
        let b = r.as_bytes();
        b[0].is_ascii_alphabetic()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b',' | b':'))
            && (b[b.len() - 1].is_ascii_alphanumeric() || b[b.len() - 1] == b'_')
    };
    for e in [
        ProofError::UnsupportedKeyType(String::new()),
        ProofError::Malformed(String::new()),
        ProofError::InvalidProof(String::new()),
    ] {
        assert!(
            re_ok(podcert_core::policy::DenyReason::from(&e).as_str()),
            "{}",
            podcert_core::policy::DenyReason::from(&e).as_str()
        );
    }
}

// --- degenerate keys (security issue 13, item 2) -----------------------------------------------

/// The Ed25519 identity point (y = 1), and the signature R = identity, S = 0 that a
/// cofactorless check accepts for every message under it.
const ED25519_IDENTITY: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
};

fn identity_signature() -> Vec<u8> {
    [&ED25519_IDENTITY[..], &[0u8; 32][..]].concat()
}

#[test]
fn a_small_order_ed25519_key_is_refused_on_the_pkix_carrier() {
    let mut req = pkix_request(spki(&alg_id(ED25519, None), &ED25519_IDENTITY));
    req.proof_of_possession = Some(identity_signature());
    let msg = malformed(extract_subject_key(&req));
    assert!(
        msg.contains("Ed25519 public key is a small-order point"),
        "{msg}"
    );
    // Another small-order point: y = -1 (order 2).
    let mut minus_one = [0xffu8; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    req.pkix_public_key = Some(spki(&alg_id(ED25519, None), &minus_one));
    assert!(malformed(extract_subject_key(&req)).contains("small-order"));
}

#[test]
fn a_small_order_ed25519_key_is_refused_on_the_stub_carrier() {
    let der = csr(
        &spki(&alg_id(ED25519, None), &ED25519_IDENTITY),
        &alg_id(ED25519, None),
        |_| identity_signature(),
    );
    let msg = malformed(extract_subject_key(&with_stub(der)));
    assert!(
        msg.contains("Ed25519 public key is a small-order point"),
        "{msg}"
    );
}

#[test]
fn a_non_canonical_ed25519_key_encoding_is_refused() {
    // y = p + k for small k (p = 2^255 - 19) encodes the same point as y = k; at least one
    // such k is on the curve and not of small order.
    let mut refused = 0;
    for k in 2u8..=18 {
        let mut y = [0xffu8; 32];
        y[0] = 0xed + k;
        y[31] = 0x7f;
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&y) else {
            continue;
        };
        if key.is_weak() {
            continue;
        }
        let mut req = pkix_request(spki(&alg_id(ED25519, None), &y));
        req.proof_of_possession = Some(identity_signature());
        let msg = malformed(extract_subject_key(&req));
        assert!(msg.contains("not canonically encoded"), "{msg}");
        refused += 1;
    }
    assert!(refused > 0, "no non-canonical test point found");
}

#[test]
fn a_strict_ed25519_check_refuses_a_non_canonical_s() {
    // A genuine signature with S + L (the group order) added: the same value mod L, which
    // the strict check refuses.
    use ed25519_dalek::Signer;
    let (spki_ed, key) = ed25519_signer();
    let mut req = pkix_request(spki_ed);
    let mut sig = key.sign(req.pod_uid.as_bytes()).to_bytes();
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (s, l) in sig[32..].iter_mut().zip(L) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum as u8;
        carry = sum >> 8;
    }
    req.proof_of_possession = Some(sig.to_vec());
    invalid_proof(extract_subject_key(&req));
}

/// An RSA-3072 SubjectPublicKeyInfo with modulus 2^3072 - 1 (divisible by 3) and e = 65537.
fn rsa_spki_divisible_by_3() -> Vec<u8> {
    let modulus = tlv(0x02, &[&[0u8][..], &[0xff; 384]].concat());
    let key = seq(&[&modulus, &[2, 3, 1, 0, 1]]);
    spki(&alg_id("1.2.840.113549.1.1.1", Some(NULL)), &key)
}

#[test]
fn an_rsa_modulus_with_a_small_factor_is_refused_on_both_carriers() {
    let mut req = request("RSA3072-pop-v1beta1");
    req.pkix_public_key = Some(rsa_spki_divisible_by_3());
    let msg = malformed(extract_subject_key(&req));
    assert!(
        msg.contains("RSA modulus is divisible by the small prime 3"),
        "{msg}"
    );

    let der = csr(
        &rsa_spki_divisible_by_3(),
        &alg_id(SHA256_WITH_RSA, Some(NULL)),
        |_| vec![1; 384],
    );
    let msg = malformed(extract_subject_key(&with_stub(der)));
    assert!(msg.contains("small prime 3"), "{msg}");

    // An even modulus (the top byte keeps it at 3072 bits).
    let modulus = tlv(0x02, &[&[0u8][..], &[0xfe; 384]].concat());
    let key = seq(&[&modulus, &[2, 3, 1, 0, 1]]);
    req.pkix_public_key = Some(spki(&alg_id("1.2.840.113549.1.1.1", Some(NULL)), &key));
    assert!(malformed(extract_subject_key(&req)).contains("RSA modulus is even"));
}
