//! Keys, proofs of possession and stub CSRs of the kubelet emulator, checked offline with an
//! independent verifier (RustCrypto; the emulator signs with aws-lc-rs) and against the shape
//! of Go's output in the repo's kubelet vectors.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use der::{Decode, Encode};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use podcert_testkit::kubelet::keys::{KeySource, KeyType, KubeletKey};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha384, Sha512};
use spki::{DecodePublicKey, SubjectPublicKeyInfoRef};
use x509_cert::request::CertReq;

const UID: &str = "0b6f3c4e-0001-4d2a-9b1e-5f6a7b8c9d01";

fn vectors() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/kubelet-vectors/vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn vector(name: &str) -> Value {
    vectors()
        .into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

fn spec_bytes(v: &Value, field: &str) -> Vec<u8> {
    B64.decode(v["object"]["spec"][field].as_str().unwrap())
        .unwrap()
}

fn key(kt: KeyType) -> KubeletKey {
    KeySource::shared_test_pool().key(kt).unwrap()
}

/// RSA-PSS SHA-256 verification with an explicit salt length (RustCrypto).
fn verify_pss(spki: &[u8], msg: &[u8], sig: &[u8], salt: usize) -> bool {
    let pk = rsa::RsaPublicKey::from_public_key_der(spki).unwrap();
    pk.verify(
        rsa::Pss::new_with_salt::<Sha256>(salt),
        &Sha256::digest(msg),
        sig,
    )
    .is_ok()
}

fn max_salt(kt: KeyType) -> usize {
    match kt {
        KeyType::Rsa3072 => 350,
        KeyType::Rsa4096 => 478,
        _ => unreachable!(),
    }
}

/// Verifies a proof of possession the way kube-apiserver does (SHA-256(uid) for every ECDSA
/// curve; PSS with Go's maximum salt for the kubelet's proofs).
fn verify_proof(kt: KeyType, spki: &[u8], uid: &str, sig: &[u8]) -> bool {
    let digest = Sha256::digest(uid.as_bytes());
    let point = || {
        SubjectPublicKeyInfoRef::from_der(spki)
            .unwrap()
            .subject_public_key
            .raw_bytes()
            .to_vec()
    };
    match kt {
        KeyType::Ed25519 => {
            let vk = ed25519_dalek::VerifyingKey::from_public_key_der(spki).unwrap();
            let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
                return false;
            };
            vk.verify_strict(uid.as_bytes(), &sig).is_ok()
        }
        KeyType::EcdsaP256 => {
            let vk = p256::ecdsa::VerifyingKey::from_public_key_der(spki).unwrap();
            let Ok(sig) = p256::ecdsa::Signature::from_der(sig) else {
                return false;
            };
            vk.verify_prehash(&digest, &sig).is_ok()
        }
        KeyType::EcdsaP384 => {
            let vk = p384::ecdsa::VerifyingKey::from_public_key_der(spki).unwrap();
            let Ok(sig) = p384::ecdsa::Signature::from_der(sig) else {
                return false;
            };
            vk.verify_prehash(&digest, &sig).is_ok()
        }
        KeyType::EcdsaP521 => {
            let vk = p521::ecdsa::VerifyingKey::from_sec1_bytes(&point()).unwrap();
            let Ok(sig) = p521::ecdsa::Signature::from_der(sig) else {
                return false;
            };
            // RustCrypto's p521 0.13 refuses a prehash shorter than half the field (33 bytes);
            // left-padding with zeros keeps its integer value, which is what ECDSA signs.
            let mut padded = [0u8; 66];
            padded[66 - digest.len()..].copy_from_slice(&digest);
            vk.verify_prehash(&padded, &sig).is_ok()
        }
        KeyType::Rsa3072 | KeyType::Rsa4096 => verify_pss(spki, uid.as_bytes(), sig, max_salt(kt)),
    }
}

