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
    ["vectors.json", "vectors-mldsa.json"]
        .into_iter()
        .flat_map(|file| {
            let path = format!(
                "{}/../testdata/kubelet-vectors/{file}",
                env!("CARGO_MANIFEST_DIR")
            );
            serde_json::from_str::<Vec<Value>>(&std::fs::read_to_string(path).unwrap()).unwrap()
        })
        .collect()
}

/// Every key type, ML-DSA included.
fn all_key_types() -> impl Iterator<Item = KeyType> {
    KeyType::ALL.into_iter().chain(KeyType::ML_DSA)
}

/// Pure ML-DSA, empty context, with RustCrypto's ml-dsa (the emulator signs with aws-lc-rs).
fn verify_ml_dsa(kt: KeyType, spki: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    fn verify<P: ml_dsa::MlDsaParams>(key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
        let key = ml_dsa::EncodedVerifyingKey::<P>::try_from(key).unwrap();
        let Ok(sig) = ml_dsa::Signature::<P>::try_from(sig) else {
            return false;
        };
        ml_dsa::VerifyingKey::<P>::decode(&key).verify_with_context(msg, &[], &sig)
    }
    let key = SubjectPublicKeyInfoRef::from_der(spki)
        .unwrap()
        .subject_public_key
        .raw_bytes()
        .to_vec();
    match kt {
        KeyType::MlDsa44 => verify::<ml_dsa::MlDsa44>(&key, msg, sig),
        KeyType::MlDsa65 => verify::<ml_dsa::MlDsa65>(&key, msg, sig),
        KeyType::MlDsa87 => verify::<ml_dsa::MlDsa87>(&key, msg, sig),
        _ => unreachable!("{kt} is not ML-DSA"),
    }
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
        KeyType::MlDsa44 | KeyType::MlDsa65 | KeyType::MlDsa87 => {
            unreachable!("ML-DSA keys have no proof of possession")
        }
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
        KeyType::MlDsa44 | KeyType::MlDsa65 | KeyType::MlDsa87 => verify_ml_dsa(kt, spki, tbs, sig),
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
fn ml_dsa_keys_have_no_proof_of_possession() {
    // 1.38's kubelet sends ML-DSA keys only in the stub request.
    for kt in KeyType::ML_DSA {
        assert!(key(kt).proof_of_possession(UID).is_err(), "{kt}");
    }
}

#[test]
fn ml_dsa_private_key_is_gos_seed_pkcs8_matching_the_spki() {
    // Go's x509.MarshalPKCS8PrivateKey writes an mldsa key as its 32-byte seed
    // ([0] IMPLICIT OCTET STRING); RustCrypto's ml-dsa reads that form and derives the key.
    fn public<P: ml_dsa::MlDsaParams>(der: &[u8]) -> Vec<u8>
    where
        ml_dsa::SigningKey<P>: ml_dsa::pkcs8::DecodePrivateKey,
    {
        use ml_dsa::pkcs8::DecodePrivateKey;
        use ml_dsa::Keypair;
        let sk = ml_dsa::SigningKey::<P>::from_pkcs8_der(der).unwrap();
        sk.verifying_key().encode().to_vec()
    }
    for kt in KeyType::ML_DSA {
        let k = key(kt);
        let der = pem::parse(k.private_key_pem()).unwrap().into_contents();
        // The same form as the Go 1.27 vectors' key files.
        let go = std::fs::read_to_string(format!(
            "{}/../testdata/kubelet-vectors/keys/{kt}.key.pem",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let go_der = pem::parse(go).unwrap().into_contents();
        assert_eq!(
            der.len(),
            go_der.len(),
            "{kt}: PKCS#8 size differs from Go's"
        );
        assert_eq!(der[..der.len() - 32], go_der[..go_der.len() - 32], "{kt}");
        let key_bytes = match kt {
            KeyType::MlDsa44 => public::<ml_dsa::MlDsa44>(&der),
            KeyType::MlDsa65 => public::<ml_dsa::MlDsa65>(&der),
            _ => public::<ml_dsa::MlDsa87>(&der),
        };
        let spki = SubjectPublicKeyInfoRef::from_der(k.spki_der()).unwrap();
        assert_eq!(spki.subject_public_key.raw_bytes(), key_bytes, "{kt}");
        assert!(spki.algorithm.parameters.is_none(), "{kt}");
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
            KeyType::MlDsa44 | KeyType::MlDsa65 | KeyType::MlDsa87 => unreachable!(),
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
    for kt in all_key_types() {
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
        KeyType::MlDsa65,
    ] {
        let a = KubeletKey::generate(kt).unwrap();
        let b = KubeletKey::generate(kt).unwrap();
        assert_ne!(a.spki_der(), b.spki_der(), "{kt}");
    }
}
