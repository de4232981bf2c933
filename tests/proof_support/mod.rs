//! Shared helpers for the proof and wire tests: the kubelet vectors, keys and a tiny DER writer.
#![allow(dead_code)]

use std::path::PathBuf;

use podcert_core::key_type::KeyType;
use serde_json::Value;

pub fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/kubelet-vectors")
        .join(rel)
}

pub fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(testdata("vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn vector(name: &str) -> Value {
    vectors()
        .into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

pub fn object_of(v: &Value) -> Value {
    v["object"].clone()
}

/// The PKCS#8 DER of a key file.
pub fn pkcs8_der(file: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(testdata(file)).unwrap();
    let block = pem::parse(text).unwrap();
    assert_eq!(block.tag(), "PRIVATE KEY");
    block.contents().to_vec()
}

/// The DER SubjectPublicKeyInfo of a PKCS#8 key file, derived with RustCrypto.
pub fn spki_from_key_file(file: &str, key_type: KeyType) -> Vec<u8> {
    use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
    let der = pkcs8_der(file);
    let doc = match key_type {
        KeyType::Ed25519 => ed25519_dalek::SigningKey::from_pkcs8_der(&der)
            .unwrap()
            .verifying_key()
            .to_public_key_der(),
        KeyType::EcdsaP256 => p256::SecretKey::from_pkcs8_der(&der)
            .unwrap()
            .public_key()
            .to_public_key_der(),
        KeyType::EcdsaP384 => p384::SecretKey::from_pkcs8_der(&der)
            .unwrap()
            .public_key()
            .to_public_key_der(),
        KeyType::EcdsaP521 => p521::SecretKey::from_pkcs8_der(&der)
            .unwrap()
            .public_key()
            .to_public_key_der(),
        KeyType::Rsa3072 | KeyType::Rsa4096 => rsa::RsaPrivateKey::from_pkcs8_der(&der)
            .unwrap()
            .to_public_key()
            .to_public_key_der(),
    };
    doc.unwrap().as_bytes().to_vec()
}

/// Verifies a proof of possession with RustCrypto only (independent of aws-lc-rs).
pub fn rustcrypto_verify(
    key_type: KeyType,
    spki: &[u8],
    uid: &[u8],
    proof: &[u8],
    salt32: bool,
) -> bool {
    use p256::pkcs8::DecodePublicKey;
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(uid);
    match key_type {
        KeyType::Ed25519 => {
            use ed25519_dalek::Verifier;
            let key = ed25519_dalek::VerifyingKey::from_public_key_der(spki).unwrap();
            let Ok(sig) = ed25519_dalek::Signature::from_slice(proof) else {
                return false;
            };
            key.verify(uid, &sig).is_ok()
        }
        KeyType::EcdsaP256 => {
            use p256::ecdsa::signature::hazmat::PrehashVerifier;
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(spki).unwrap();
            let Ok(sig) = p256::ecdsa::Signature::from_der(proof) else {
                return false;
            };
            key.verify_prehash(&digest, &sig).is_ok()
        }
        KeyType::EcdsaP384 => {
            use p384::ecdsa::signature::hazmat::PrehashVerifier;
            let key = p384::ecdsa::VerifyingKey::from_public_key_der(spki).unwrap();
            let Ok(sig) = p384::ecdsa::Signature::from_der(proof) else {
                return false;
            };
            key.verify_prehash(&digest, &sig).is_ok()
        }
        KeyType::EcdsaP521 => {
            use p521::ecdsa::signature::hazmat::PrehashVerifier;
            let point = p521::PublicKey::from_public_key_der(spki).unwrap();
            let key = p521::ecdsa::VerifyingKey::from_affine(*point.as_affine()).unwrap();
            let Ok(sig) = p521::ecdsa::Signature::from_der(proof) else {
                return false;
            };
            // ecdsa 0.16 refuses a prehash shorter than half the field (33 bytes for P-521);
            // left-padding with zeros keeps the integer Go computes from a short hash.
            let mut padded = [0u8; 66];
            padded[66 - digest.len()..].copy_from_slice(&digest);
            key.verify_prehash(&padded, &sig).is_ok()
        }
        KeyType::Rsa3072 | KeyType::Rsa4096 => {
            use rsa::signature::Verifier;
            let key = rsa::RsaPublicKey::from_public_key_der(spki).unwrap();
            // Go's maximum salt: emLen - hLen - 2, with emLen = ceil((bits-1)/8).
            let bits = if key_type == KeyType::Rsa3072 {
                3072
            } else {
                4096
            };
            let salt = if salt32 {
                32
            } else {
                (bits - 1usize).div_ceil(8) - 32 - 2
            };
            let Ok(sig) = rsa::pss::Signature::try_from(proof) else {
                return false;
            };
            rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(key, salt)
                .verify(uid, &sig)
                .is_ok()
        }
    }
}

// --- a tiny DER writer for hand-made keys and CSRs ---------------------------------------------

pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

pub fn oid(dotted: &str) -> Vec<u8> {
    use der::Encode;
    der::asn1::ObjectIdentifier::new_unwrap(dotted)
        .to_der()
        .unwrap()
}

pub const NULL: &[u8] = &[0x05, 0x00];

pub fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = vec![0u8];
    content.extend_from_slice(bytes);
    tlv(0x03, &content)
}

/// AlgorithmIdentifier with optional parameters.
pub fn alg_id(dotted: &str, params: Option<&[u8]>) -> Vec<u8> {
    match params {
        Some(p) => seq(&[&oid(dotted), p]),
        None => seq(&[&oid(dotted)]),
    }
}

pub fn spki(alg: &[u8], key: &[u8]) -> Vec<u8> {
    seq(&[alg, &bit_string(key)])
}

/// A PKCS#10 request with an empty subject and no attributes, signed by `sign` over the
/// CertificationRequestInfo and labelled with `sig_alg`.
pub fn csr(spki: &[u8], sig_alg: &[u8], sign: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let info = seq(&[&[0x02, 0x01, 0x00], &seq(&[]), spki, &tlv(0xa0, &[])]);
    let signature = sign(&info);
    seq(&[&info, sig_alg, &bit_string(&signature)])
}
