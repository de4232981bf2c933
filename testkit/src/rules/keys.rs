//! Public keys as Go's crypto/x509 sees them (ParsePKIXPublicKey, ParseCertificateRequest,
//! CheckSignature), implemented with RustCrypto, for the PodCertificateRequest rules. ML-DSA is
//! parsed as Go 1.27 (Kubernetes 1.38) does; callers emulating an older release treat
//! [`PublicKey::MlDsa`] as a key Go could not parse.

use der::asn1::ObjectIdentifier;
use der::Decode;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256, Sha384, Sha512};

const OID_ED25519: &str = "1.3.101.112";
const OID_X25519: &str = "1.3.101.110";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_DSA: &str = "1.2.840.10040.4.1";
const OID_P224: &str = "1.3.132.0.33";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";
const OID_ML_DSA_44: &str = "2.16.840.1.101.3.4.3.17";
const OID_ML_DSA_65: &str = "2.16.840.1.101.3.4.3.18";
const OID_ML_DSA_87: &str = "2.16.840.1.101.3.4.3.19";

/// The ML-DSA parameter sets (FIPS 204) Go 1.27's crypto/mldsa knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlDsaLevel {
    L44,
    L65,
    L87,
}

impl MlDsaLevel {
    fn from_oid(oid: &str) -> Option<Self> {
        match oid {
            OID_ML_DSA_44 => Some(MlDsaLevel::L44),
            OID_ML_DSA_65 => Some(MlDsaLevel::L65),
            OID_ML_DSA_87 => Some(MlDsaLevel::L87),
            _ => None,
        }
    }
    /// mldsa.NewPublicKey's length check.
    fn public_key_len(self) -> usize {
        match self {
            MlDsaLevel::L44 => 1312,
            MlDsaLevel::L65 => 1952,
            MlDsaLevel::L87 => 2592,
        }
    }
}

/// The elliptic curves Go's x509 can parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P224,
    P256,
    P384,
    P521,
}

