//! A trust bundle in the SPIFFE bundle format (SPIFFE Trust Domain and Bundle, section 4): a
//! JWK Set whose keys carry `use: x509-svid` and the root certificate in `x5c`, with
//! `spiffe_sequence` and `spiffe_refresh_hint`. What a SPIFFE bundle endpoint serves.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Map, Value};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

/// Why a root cannot be a JWK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("root {index}: not an X.509 certificate")]
    NotACertificate { index: usize },
    #[error("root {index}: its public key type ({what}) has no JWK form here")]
    UnsupportedKey { index: usize, what: String },
}

/// The JWK Set of `roots` (DER certificates, in order). Every root becomes one key: its JWK
/// public parameters (RFC 7517/7518, RFC 8037 for Ed25519) and `x5c` with the certificate.
pub fn jwks(
    roots: &[Vec<u8>],
    sequence: u64,
    refresh_hint_seconds: u64,
) -> Result<Value, BundleError> {
    let keys = roots
        .iter()
        .enumerate()
        .map(|(index, der)| jwk(index, der))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "keys": keys,
        "spiffe_sequence": sequence,
        "spiffe_refresh_hint": refresh_hint_seconds,
    }))
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn jwk(index: usize, der: &[u8]) -> Result<Value, BundleError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|_| BundleError::NotACertificate { index })?;
    let spki = cert.public_key();
    let unsupported = |what: &str| BundleError::UnsupportedKey {
        index,
        what: what.to_string(),
    };
    let mut k = Map::new();
    match spki.parsed() {
        Ok(PublicKey::EC(point)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let (crv, size) = match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => ("P-256", 32),
                Some("1.3.132.0.34") => ("P-384", 48),
                Some("1.3.132.0.35") => ("P-521", 66),
                other => return Err(unsupported(&format!("EC curve {other:?}"))),
            };
            let bytes = point.data();
            if bytes.len() != 1 + 2 * size || bytes[0] != 4 {
                return Err(unsupported("a compressed or malformed EC point"));
            }
            k.insert("kty".into(), "EC".into());
            k.insert("crv".into(), crv.into());
            k.insert("x".into(), b64url(&bytes[1..1 + size]).into());
            k.insert("y".into(), b64url(&bytes[1 + size..]).into());
        }
        Ok(PublicKey::RSA(rsa)) => {
            k.insert("kty".into(), "RSA".into());
            k.insert("n".into(), b64url(strip_zeros(rsa.modulus)).into());
            k.insert("e".into(), b64url(strip_zeros(rsa.exponent)).into());
        }
        Ok(PublicKey::Unknown(raw))
            if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" && raw.len() == 32 =>
        {
            k.insert("kty".into(), "OKP".into());
            k.insert("crv".into(), "Ed25519".into());
            k.insert("x".into(), b64url(raw).into());
        }
        _ => {
            return Err(unsupported(
                &spki.algorithm.algorithm.to_id_string().to_string(),
            ))
        }
    }
    k.insert("use".into(), "x509-svid".into());
    k.insert("x5c".into(), json!([STANDARD.encode(der)]));
    Ok(Value::Object(k))
}

/// DER integers carry a leading zero for positive values; JWK wants the bare big-endian bytes.
fn strip_zeros(mut b: &[u8]) -> &[u8] {
    while b.len() > 1 && b[0] == 0 {
        b = &b[1..];
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{generate_self_signed, CaKeyType};

    fn root(kt: CaKeyType) -> Vec<u8> {
        let ca = generate_self_signed(
            kt,
            Some("a.example"),
            time::Duration::days(30),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        pem::parse(ca.cert_pem).unwrap().into_contents()
    }

    #[test]
    fn every_ca_key_type_becomes_a_jwk_with_its_certificate() {
        for (kt, kty, crv) in [
            (CaKeyType::EcdsaP256, "EC", Some("P-256")),
            (CaKeyType::EcdsaP384, "EC", Some("P-384")),
            (CaKeyType::Ed25519, "OKP", Some("Ed25519")),
            (CaKeyType::Rsa3072, "RSA", None),
        ] {
            let der = root(kt);
            let set = jwks(std::slice::from_ref(&der), 7, 300).unwrap();
            assert_eq!(set["spiffe_sequence"], 7);
            assert_eq!(set["spiffe_refresh_hint"], 300);
            let k = &set["keys"][0];
            assert_eq!(k["kty"], kty, "{kt:?}");
            assert_eq!(k["use"], "x509-svid");
            assert_eq!(k["x5c"][0], STANDARD.encode(&der));
            match crv {
                Some(c) => assert_eq!(k["crv"], c),
                None => {
                    assert_eq!(k["e"], "AQAB");
                    // 3072-bit modulus, no leading zero byte.
                    assert_eq!(
                        URL_SAFE_NO_PAD
                            .decode(k["n"].as_str().unwrap())
                            .unwrap()
                            .len(),
                        384
                    );
                }
            }
            if kty == "EC" {
                let x = URL_SAFE_NO_PAD.decode(k["x"].as_str().unwrap()).unwrap();
                let y = URL_SAFE_NO_PAD.decode(k["y"].as_str().unwrap()).unwrap();
                assert_eq!(x.len(), y.len());
            }
        }
    }

    #[test]
    fn garbage_is_refused_by_position() {
        let e = jwks(&[root(CaKeyType::EcdsaP256), vec![1, 2, 3]], 1, 1).unwrap_err();
        assert_eq!(e, BundleError::NotACertificate { index: 1 });
    }
}
