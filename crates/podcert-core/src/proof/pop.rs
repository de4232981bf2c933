//! Proof of possession for the pkix carrier: a signature by the subject key over the pod UID's
//! ASCII bytes, exactly as Go's kubelet makes it and kube-apiserver checks it:
//! Ed25519 pure; ECDSA ASN.1 DER over SHA-256(uid) on every curve; RSASSA-PSS with SHA-256 and
//! MGF1-SHA-256 over SHA-256(uid), any salt length (Go signs with the maximum and verifies with
//! `PSSSaltLengthAuto`).
//!
//! aws-lc-rs does every scheme except PSS with an arbitrary salt (it also covers P-521 with
//! SHA-256, which RustCrypto `ecdsa` 0.16 `verify_prehash` refuses: a 32-byte prehash is
//! shorter than half the P-521 field); for PSS the fast path is the
//! maximum salt (what the kubelet sends) and the fallback detects the salt length with
//! RustCrypto `rsa` 0.9, which has no auto-detecting verifier of its own.

use aws_lc_rs::signature::{
    self as sig, ParsedPublicKey, RsaParameters, RsaPssSaltLength, VerificationAlgorithm,
};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use sha2::{Digest, Sha256};

use super::key::ParsedKey;
use super::ProofError;
use crate::key_type::KeyType;

/// PSS SHA-256 with Go's default (maximum) salt: emLen - hLen - 2.
static RSA_PSS_SHA256_MAX_SALT: RsaParameters =
    sig::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);

/// Verifies `proof` over `pod_uid` with the subject key.
pub(crate) fn verify(key: &ParsedKey<'_>, pod_uid: &[u8], proof: &[u8]) -> Result<(), ProofError> {
    if key.key_type.is_ml_dsa() {
        // Kubernetes 1.38 validation.go (validateDeprecatedPKIXPublicKey) knows only Ed25519,
        // ECDSA and RSA on this carrier: "unknown public key type". No kubelet sends it, and
        // no proof scheme over the pod UID is defined for ML-DSA, so nothing here can check one.
        return Err(ProofError::UnsupportedKeyType(format!(
            "{} keys are accepted only in spec.stubPKCS10Request (Kubernetes refuses them in \
             spec.pkixPublicKey)",
            key.key_type
        )));
    }
    if key.key_type == KeyType::Ed25519 {
        return if verify_ed25519_strict(key.key_bytes, pod_uid, proof) {
            Ok(())
        } else {
            Err(invalid_proof(key.key_type))
        };
    }
    let alg: &'static dyn VerificationAlgorithm = match key.key_type {
        KeyType::Ed25519 => &sig::ED25519,
        KeyType::EcdsaP256 => &sig::ECDSA_P256_SHA256_ASN1,
        KeyType::EcdsaP384 => &sig::ECDSA_P384_SHA256_ASN1,
        KeyType::EcdsaP521 => &sig::ECDSA_P521_SHA256_ASN1,
        KeyType::Rsa3072 | KeyType::Rsa4096 => &RSA_PSS_SHA256_MAX_SALT,
        KeyType::MlDsa44 | KeyType::MlDsa65 | KeyType::MlDsa87 => {
            return Err(invalid_proof(key.key_type))
        }
    };
    let parsed = parse_public_key(alg, key)?;
    if parsed.verify_sig(pod_uid, proof).is_ok() {
        return Ok(());
    }
    if key.key_type.is_rsa() && verify_pss_any_salt(key.key_bytes, pod_uid, proof) {
        return Ok(());
    }
    Err(invalid_proof(key.key_type))
}

fn invalid_proof(key_type: KeyType) -> ProofError {
    ProofError::InvalidProof(format!(
        "the proofOfPossession is not a valid {} signature over the pod UID by spec.pkixPublicKey",
        scheme_name(key_type)
    ))
}