/// Verifies a CSR's self-signature with the algorithm Go picks for the key type.
fn verify_csr_signature(kt: KeyType, spki: &[u8], tbs: &[u8], sig: &[u8]) -> bool {
    match kt {
        KeyType::Ed25519 => {
            let vk = ed25519_dalek::VerifyingKey::from_public_key_der(spki).unwrap();
            vk.verify_strict(tbs, &ed25519_dalek::Signature::from_slice(sig).unwrap())
                .is_ok()
        }
        KeyType::EcdsaP256 => {
            let vk = p256::ecdsa::VerifyingKey::from_public_key_der(spki).unwrap();
            vk.verify_prehash(
                &Sha256::digest(tbs),
                &p256::ecdsa::Signature::from_der(sig).unwrap(),
            )
            .is_ok()
        }
        KeyType::EcdsaP384 => {
            let vk = p384::ecdsa::VerifyingKey::from_public_key_der(spki).unwrap();
            vk.verify_prehash(
                &Sha384::digest(tbs),
                &p384::ecdsa::Signature::from_der(sig).unwrap(),
            )
            .is_ok()
        }
        KeyType::EcdsaP521 => {
            let point = SubjectPublicKeyInfoRef::from_der(spki)
                .unwrap()
                .subject_public_key
                .raw_bytes()
                .to_vec();
            let vk = p521::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
            vk.verify_prehash(
                &Sha512::digest(tbs),
                &p521::ecdsa::Signature::from_der(sig).unwrap(),
            )
            .is_ok()
        }
        KeyType::Rsa3072 | KeyType::Rsa4096 => {
            let pk = rsa::RsaPublicKey::from_public_key_der(spki).unwrap();
            pk.verify(
                rsa::Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(tbs),
                sig,
            )
            .is_ok()
        }
    }
}

#[test]
fn the_verifier_accepts_go_proofs_and_refuses_wrong_ones() {
    // The verifier above must agree with Go before it can judge our proofs.
    for kt in KeyType::ALL {
        let v = vector(&format!("{kt}-pop-v1beta1"));
        let uid = v["object"]["spec"]["podUID"].as_str().unwrap();
        let (spki, proof) = (
            spec_bytes(&v, "pkixPublicKey"),
            spec_bytes(&v, "proofOfPossession"),
        );
        assert!(
            verify_proof(kt, &spki, uid, &proof),
            "{kt}: Go's proof refused"
        );
        let bad = vector(&format!("{kt}-pop-wrong-uid"));
        let bad_uid = bad["object"]["spec"]["podUID"].as_str().unwrap();
        assert!(
            !verify_proof(
                kt,
                &spec_bytes(&bad, "pkixPublicKey"),
                bad_uid,
                &spec_bytes(&bad, "proofOfPossession")
            ),
            "{kt}: wrong-uid proof accepted"
        );
    }
    // Go's default is the maximum salt; a 32-byte salt is a different signature.
    for kt in [KeyType::Rsa3072, KeyType::Rsa4096] {
        let v = vector(&format!("{kt}-pop-salt32"));
        let uid = v["object"]["spec"]["podUID"].as_str().unwrap();
        let (spki, proof) = (
            spec_bytes(&v, "pkixPublicKey"),
            spec_bytes(&v, "proofOfPossession"),
        );
        assert!(!verify_pss(&spki, uid.as_bytes(), &proof, max_salt(kt)));
        assert!(verify_pss(&spki, uid.as_bytes(), &proof, 32));
    }
}

#[test]
fn proofs_verify_like_gos_for_every_key_type() {
    for kt in KeyType::ALL {
        let k = key(kt);
        assert_eq!(k.key_type(), kt);
        let proof = k.proof_of_possession(UID).unwrap();
        assert!(
            verify_proof(kt, k.spki_der(), UID, &proof),
            "{kt}: our proof refused"
        );
        assert!(
            !verify_proof(kt, k.spki_der(), "another-uid", &proof),
            "{kt}: proof not bound to the uid"
        );
    }
}

