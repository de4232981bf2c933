//! The key's public half as rcgen wants it (the SubjectPublicKeyInfo's BIT STRING), read from
//! the token's public key object (or the RSA private key's public attributes).

use cryptoki::object::{Attribute, AttributeType, KeyType};
use der::Decode;
use podcert_core::ca::CaKeyType;

use crate::error::Pkcs11Error;

const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// RFC 8410 names the curve by OID; PKCS#11 3.0 also allows PrintableString "edwards25519".
const NAME_ED25519: &[u8] = b"\x13\x0cedwards25519";

/// CKA_EC_PARAMS for a key type (None: RSA, and ML-DSA, which tokens here do not hold).
pub(crate) fn ec_params(t: CaKeyType) -> Option<&'static [u8]> {
    match t {
        CaKeyType::EcdsaP256 => Some(OID_P256),
        CaKeyType::EcdsaP384 => Some(OID_P384),
        CaKeyType::Ed25519 => Some(OID_ED25519),
        CaKeyType::Rsa3072 | CaKeyType::MlDsa44 | CaKeyType::MlDsa65 | CaKeyType::MlDsa87 => None,
    }
}

pub(crate) const PUBLIC_ATTRS: [AttributeType; 5] = [
    AttributeType::KeyType,
    AttributeType::EcParams,
    AttributeType::EcPoint,
    AttributeType::Modulus,
    AttributeType::PublicExponent,
];

/// The key type and public key bytes from the attributes of [`PUBLIC_ATTRS`].
pub(crate) fn from_attributes(attrs: &[Attribute]) -> Result<(CaKeyType, Vec<u8>), Pkcs11Error> {
    let mut key_type = None;
    let (mut params, mut point, mut modulus, mut exponent) = (None, None, None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(t) => key_type = Some(*t),
            Attribute::EcParams(v) => params = Some(v.as_slice()),
            Attribute::EcPoint(v) => point = Some(v.as_slice()),
            Attribute::Modulus(v) => modulus = Some(v.as_slice()),
            Attribute::PublicExponent(v) => exponent = Some(v.as_slice()),
            _ => {}
        }
    }
    let bad = |m: &str| Pkcs11Error::Key(m.to_string());
    match key_type {
        Some(KeyType::RSA) => {
            let (n, e) = modulus
                .zip(exponent)
                .ok_or_else(|| bad("the RSA key has no CKA_MODULUS/CKA_PUBLIC_EXPONENT"))?;
            let key = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(n),
                rsa::BigUint::from_bytes_be(e),
            )
            .map_err(|e| Pkcs11Error::Key(format!("the RSA public key is unusable ({e})")))?;
            if n.len() < 256 {
                return Err(bad("the RSA key is shorter than 2048 bits"));
            }
            use rsa::pkcs1::EncodeRsaPublicKey;
            let der = key
                .to_pkcs1_der()
                .map_err(|e| Pkcs11Error::Key(format!("encoding the RSA public key ({e})")))?;
            Ok((CaKeyType::Rsa3072, der.as_bytes().to_vec()))
        }
        Some(t @ (KeyType::EC | KeyType::EC_EDWARDS)) => {
            let params = params.ok_or_else(|| bad("the EC key has no CKA_EC_PARAMS"))?;
            let (ct, len) = match params {
                OID_P256 if t == KeyType::EC => (CaKeyType::EcdsaP256, 65),
                OID_P384 if t == KeyType::EC => (CaKeyType::EcdsaP384, 97),
                OID_ED25519 | NAME_ED25519 if t == KeyType::EC_EDWARDS => (CaKeyType::Ed25519, 32),
                _ => {
                    return Err(Pkcs11Error::Key(
                        "unsupported curve; use ECDSA P-256, P-384, Ed25519 or RSA".into(),
                    ))
                }
            };
            let point = point.ok_or_else(|| {
                bad("no public key object with CKA_EC_POINT beside the private key (same label/id)")
            })?;
            // PKCS#11 wraps the point in a DER OCTET STRING; some modules give it bare.
            let raw = match der::asn1::OctetString::from_der(point) {
                Ok(o) if o.as_bytes().len() == len => o.as_bytes().to_vec(),
                _ if point.len() == len => point.to_vec(),
                _ => return Err(bad("CKA_EC_POINT has an unexpected length")),
            };
            Ok((ct, raw))
        }
        _ => Err(Pkcs11Error::Key(
            "unsupported key type; use ECDSA P-256, P-384, Ed25519 or RSA".into(),
        )),
    }
}
