//! Reading the CA's private key (PKCS#8, SEC1 or PKCS#1 PEM) into an rcgen signing key.
//!
//! SEC1 and PKCS#1 are converted to PKCS#8 first so rcgen/aws-lc-rs always sees one format.

use super::ml_dsa::MlDsaKey;
use super::signing_key::CaKey;
use super::{CaError, CaKeyType};
use pkcs8::der::asn1::ObjectIdentifier;
use pkcs8::EncodePrivateKey;
use rcgen::KeyPair;

const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ML_DSA_44: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.17");
const OID_ML_DSA_65: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.18");
const OID_ML_DSA_87: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.19");

/// Parses the first private key block of `key_pem`.
pub(crate) fn load_key(key_pem: &str) -> Result<(CaKey, CaKeyType), CaError> {
    let blocks = pem::parse_many(key_pem).map_err(|e| {
        CaError::BadKey(format!(
            "the key is not valid PEM ({})",
            super::pem_problem(&e)
        ))
    })?;
    for block in &blocks {
        // Legacy OpenSSL encryption: "Proc-Type: 4,ENCRYPTED" header on a traditional block.
        let legacy_encrypted = block
            .headers()
            .get("Proc-Type")
            .is_some_and(|v| v.contains("ENCRYPTED"));
        match block.tag() {
            "ENCRYPTED PRIVATE KEY" => return Err(CaError::EncryptedKey),
            "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" if legacy_encrypted => {
                return Err(CaError::EncryptedKey)
            }
            "PRIVATE KEY" => return from_pkcs8(block.contents()),
            "EC PRIVATE KEY" => return from_sec1(block.contents()),
            "RSA PRIVATE KEY" => return from_pkcs1(block.contents()),
            // e.g. the "EC PARAMETERS" block `openssl ecparam -genkey` writes first.
            _ => continue,
        }
    }
    Err(CaError::NoKey)
}

fn from_pkcs8(der: &[u8]) -> Result<(CaKey, CaKeyType), CaError> {
    let info = pkcs8::PrivateKeyInfo::try_from(der)
        .map_err(|e| CaError::BadKey(format!("the PKCS#8 private key is malformed ({e})")))?;
    let key_type = match info.algorithm.oid {
        OID_ED25519 => CaKeyType::Ed25519,
        OID_RSA => CaKeyType::Rsa3072,
        OID_ML_DSA_44 | OID_ML_DSA_65 | OID_ML_DSA_87 => {
            let key_type = match info.algorithm.oid {
                OID_ML_DSA_44 => CaKeyType::MlDsa44,
                OID_ML_DSA_65 => CaKeyType::MlDsa65,
                _ => CaKeyType::MlDsa87,
            };
            return Ok((CaKey::MlDsa(MlDsaKey::from_pkcs8(der, key_type)?), key_type));
        }
        OID_EC_PUBLIC_KEY => match info.algorithm.parameters_oid() {
            Ok(OID_P256) => CaKeyType::EcdsaP256,
            Ok(OID_P384) => CaKeyType::EcdsaP384,
            Ok(other) => {
                return Err(CaError::UnsupportedKey(format!(
                    "an EC key on curve {other}"
                )))
            }
            Err(_) => {
                return Err(CaError::UnsupportedKey(
                    "an EC key without a named curve".into(),
                ))
            }
        },
        other => {
            return Err(CaError::UnsupportedKey(format!(
                "a key with algorithm {other}"
            )))
        }
    };
    let key_pair =
        KeyPair::from_pkcs8_der_and_sign_algo(&der.to_vec().into(), key_type.signature_algorithm())
            .map_err(|e| CaError::BadKey(format!("the private key was rejected ({e})")))?;
    Ok((CaKey::Local(key_pair), key_type))
}

fn from_sec1(der: &[u8]) -> Result<(CaKey, CaKeyType), CaError> {
    // Each parser checks the embedded curve parameters, so at most one accepts the key.
    let pkcs8 = if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
        k.to_pkcs8_der()
    } else if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
        k.to_pkcs8_der()
    } else {
        return Err(CaError::UnsupportedKey(
            "an EC PRIVATE KEY that is not a valid P-256 or P-384 key".into(),
        ));
    }
    .map_err(|e| CaError::BadKey(format!("the EC key could not be converted to PKCS#8 ({e})")))?;
    from_pkcs8(pkcs8.as_bytes())
}

fn from_pkcs1(der: &[u8]) -> Result<(CaKey, CaKeyType), CaError> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    let key = rsa::RsaPrivateKey::from_pkcs1_der(der)
        .map_err(|e| CaError::BadKey(format!("the RSA PRIVATE KEY is malformed ({e})")))?;
    let pkcs8 = key.to_pkcs8_der().map_err(|e| {
        CaError::BadKey(format!(
            "the RSA key could not be converted to PKCS#8 ({e})"
        ))
    })?;
    from_pkcs8(pkcs8.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_no_key() {
        assert!(matches!(load_key("hello"), Err(CaError::NoKey)));
        let cert_only = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(load_key(cert_only), Err(CaError::NoKey)));
    }

    #[test]
    fn encrypted_pkcs8_and_legacy_encrypted_are_refused() {
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(matches!(load_key(enc), Err(CaError::EncryptedKey)));
        let legacy = "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END EC PRIVATE KEY-----\n";
        assert!(matches!(load_key(legacy), Err(CaError::EncryptedKey)));
    }

    #[test]
    fn pkcs8_sec1_and_pkcs1_load_with_their_type() {
        let p256 = p256::SecretKey::random(&mut rand::thread_rng());
        let sec1 = pem::encode(&pem::Pem::new(
            "EC PRIVATE KEY",
            p256.to_sec1_der().unwrap().to_vec(),
        ));
        let (_, t) = load_key(&sec1).unwrap();
        assert_eq!(t, CaKeyType::EcdsaP256);

        let p384 = p384::SecretKey::random(&mut rand::thread_rng());
        let sec1 = pem::encode(&pem::Pem::new(
            "EC PRIVATE KEY",
            p384.to_sec1_der().unwrap().to_vec(),
        ));
        let (_, t) = load_key(&sec1).unwrap();
        assert_eq!(t, CaKeyType::EcdsaP384);

        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let (_, t) = load_key(&ed.serialize_pem()).unwrap();
        assert_eq!(t, CaKeyType::Ed25519);

        use rsa::pkcs1::EncodeRsaPrivateKey;
        let rsa_key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let pkcs1 = rsa_key.to_pkcs1_pem(Default::default()).unwrap();
        let (_, t) = load_key(&pkcs1).unwrap();
        assert_eq!(t, CaKeyType::Rsa3072);
    }

    #[test]
    fn p521_is_unsupported() {
        let p521 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
        assert!(matches!(
            load_key(&p521.serialize_pem()),
            Err(CaError::UnsupportedKey(_))
        ));
    }
}