#[test]
fn private_key_is_pkcs8_pem_matching_the_spki() {
    use pkcs8::DecodePrivateKey;
    for kt in KeyType::ALL {
        let k = key(kt);
        let pem = k.private_key_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{kt}");
        let der = pem::parse(&pem).unwrap().into_contents();
        let spki = match kt {
            KeyType::Ed25519 => {
                let sk = ed25519_dalek::SigningKey::from_pkcs8_der(&der).unwrap();
                spki::EncodePublicKey::to_public_key_der(&sk.verifying_key())
                    .unwrap()
                    .into_vec()
            }
            KeyType::EcdsaP256 => {
                let sk = p256::SecretKey::from_pkcs8_der(&der).unwrap();
                spki::EncodePublicKey::to_public_key_der(&sk.public_key())
                    .unwrap()
                    .into_vec()
            }
            KeyType::EcdsaP384 => {
                let sk = p384::SecretKey::from_pkcs8_der(&der).unwrap();
                spki::EncodePublicKey::to_public_key_der(&sk.public_key())
                    .unwrap()
                    .into_vec()
            }
            KeyType::EcdsaP521 => {
                let sk = p521::SecretKey::from_pkcs8_der(&der).unwrap();
                spki::EncodePublicKey::to_public_key_der(&sk.public_key())
                    .unwrap()
                    .into_vec()
            }
            KeyType::Rsa3072 | KeyType::Rsa4096 => {
                let sk = rsa::RsaPrivateKey::from_pkcs8_der(&der).unwrap();
                let bits = rsa::traits::PublicKeyParts::n(&sk).bits();
                assert_eq!(bits, if kt == KeyType::Rsa3072 { 3072 } else { 4096 });
                spki::EncodePublicKey::to_public_key_der(&sk.to_public_key())
                    .unwrap()
                    .into_vec()
            }
        };
        assert_eq!(
            spki,
            k.spki_der(),
            "{kt}: PKCS#8 key does not match the SPKI"
        );
    }
}

#[test]
fn stub_csr_has_gos_shape_and_a_valid_signature() {
    for kt in KeyType::ALL {
        let k = key(kt);
        let der = k.stub_pkcs10_request().unwrap();
        let ours = CertReq::from_der(&der).unwrap();
        assert_eq!(ours.to_der().unwrap(), der, "{kt}: not canonical DER");
        assert_eq!(ours.info.public_key.to_der().unwrap(), k.spki_der(), "{kt}");

        // Same envelope as Go's x509.CreateCertificateRequest with an empty template.
        let go = vector(&format!("{kt}-stub-v1"));
        let go_der = spec_bytes(&go, "stubPKCS10Request");
        let theirs = CertReq::from_der(&go_der).unwrap();
        assert_eq!(ours.info.version, theirs.info.version, "{kt}: version");
        assert_eq!(ours.info.subject, theirs.info.subject, "{kt}: subject");
        assert_eq!(
            ours.info.attributes, theirs.info.attributes,
            "{kt}: attributes"
        );
        assert_eq!(
            ours.algorithm, theirs.algorithm,
            "{kt}: signature algorithm"
        );
        assert_eq!(
            ours.info.public_key.algorithm, theirs.info.public_key.algorithm,
            "{kt}: key algorithm"
        );

        let tbs = ours.info.to_der().unwrap();
        let sig = ours.signature.raw_bytes();
        assert!(
            verify_csr_signature(kt, k.spki_der(), &tbs, sig),
            "{kt}: CSR signature refused"
        );
        // The same verifier accepts Go's CSR (so it checks what the apiserver checks).
        let go_tbs = theirs.info.to_der().unwrap();
        let go_spki = theirs.info.public_key.to_der().unwrap();
        assert!(
            verify_csr_signature(kt, &go_spki, &go_tbs, theirs.signature.raw_bytes()),
            "{kt}: Go CSR refused"
        );
    }
}

#[test]
fn fresh_keys_differ() {
    for kt in [
        KeyType::Ed25519,
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::EcdsaP521,
    ] {
        let a = KubeletKey::generate(kt).unwrap();
        let b = KubeletKey::generate(kt).unwrap();
        assert_ne!(a.spki_der(), b.spki_der(), "{kt}");
    }
}