impl Curve {
    /// `Curve.Params().Name`.
    pub fn go_name(self) -> &'static str {
        match self {
            Curve::P224 => "P-224",
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }
    fn coordinate_len(self) -> usize {
        match self {
            Curve::P224 => 28,
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

/// A parsed subject key. Equality is Go's `PublicKey.Equal`: same type and same numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519([u8; 32]),
    /// Uncompressed SEC1 point.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    /// Big-endian modulus and exponent without leading zeros.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// ML-DSA (Go 1.27+): the encoded public key, of its parameter set's exact length.
    MlDsa {
        level: MlDsaLevel,
        key: Vec<u8>,
    },
    /// Parsed by Go but not a type PodCertificateRequests allow (DSA, X25519).
    Other,
}

impl PublicKey {
    /// `rsa.PublicKey.Size() * 8`: the modulus length in whole bytes, as bits.
    pub fn rsa_size_bits(&self) -> Option<usize> {
        match self {
            PublicKey::Rsa { n, .. } => Some(n.len() * 8),
            _ => None,
        }
    }
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[i..].to_vec()
}

fn parse_ec_point(curve: Curve, bytes: &[u8]) -> Option<Vec<u8>> {
    // Go's elliptic.Unmarshal: uncompressed points only, on the curve.
    if bytes.len() != 1 + 2 * curve.coordinate_len() || bytes[0] != 4 {
        return None;
    }
    let ok = match curve {
        Curve::P224 => true,
        Curve::P256 => p256::PublicKey::from_sec1_bytes(bytes).is_ok(),
        Curve::P384 => p384::PublicKey::from_sec1_bytes(bytes).is_ok(),
        Curve::P521 => p521::ecdsa::VerifyingKey::from_sec1_bytes(bytes).is_ok(),
    };
    ok.then(|| bytes.to_vec())
}

/// x509.ParsePKIXPublicKey: `None` where Go returns an error.
pub fn parse_spki(der_bytes: &[u8]) -> Option<PublicKey> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(der_bytes).ok()?;
    let bits = spki.subject_public_key.as_bytes()?;
    match spki.algorithm.oid.to_string().as_str() {
        OID_ED25519 => {
            if spki.algorithm.parameters.is_some() {
                return None;
            }
            Some(PublicKey::Ed25519(bits.try_into().ok()?))
        }
        OID_EC => {
            let curve_oid: ObjectIdentifier = spki.algorithm.parameters?.decode_as().ok()?;
            let curve = match curve_oid.to_string().as_str() {
                OID_P224 => Curve::P224,
                OID_P256 => Curve::P256,
                OID_P384 => Curve::P384,
                OID_P521 => Curve::P521,
                _ => return None,
            };
            Some(PublicKey::Ec {
                curve,
                point: parse_ec_point(curve, bits)?,
            })
        }
        OID_RSA => {
            // Go requires the NULL parameters and a positive modulus and exponent.
            let params = spki.algorithm.parameters?;
            if der::Tagged::tag(&params) != der::Tag::Null {
                return None;
            }
            let key = rsa::pkcs1::RsaPublicKey::from_der(bits).ok()?;
            let n = strip_zeros(key.modulus.as_bytes());
            let e = strip_zeros(key.public_exponent.as_bytes());
            if n.is_empty() || e.is_empty() || e.len() > 4 || (e.len() == 4 && e[0] & 0x80 != 0) {
                return None;
            }
            Some(PublicKey::Rsa { n, e })
        }
        OID_DSA | OID_X25519 => Some(PublicKey::Other),
        oid => {
            // "x509: ML-DSA key encoded with illegal parameters"; mldsa.NewPublicKey: length.
            let level = MlDsaLevel::from_oid(oid)?;
            if spki.algorithm.parameters.is_some() || bits.len() != level.public_key_len() {
                return None;
            }
            Some(PublicKey::MlDsa {
                level,
                key: bits.to_vec(),
            })
        }
    }
}

/// mldsa.Verify with no options (pure ML-DSA, empty context), with RustCrypto's ml-dsa: an
/// implementation independent of the aws-lc-rs the signer and the kubelet emulator use.
pub fn ml_dsa_verify(level: MlDsaLevel, key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    fn verify<P: ml_dsa::MlDsaParams>(key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
        let (Ok(key), Ok(sig)) = (
            ml_dsa::EncodedVerifyingKey::<P>::try_from(key),
            ml_dsa::Signature::<P>::try_from(sig),
        ) else {
            return false;
        };
        ml_dsa::VerifyingKey::<P>::decode(&key).verify_with_context(msg, &[], &sig)
    }
    match level {
        MlDsaLevel::L44 => verify::<ml_dsa::MlDsa44>(key, msg, sig),
        MlDsaLevel::L65 => verify::<ml_dsa::MlDsa65>(key, msg, sig),
        MlDsaLevel::L87 => verify::<ml_dsa::MlDsa87>(key, msg, sig),
    }
}

/// Left-pads a digest to the field size; RustCrypto refuses digests shorter than half the
/// field (P-521 with SHA-256), and Go's hashToInt gives the same integer for the padded form.
fn pad_prehash(digest: &[u8], field_len: usize) -> Vec<u8> {
    if digest.len() >= field_len {
        return digest.to_vec();
    }
    let mut out = vec![0u8; field_len - digest.len()];
    out.extend_from_slice(digest);
    out
}

/// ecdsa.VerifyASN1 over an already computed digest.
pub fn ecdsa_verify_asn1(curve: Curve, point: &[u8], digest: &[u8], sig: &[u8]) -> bool {
    match curve {
        Curve::P256 => {
            let (Ok(k), Ok(s)) = (
                p256::ecdsa::VerifyingKey::from_sec1_bytes(point),
                p256::ecdsa::Signature::from_der(sig),
            ) else {
                return false;
            };
            k.verify_prehash(&pad_prehash(digest, 32), &s).is_ok()
        }
        Curve::P384 => {
            let (Ok(k), Ok(s)) = (
                p384::ecdsa::VerifyingKey::from_sec1_bytes(point),
                p384::ecdsa::Signature::from_der(sig),
            ) else {
                return false;
            };
            k.verify_prehash(&pad_prehash(digest, 48), &s).is_ok()
        }
        Curve::P521 => {
            let (Ok(k), Ok(s)) = (
                p521::ecdsa::VerifyingKey::from_sec1_bytes(point),
                p521::ecdsa::Signature::from_der(sig),
            ) else {
                return false;
            };
            k.verify_prehash(&pad_prehash(digest, 66), &s).is_ok()
        }
        Curve::P224 => false,
    }
}

fn rsa_key(n: &[u8], e: &[u8]) -> Option<rsa::RsaPublicKey> {
    rsa::RsaPublicKey::new_with_max_size(
        rsa::BigUint::from_bytes_be(n),
        rsa::BigUint::from_bytes_be(e),
        16384,
    )
    .ok()
}

/// rsa.VerifyPSS with SHA-256 and PSSSaltLengthAuto: any salt length, including Go's default
/// maximum (key bytes - 32 - 2).
pub fn rsa_verify_pss_sha256_auto(n: &[u8], e: &[u8], digest: &[u8], sig: &[u8]) -> bool {
    let Some(key) = rsa_key(n, e) else {
        return false;
    };
    let em_len = (key.n().bits() + 6) / 8;
    let Some(max_salt) = em_len.checked_sub(32 + 2) else {
        return false;
    };
    // The common lengths first; then every other one, as Go's auto mode accepts any.
    let mut order = vec![max_salt, 32];
    order.extend((0..=max_salt).filter(|l| *l != max_salt && *l != 32));
    order.into_iter().any(|salt| {
        key.verify(rsa::Pss::new_with_salt::<Sha256>(salt), digest, sig)
            .is_ok()
    })
}

/// The proof-of-possession check of ValidatePodCertificateRequestCreate: the signature over
/// the pod UID (Ed25519 pure; ECDSA and RSA-PSS over its SHA-256).
pub fn verify_proof_of_possession(key: &PublicKey, pod_uid: &str, sig: &[u8]) -> bool {
    let digest = Sha256::digest(pod_uid.as_bytes());
    match key {
        PublicKey::Ed25519(k) => verify_ed25519(k, pod_uid.as_bytes(), sig),
        PublicKey::Ec { curve, point } => ecdsa_verify_asn1(*curve, point, &digest, sig),
        PublicKey::Rsa { n, e } => rsa_verify_pss_sha256_auto(n, e, &digest, sig),
        // validateDeprecatedPKIXPublicKey knows no ML-DSA proof (the key type is refused first).
        PublicKey::MlDsa { .. } | PublicKey::Other => false,
    }
}

fn verify_ed25519(k: &[u8; 32], msg: &[u8], sig: &[u8]) -> bool {
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(k) else {
        return false;
    };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
        return false;
    };
    // Go's ed25519.Verify: cofactorless, canonical S, no small-order key check.
    ed25519_dalek::Verifier::verify(&vk, msg, &sig).is_ok()
}