/// Ed25519 with ed25519-dalek's `verify_strict`: a non-canonical S, a non-canonical or
/// small-order R and a small-order key are refused (RFC 8032's cofactorless check alone lets
/// `R = identity, S = 0` verify for any message under a small-order key). The key was already
/// checked by `key::parse_spki`; this keeps the signature side strict too.
pub(crate) fn verify_ed25519_strict(key_bytes: &[u8], msg: &[u8], signature: &[u8]) -> bool {
    let Ok(key_bytes) = <[u8; 32]>::try_from(key_bytes) else {
        return false;
    };
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes) else {
        return false;
    };
    let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    key.verify_strict(msg, &signature).is_ok()
}

/// Parses the key for aws-lc-rs; this is where an EC point off the curve is caught.
pub(crate) fn parse_public_key(
    alg: &'static dyn VerificationAlgorithm,
    key: &ParsedKey<'_>,
) -> Result<ParsedPublicKey, ProofError> {
    ParsedPublicKey::new(alg, key.key_bytes).map_err(|e| {
        ProofError::Malformed(format!("the {} public key is invalid: {e}", key.key_type))
    })
}

fn scheme_name(k: KeyType) -> &'static str {
    match k {
        KeyType::Ed25519 => "Ed25519",
        KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::EcdsaP521 => "ECDSA (SHA-256, ASN.1)",
        KeyType::Rsa3072 | KeyType::Rsa4096 => "RSASSA-PSS (SHA-256)",
        KeyType::MlDsa44 | KeyType::MlDsa65 | KeyType::MlDsa87 => "ML-DSA",
    }
}

/// RSASSA-PSS SHA-256 verification with the salt length taken from the signature itself
/// (Go's `PSSSaltLengthAuto`). The detection only picks the length; RustCrypto's verifier
/// decides, so a wrong guess can only reject.
pub(crate) fn verify_pss_any_salt(pkcs1: &[u8], msg: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = RsaPublicKey::from_pkcs1_der(pkcs1) else {
        return false;
    };
    let Some(salt_len) = detect_pss_salt_len(&key, signature) else {
        return false;
    };
    let Ok(signature) = rsa::pss::Signature::try_from(signature) else {
        return false;
    };
    rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(key, salt_len)
        .verify(msg, &signature)
        .is_ok()
}

/// Recovers EM = s^e mod n and reads the salt length off the decoded DB (RFC 8017 9.1.2 steps
/// 7-10): DB = PS (zeros) || 0x01 || salt.
fn detect_pss_salt_len(key: &RsaPublicKey, signature: &[u8]) -> Option<usize> {
    const H_LEN: usize = 32;
    let k = key.size();
    if signature.len() != k {
        return None;
    }
    let s = BigUint::from_bytes_be(signature);
    if &s >= key.n() {
        return None;
    }
    // The raw public operation (RSAVP1); rsa 0.9 keeps its own behind the `hazmat` feature.
    let m = s.modpow(key.e(), key.n()).to_bytes_be();
    let em_bits = key.n().bits().checked_sub(1)?;
    let em_len = em_bits.div_ceil(8);
    if m.len() > em_len || em_len < H_LEN + 2 {
        return None;
    }
    let mut em = vec![0u8; em_len];
    em[em_len - m.len()..].copy_from_slice(&m);
    if em[em_len - 1] != 0xbc {
        return None;
    }
    let (db, rest) = em.split_at_mut(em_len - H_LEN - 1);
    mgf1_sha256_xor(db, &rest[..H_LEN]);
    db[0] &= 0xff >> (8 * em_len - em_bits);
    let sep = db.iter().position(|b| *b != 0)?;
    (db[sep] == 0x01).then(|| db.len() - sep - 1)
}

