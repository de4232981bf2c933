//! SubjectPublicKeyInfo parsing and the key-type rules of the API: Ed25519, ECDSA P-256/P-384/
//! P-521 (named curves), RSA with a modulus of exactly 3072 or 4096 bits, and (Kubernetes 1.38)
//! ML-DSA-44/65/87 (FIPS 204). Mirrors Go's `x509.ParsePKIXPublicKey` strictness where it
//! matters (NULL RSA parameters, no Ed25519 or ML-DSA parameters, uncompressed EC points on
//! the curve, ML-DSA keys of exactly their parameter set's size).

use der::asn1::{ObjectIdentifier, UintRef};
use der::{Decode, Tag, Tagged};
use spki::SubjectPublicKeyInfoRef;

use super::ProofError;
use crate::key_type::KeyType;

const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");
const OID_X25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");
const OID_X448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.111");
const OID_DSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10040.4.1");
const OID_DH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10046.2.1");

// FIPS 204 ML-DSA (RFC 9881): the same OIDs name the key and the signature algorithm.
pub(crate) const OID_ML_DSA_44: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.17");
pub(crate) const OID_ML_DSA_65: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.18");
pub(crate) const OID_ML_DSA_87: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.19");

const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_P224: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.33");
const OID_P192: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.1");
const OID_SECP256K1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.10");

/// Suggested in every refusal of a key type.
pub(crate) const SUPPORTED_HINT: &str = "use ECDSAP256, ED25519, RSA3072 or RSA4096";

/// A public key the API allows, borrowed from the DER it was parsed from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParsedKey<'a> {
    pub key_type: KeyType,
    /// The whole SubjectPublicKeyInfo TLV.
    pub spki_der: &'a [u8],
    /// The subjectPublicKey BIT STRING contents: the Ed25519 key, the uncompressed EC point,
    /// or the PKCS#1 RSAPublicKey DER (what aws-lc-rs expects for each).
    pub key_bytes: &'a [u8],
}

fn malformed(what: impl std::fmt::Display) -> ProofError {
    ProofError::Malformed(what.to_string())
}

fn unsupported(what: impl std::fmt::Display) -> ProofError {
    ProofError::UnsupportedKeyType(format!("{what}; {SUPPORTED_HINT}"))
}