/// A parsed PKCS#10 request: its key and whether its self-signature verifies.
pub struct StubRequest {
    pub spki_der: Vec<u8>,
    pub signature_ok: bool,
}

/// x509.ParseCertificateRequest + CheckSignature (RSA PKCS#1 v1.5, ECDSA and Ed25519 with
/// the SHA-2 family, and Go 1.27's pure ML-DSA: the signature OID must name the key's own
/// parameter set, without parameters). `None` when the request does not parse.
pub fn parse_stub_request(der_bytes: &[u8]) -> Option<StubRequest> {
    use x509_parser::prelude::FromDer;
    let (rest, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der_bytes).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let info = &csr.certification_request_info;
    let spki_der = info.subject_pki.raw.to_vec();
    let tbs = info.raw;
    let sig: &[u8] = &csr.signature_value.data;
    let alg = csr.signature_algorithm.algorithm.to_id_string();
    let alg_has_params = csr.signature_algorithm.parameters.is_some();
    let key = parse_spki(&spki_der);
    let signature_ok = match (key.as_ref(), alg.as_str()) {
        (Some(PublicKey::MlDsa { level, key }), alg) => {
            MlDsaLevel::from_oid(alg) == Some(*level)
                && !alg_has_params
                && ml_dsa_verify(*level, key, tbs, sig)
        }
        (Some(PublicKey::Ed25519(k)), "1.3.101.112") => verify_ed25519(k, tbs, sig),
        (Some(PublicKey::Ec { curve, point }), "1.2.840.10045.4.3.2") => {
            ecdsa_verify_asn1(*curve, point, &Sha256::digest(tbs), sig)
        }
        (Some(PublicKey::Ec { curve, point }), "1.2.840.10045.4.3.3") => {
            ecdsa_verify_asn1(*curve, point, &Sha384::digest(tbs), sig)
        }
        (Some(PublicKey::Ec { curve, point }), "1.2.840.10045.4.3.4") => {
            ecdsa_verify_asn1(*curve, point, &Sha512::digest(tbs), sig)
        }
        (Some(PublicKey::Rsa { n, e }), "1.2.840.113549.1.1.11") => {
            rsa_key(n, e).is_some_and(|k| {
                k.verify(
                    rsa::Pkcs1v15Sign::new::<Sha256>(),
                    &Sha256::digest(tbs),
                    sig,
                )
                .is_ok()
            })
        }
        (Some(PublicKey::Rsa { n, e }), "1.2.840.113549.1.1.12") => {
            rsa_key(n, e).is_some_and(|k| {
                k.verify(
                    rsa::Pkcs1v15Sign::new::<Sha384>(),
                    &Sha384::digest(tbs),
                    sig,
                )
                .is_ok()
            })
        }
        (Some(PublicKey::Rsa { n, e }), "1.2.840.113549.1.1.13") => {
            rsa_key(n, e).is_some_and(|k| {
                k.verify(
                    rsa::Pkcs1v15Sign::new::<Sha512>(),
                    &Sha512::digest(tbs),
                    sig,
                )
                .is_ok()
            })
        }
        _ => false,
    };
    Some(StubRequest {
        spki_der,
        signature_ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};

    const KEYS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/kubelet-vectors/keys"
    );

    fn rsa3072() -> rsa::RsaPrivateKey {
        let pem = std::fs::read_to_string(format!("{KEYS}/RSA3072.key.pem")).unwrap();
        rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap()
    }

    #[test]
    fn pss_accepts_any_salt_length_like_go_auto() {
        let k = rsa3072();
        let spki = k.to_public_key().to_public_key_der().unwrap();
        let key = parse_spki(spki.as_bytes()).unwrap();
        assert_eq!(key.rsa_size_bits(), Some(3072));
        let digest = Sha256::digest(b"pod-uid");
        for salt in [0usize, 20, 32, 350] {
            let sig = k
                .sign_with_rng(
                    &mut rand::thread_rng(),
                    rsa::Pss::new_with_salt::<Sha256>(salt),
                    &digest,
                )
                .unwrap();
            assert!(
                verify_proof_of_possession(&key, "pod-uid", &sig),
                "salt {salt}"
            );
            assert!(
                !verify_proof_of_possession(&key, "other-uid", &sig),
                "salt {salt}"
            );
        }
        // PKCS#1 v1.5 is not a proof (the alpha-era scheme was replaced by PSS).
        let sig = k.sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest).unwrap();
        assert!(!verify_proof_of_possession(&key, "pod-uid", &sig));
    }

    #[test]
    fn compressed_points_and_missing_rsa_null_are_refused_like_go() {
        let sk = p256::SecretKey::random(&mut rand::thread_rng());
        let pk = sk.public_key();
        let spki = pk.to_public_key_der().unwrap();
        assert!(matches!(
            parse_spki(spki.as_bytes()),
            Some(PublicKey::Ec {
                curve: Curve::P256,
                ..
            })
        ));
        // Same key, compressed point: Go's elliptic.Unmarshal refuses it.
        let compressed = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&pk, true);
        let mut info = spki::SubjectPublicKeyInfoOwned::from_der(spki.as_bytes()).unwrap();
        info.subject_public_key = der::asn1::BitString::from_bytes(compressed.as_bytes()).unwrap();
        let der_bytes = der::Encode::to_der(&info).unwrap();
        assert!(p256::PublicKey::from_sec1_bytes(compressed.as_bytes()).is_ok());
        assert!(parse_spki(&der_bytes).is_none());
        // RSA without the NULL parameters: refused.
        let k = rsa3072();
        let mut info = spki::SubjectPublicKeyInfoOwned::from_der(
            k.to_public_key().to_public_key_der().unwrap().as_bytes(),
        )
        .unwrap();
        assert!(parse_spki(&der::Encode::to_der(&info).unwrap()).is_some());
        info.algorithm.parameters = None;
        assert!(parse_spki(&der::Encode::to_der(&info).unwrap()).is_none());
        assert!(parse_spki(b"garbage").is_none());
    }

    #[test]
    fn keys_compare_by_value() {
        let k = rsa3072();
        let a = parse_spki(k.to_public_key().to_public_key_der().unwrap().as_bytes()).unwrap();
        let b = parse_spki(k.to_public_key().to_public_key_der().unwrap().as_bytes()).unwrap();
        assert_eq!(a, b);
        let sk = p256::SecretKey::random(&mut rand::thread_rng());
        let c = parse_spki(sk.public_key().to_public_key_der().unwrap().as_bytes()).unwrap();
        assert_ne!(a, c);
    }
}