/// out ^= MGF1-SHA-256(seed, out.len()).
fn mgf1_sha256_xor(out: &mut [u8], seed: &[u8]) {
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(32)) {
        let mask = Sha256::new()
            .chain_update(seed)
            .chain_update(counter.to_be_bytes())
            .finalize();
        for (o, m) in chunk.iter_mut().zip(mask.iter()) {
            *o ^= m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proof::key::parse_spki;
    use base64::Engine;

    /// (pkix, pod UID, proof) of a vector in the repo copy of the kubelet vectors.
    fn pop_vector(name: &str) -> (Vec<u8>, String, Vec<u8>) {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/kubelet-vectors/vectors.json"
        );
        let all: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let v = all
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap();
        let spec = &v["object"]["spec"];
        let b64 = |f: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(spec[f].as_str().unwrap())
                .unwrap()
        };
        let uid = spec["podUID"].as_str().unwrap().to_string();
        (b64("pkixPublicKey"), uid, b64("proofOfPossession"))
    }

    fn rsa_key(pkix: &[u8]) -> RsaPublicKey {
        RsaPublicKey::from_pkcs1_der(parse_spki(pkix, "t").unwrap().key_bytes).unwrap()
    }

    #[test]
    fn salt_length_is_read_from_the_signature() {
        for (name, want) in [
            ("RSA3072-pop-v1beta1", 350),
            ("RSA3072-pop-salt32", 32),
            ("RSA4096-pop-v1beta1", 478),
            ("RSA4096-pop-salt32", 32),
        ] {
            let (pkix, _, proof) = pop_vector(name);
            assert_eq!(
                detect_pss_salt_len(&rsa_key(&pkix), &proof),
                Some(want),
                "{name}"
            );
        }
    }

    #[test]
    fn each_rsa_path_alone_accepts_what_it_should() {
        for name in ["RSA3072-pop-v1beta1", "RSA4096-pop-v1alpha1"] {
            // Maximum salt: both the aws-lc-rs fast path and the RustCrypto fallback accept.
            let (pkix, uid, proof) = pop_vector(name);
            let key = parse_spki(&pkix, "t").unwrap();
            let fast = parse_public_key(&RSA_PSS_SHA256_MAX_SALT, &key).unwrap();
            assert!(fast.verify_sig(uid.as_bytes(), &proof).is_ok(), "{name}");
            assert!(
                verify_pss_any_salt(key.key_bytes, uid.as_bytes(), &proof),
                "{name}"
            );
        }
        for name in ["RSA3072-pop-salt32", "RSA4096-pop-salt32"] {
            // 32-byte salt: only the fallback can accept, so the fallback is what makes it pass.
            let (pkix, uid, proof) = pop_vector(name);
            let key = parse_spki(&pkix, "t").unwrap();
            let fast = parse_public_key(&RSA_PSS_SHA256_MAX_SALT, &key).unwrap();
            assert!(fast.verify_sig(uid.as_bytes(), &proof).is_err(), "{name}");
            assert!(
                verify_pss_any_salt(key.key_bytes, uid.as_bytes(), &proof),
                "{name}"
            );
            assert!(
                !verify_pss_any_salt(key.key_bytes, b"other-uid", &proof),
                "{name}"
            );
        }
    }

    #[test]
    fn salt_detection_rejects_non_pss_input() {
        let (pkix, _, proof) = pop_vector("RSA3072-pop-v1beta1");
        let key = rsa_key(&pkix);
        assert_eq!(
            detect_pss_salt_len(&key, &proof[1..]),
            None,
            "short signature"
        );
        assert_eq!(
            detect_pss_salt_len(&key, &vec![0xff; proof.len()]),
            None,
            ">= n"
        );
        let mut flipped = proof.clone();
        flipped[10] ^= 0x80;
        assert_eq!(
            detect_pss_salt_len(&key, &flipped),
            None,
            "garbled encoding"
        );
    }

    #[test]
    fn mgf1_matches_its_definition() {
        // MGF1-SHA-256(seed, 40) = SHA-256(seed || 0^4) || SHA-256(seed || 0001)[..8].
        let seed = b"seed";
        let mut out = [0u8; 40];
        mgf1_sha256_xor(&mut out, seed);
        let h0 = Sha256::new()
            .chain_update(seed)
            .chain_update([0, 0, 0, 0])
            .finalize();
        let h1 = Sha256::new()
            .chain_update(seed)
            .chain_update([0, 0, 0, 1])
            .finalize();
        assert_eq!(&out[..32], &h0[..]);
        assert_eq!(&out[32..], &h1[..8]);
    }
}