/// Parses a DER SubjectPublicKeyInfo (no trailing bytes) and applies the key-type rules.
/// `field` names where the key came from, for messages.
pub(crate) fn parse_spki<'a>(der: &'a [u8], field: &str) -> Result<ParsedKey<'a>, ProofError> {
    let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| {
        malformed(format_args!(
            "{field} is not a DER SubjectPublicKeyInfo: {e}"
        ))
    })?;
    let key_bytes = spki.subject_public_key.as_bytes().ok_or_else(|| {
        malformed(format_args!(
            "{field}: the public key BIT STRING has unused bits"
        ))
    })?;
    let params = spki.algorithm.parameters;
    let oid = spki.algorithm.oid;

    let key_type = match oid {
        OID_ED25519 => {
            if params.is_some() {
                return Err(malformed(format_args!(
                    "{field}: an Ed25519 key must not carry algorithm parameters"
                )));
            }
            if key_bytes.len() != 32 {
                return Err(malformed(format_args!(
                    "{field}: an Ed25519 public key is 32 bytes, got {}",
                    key_bytes.len()
                )));
            }
            check_ed25519_point(key_bytes, field)?;
            KeyType::Ed25519
        }
        OID_EC_PUBLIC_KEY => {
            let curve = params
                .filter(|p| p.tag() == Tag::ObjectIdentifier)
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                .ok_or_else(|| {
                    malformed(format_args!(
                        "{field}: an EC key must name its curve (namedCurve OID parameters)"
                    ))
                })?;
            let (key_type, coord_len) = match curve {
                OID_P256 => (KeyType::EcdsaP256, 32),
                OID_P384 => (KeyType::EcdsaP384, 48),
                OID_P521 => (KeyType::EcdsaP521, 66),
                OID_P224 => return Err(unsupported("ECDSA P-224 keys are not supported")),
                OID_P192 => return Err(unsupported("ECDSA P-192 keys are not supported")),
                OID_SECP256K1 => return Err(unsupported("ECDSA secp256k1 keys are not supported")),
                other => {
                    return Err(unsupported(format_args!(
                        "ECDSA keys on curve {other} are not supported"
                    )))
                }
            };
            // Go accepts only the uncompressed form; the point itself is checked on the curve
            // when the proof is verified (aws-lc-rs parses and validates it there).
            if key_bytes.len() != 1 + 2 * coord_len || key_bytes[0] != 0x04 {
                return Err(malformed(format_args!(
                    "{field}: the {key_type} public key is not an uncompressed point"
                )));
            }
            key_type
        }
        OID_RSA_ENCRYPTION => {
            if !params.is_some_and(|p| p.tag() == Tag::Null && p.value().is_empty()) {
                return Err(malformed(format_args!(
                    "{field}: an RSA key must carry NULL algorithm parameters"
                )));
            }
            rsa_key_type(key_bytes, field)?
        }
        OID_ML_DSA_44 | OID_ML_DSA_65 | OID_ML_DSA_87 => {
            // RFC 9881: parameters absent; Go: "ML-DSA key encoded with illegal parameters".
            if params.is_some() {
                return Err(malformed(format_args!(
                    "{field}: an ML-DSA key must not carry algorithm parameters"
                )));
            }
            let key_type = match oid {
                OID_ML_DSA_44 => KeyType::MlDsa44,
                OID_ML_DSA_65 => KeyType::MlDsa65,
                _ => KeyType::MlDsa87,
            };
            let want = ml_dsa_public_key_len(key_type);
            if key_bytes.len() != want {
                return Err(malformed(format_args!(
                    "{field}: an {key_type} public key is {want} bytes, got {}",
                    key_bytes.len()
                )));
            }
            key_type
        }
        OID_RSASSA_PSS => {
            return Err(unsupported(
                "RSASSA-PSS (id-RSASSA-PSS) keys are not supported",
            ))
        }
        OID_ED448 => return Err(unsupported("Ed448 keys are not supported")),
        OID_X25519 => return Err(unsupported("X25519 keys cannot sign and are not supported")),
        OID_X448 => return Err(unsupported("X448 keys cannot sign and are not supported")),
        OID_DSA => return Err(unsupported("DSA keys are not supported")),
        OID_DH => return Err(unsupported("Diffie-Hellman keys are not supported")),
        other => {
            return Err(unsupported(format_args!(
                "public key algorithm {other} is not supported"
            )))
        }
    };
    Ok(ParsedKey {
        key_type,
        spki_der: der,
        key_bytes,
    })
}

/// FIPS 204 table 2: the encoded public key of each ML-DSA parameter set.
pub(crate) fn ml_dsa_public_key_len(key_type: KeyType) -> usize {
    match key_type {
        KeyType::MlDsa44 => 1312,
        KeyType::MlDsa65 => 1952,
        KeyType::MlDsa87 => 2592,
        _ => 0,
    }
}

/// Classifies an RSAPublicKey by modulus size; only 3072 and 4096 bits are allowed.
fn rsa_key_type(pkcs1: &[u8], field: &str) -> Result<KeyType, ProofError> {
    let key = rsa::pkcs1::RsaPublicKey::from_der(pkcs1)
        .map_err(|e| malformed(format_args!("{field}: not a PKCS#1 RSAPublicKey: {e}")))?;
    let bits = uint_bits(key.modulus);
    check_exponent(key.public_exponent, field)?;
    let key_type = match bits {
        3072 => KeyType::Rsa3072,
        4096 => KeyType::Rsa4096,
        0 => return Err(malformed(format_args!("{field}: the RSA modulus is zero"))),
        n => {
            return Err(unsupported(format_args!(
                "RSA {n}-bit keys are not supported"
            )))
        }
    };
    check_rsa_modulus(key.modulus.as_bytes(), field)?;
    Ok(key_type)
}

/// Refuses Ed25519 keys a signature check cannot bind to a private key: bytes that are not a
/// point, a non-canonical encoding (y >= p), and the small-order points (the identity among
/// them), for which `R = identity, S = 0` "verifies" for every message. Malformed, not
/// InvalidProof: like an EC point off its curve, the key itself is unusable, whatever proof
/// comes with it.
fn check_ed25519_point(key_bytes: &[u8], field: &str) -> Result<(), ProofError> {
    let bytes: [u8; 32] = key_bytes
        .try_into()
        .map_err(|_| malformed(format_args!("{field}: an Ed25519 public key is 32 bytes")))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| {
        malformed(format_args!(
            "{field}: the Ed25519 public key is not a point on the curve"
        ))
    })?;
    if key.is_weak() {
        return Err(malformed(format_args!(
            "{field}: the Ed25519 public key is a small-order point"
        )));
    }
    if key.to_edwards().compress().as_bytes() != &bytes {
        return Err(malformed(format_args!(
            "{field}: the Ed25519 public key is not canonically encoded"
        )));
    }
    Ok(())
}

/// Every prime below 2^9 except 2 (an even modulus is caught by its last bit): 96 primes
/// whose product is about 700 bits, so the check is one short division and a gcd of small
/// numbers. Measured with rsa's bignum: primes below 2^16 (a 94,000-bit product) cost
/// 370 µs per request and primes below 2^11 90 µs (as much as the proof or more); this
/// costs 17 µs.
fn small_primes() -> impl Iterator<Item = u32> {
    // A sieve of Eratosthenes over 2^9, once, at the first product built.
    const LIMIT: usize = 1 << 9;
    let mut composite = vec![false; LIMIT];
    (3..LIMIT).step_by(2).filter_map(move |n| {
        if composite[n] {
            return None;
        }
        (n * n..LIMIT)
            .step_by(2 * n)
            .for_each(|m| composite[m] = true);
        u32::try_from(n).ok()
    })
}

/// The product of [`small_primes`], built once.
fn small_prime_product() -> &'static rsa::BigUint {
    static PRODUCT: std::sync::OnceLock<rsa::BigUint> = std::sync::OnceLock::new();
    PRODUCT.get_or_init(|| {
        small_primes().fold(rsa::BigUint::from(1u32), |acc, p| {
            acc * rsa::BigUint::from(p)
        })
    })
}

/// Refuses an RSA modulus that is even or has a prime factor below 2^9: a real key is the
/// product of two primes of half its size, and a modulus with a small factor is one whose
/// "private key" anyone can compute (or that no private key matches). One gcd with the
/// precomputed product of the small primes, cheap next to the signature check.
fn check_rsa_modulus(modulus: &[u8], field: &str) -> Result<(), ProofError> {
    use num_integer::Integer;
    if modulus.last().is_none_or(|b| b % 2 == 0) {
        return Err(malformed(format_args!("{field}: the RSA modulus is even")));
    }
    let n = rsa::BigUint::from_bytes_be(modulus);
    // Reduce first: the gcd then runs on ~700-bit numbers.
    let g = (&n % small_prime_product()).gcd(small_prime_product());
    if g == rsa::BigUint::from(1u32) {
        return Ok(());
    }
    // Only on refusal: name the smallest factor found.
    let factor = small_primes()
        .find(|p| (&g % rsa::BigUint::from(*p)) == rsa::BigUint::from(0u32))
        .unwrap_or(0);
    Err(malformed(format_args!(
        "{field}: the RSA modulus is divisible by the small prime {factor}, so it is not a \
         product of two large primes"
    )))
}

/// Go requires 2 <= e <= 2^31-1; an even exponent cannot be a real RSA key either.
fn check_exponent(e: UintRef<'_>, field: &str) -> Result<(), ProofError> {
    let bytes = e.as_bytes();
    let value = if bytes.len() > 4 {
        None
    } else {
        Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    match value {
        Some(v) if (3..=0x7fff_ffff).contains(&v) && v % 2 == 1 => Ok(()),
        _ => Err(malformed(format_args!(
            "{field}: the RSA public exponent is not an odd number between 3 and 2^31-1"
        ))),
    }
}

/// The bit length of a DER unsigned integer (leading zero bytes are already stripped).
fn uint_bits(n: UintRef<'_>) -> usize {
    let bytes = n.as_bytes();
    match bytes.first() {
        None | Some(0) => 0,
        Some(first) => (bytes.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uint(bytes: &[u8]) -> UintRef<'_> {
        UintRef::new(bytes).unwrap()
    }

    /// SEQUENCE { SEQUENCE { OID [, params] }, BIT STRING (0 unused bits) key }.
    fn ml_dsa_spki(oid_last: u8, params: &[u8], key_len: usize) -> Vec<u8> {
        fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            match body.len() {
                n if n < 0x80 => out.push(n as u8),
                n if n < 0x100 => out.extend([0x81, n as u8]),
                n => out.extend([0x82, (n >> 8) as u8, n as u8]),
            }
            out.extend_from_slice(body);
            out
        }
        let mut alg = tlv(
            0x06,
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, oid_last],
        );
        alg.extend_from_slice(params);
        let mut bits = vec![0u8];
        bits.extend(std::iter::repeat_n(0x5a, key_len));
        let mut body = tlv(0x30, &alg);
        body.extend(tlv(0x03, &bits));
        tlv(0x30, &body)
    }

    #[test]
    fn ml_dsa_keys_parse_by_oid_with_their_exact_sizes() {
        for (last, kt, len) in [
            (0x11, KeyType::MlDsa44, 1312),
            (0x12, KeyType::MlDsa65, 1952),
            (0x13, KeyType::MlDsa87, 2592),
        ] {
            let der = ml_dsa_spki(last, &[], len);
            let key = parse_spki(&der, "f").unwrap();
            assert_eq!(key.key_type, kt);
            assert_eq!(key.key_bytes.len(), len);
            for bad in [len - 1, len + 1, 1952 + 1312 - len] {
                let err = parse_spki(&ml_dsa_spki(last, &[], bad), "f").unwrap_err();
                assert!(matches!(err, ProofError::Malformed(_)), "{kt} {bad}: {err}");
            }
            // RFC 9881: parameters absent (Go: "ML-DSA key encoded with illegal parameters").
            let err = parse_spki(&ml_dsa_spki(last, &[0x05, 0x00], len), "f").unwrap_err();
            assert!(err.to_string().contains("parameters"), "{err}");
        }
        // Another arc of the NIST signature branch (SLH-DSA, 2.16.840.1.101.3.4.3.20): refused
        // as a key type, not taken for ML-DSA.
        let err = parse_spki(&ml_dsa_spki(0x14, &[], 1952), "f").unwrap_err();
        assert!(matches!(err, ProofError::UnsupportedKeyType(_)), "{err}");
    }

    #[test]
    fn modulus_bits_count_from_the_top_byte() {
        assert_eq!(uint_bits(uint(&[0x01])), 1);
        assert_eq!(uint_bits(uint(&[0x80, 0])), 16);
        assert_eq!(uint_bits(uint(&[0x7f, 0, 0])), 23);
        assert_eq!(uint_bits(uint(&[0])), 0);
    }

    #[test]
    fn small_primes_are_the_odd_primes_below_512() {
        let primes: Vec<u32> = small_primes().collect();
        // pi(512) = 97, less the prime 2.
        assert_eq!(primes.len(), 96);
        assert_eq!(&primes[..5], &[3, 5, 7, 11, 13]);
        assert_eq!(primes.last(), Some(&509));
        assert!(small_prime_product().bits() < 800);
    }

    #[test]
    fn modulus_with_a_small_factor_is_refused() {
        // 509 * 503 (both prime).
        let n = (rsa::BigUint::from(509u32) * rsa::BigUint::from(503u32)).to_bytes_be();
        let err = check_rsa_modulus(&n, "f").unwrap_err().to_string();
        assert!(err.contains("small prime 503"), "{err}");
        assert!(check_rsa_modulus(&[0x10, 0x00], "f")
            .unwrap_err()
            .to_string()
            .contains("even"));
        // 2^127 - 1 and 2^61 - 1 are prime: their product has no factor below 2^9.
        let m127 = (rsa::BigUint::from(1u32) << 127usize) - rsa::BigUint::from(1u32);
        let m61 = (rsa::BigUint::from(1u32) << 61usize) - rsa::BigUint::from(1u32);
        assert!(check_rsa_modulus(&(m127 * m61).to_bytes_be(), "f").is_ok());
    }

    #[test]
    fn exponent_must_be_odd_and_in_range() {
        assert!(check_exponent(uint(&[1, 0, 1]), "f").is_ok());
        assert!(check_exponent(uint(&[3]), "f").is_ok());
        assert!(check_exponent(uint(&[0x7f, 0xff, 0xff, 0xff]), "f").is_ok());
        for bad in [&[1u8][..], &[4], &[0x80, 0, 0, 1], &[1, 0, 0, 0, 1]] {
            assert!(check_exponent(uint(bad), "f").is_err(), "{bad:?}");
        }
    }
}
