//! Reading CA certificates from PEM and checking that they can sign leaves.

use super::{CaError, CaKeyType};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry;
use x509_parser::prelude::FromDer;

/// Parses every `CERTIFICATE` block of `pem_text` into DER, in order. `what` names the input
/// in errors ("the CA certificate file", "the trust anchors").
pub(crate) fn parse_pem_certs(pem_text: &str, what: &str) -> Result<Vec<Vec<u8>>, CaError> {
    let blocks = pem::parse_many(pem_text).map_err(|e| {
        CaError::BadCertificate(format!(
            "{what} is not valid PEM ({})",
            super::pem_problem(&e)
        ))
    })?;
    let mut ders = Vec::with_capacity(blocks.len());
    for block in blocks {
        if block.tag() != "CERTIFICATE" {
            return Err(CaError::BadCertificate(format!(
                "{what} contains a {:?} block; only CERTIFICATE blocks are allowed",
                block.tag()
            )));
        }
        let der = block.into_contents();
        parse(&der).map_err(|e| CaError::BadCertificate(format!("{e} in {what}")))?;
        ders.push(der);
    }
    if ders.is_empty() {
        return Err(CaError::NoCertificate(what.to_string()));
    }
    Ok(ders)
}

/// Parses one DER certificate, refusing trailing bytes.
pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("a certificate has trailing bytes after its DER encoding".into()),
        Err(e) => Err(format!("a certificate could not be parsed ({e})")),
    }
}

/// Subject equals issuer: the certificate is (claims to be) a self-signed root.
pub(crate) fn is_self_signed(cert: &X509Certificate<'_>) -> bool {
    cert.subject().as_raw() == cert.issuer().as_raw()
}

pub(crate) fn not_before(cert: &X509Certificate<'_>) -> OffsetDateTime {
    cert.validity().not_before.to_datetime()
}

pub(crate) fn not_after(cert: &X509Certificate<'_>) -> OffsetDateTime {
    cert.validity().not_after.to_datetime()
}

/// The signing certificate must be a CA allowed to sign certificates.
pub(crate) fn check_is_ca(cert: &X509Certificate<'_>) -> Result<(), CaError> {
    let bc = cert
        .basic_constraints()
        .map_err(|e| CaError::BadCertificate(format!("its basicConstraints is invalid ({e})")))?;
    if !bc.is_some_and(|bc| bc.value.ca) {
        return Err(CaError::NotCa(
            "it lacks basicConstraints CA:TRUE".to_string(),
        ));
    }
    let ku = cert
        .key_usage()
        .map_err(|e| CaError::BadCertificate(format!("its keyUsage is invalid ({e})")))?;
    if let Some(ku) = ku {
        if !ku.value.key_cert_sign() {
            return Err(CaError::NotCa(
                "its keyUsage does not include keyCertSign".to_string(),
            ));
        }
    }
    Ok(())
}

/// The signing certificate must be valid at `now` and for at least one more hour.
pub(crate) fn check_validity(
    cert: &X509Certificate<'_>,
    now: OffsetDateTime,
) -> Result<(), CaError> {
    let (nb, na) = (not_before(cert), not_after(cert));
    if now < nb {
        return Err(CaError::NotYetValid { not_before: nb });
    }
    if now > na {
        return Err(CaError::Expired { not_after: na });
    }
    if na - now < Duration::HOUR {
        return Err(CaError::ExpiresTooSoon { not_after: na });
    }
    Ok(())
}

/// rustls-webpki refuses every chain through a CA with URI name constraints.
pub(crate) fn check_no_uri_name_constraints(cert: &X509Certificate<'_>) -> Result<(), CaError> {
    for ext in cert.extensions() {
        if let ParsedExtension::NameConstraints(nc) = ext.parsed_extension() {
            let subtrees = nc
                .permitted_subtrees
                .iter()
                .chain(nc.excluded_subtrees.iter())
                .flatten();
            for subtree in subtrees {
                if matches!(subtree.base, GeneralName::URI(_)) {
                    return Err(CaError::UriNameConstraints(cert.subject().to_string()));
                }
            }
        }
    }
    Ok(())
}

/// The CA key type named by the certificate's public key.
pub(crate) fn key_type(cert: &X509Certificate<'_>) -> Option<CaKeyType> {
    let spki = cert.public_key();
    let alg = &spki.algorithm.algorithm;
    if *alg == oid_registry::OID_SIG_ED25519 {
        Some(CaKeyType::Ed25519)
    } else if *alg == oid_registry::OID_PKCS1_RSAENCRYPTION {
        Some(CaKeyType::Rsa3072)
    } else if let Some(t) = ml_dsa_key_type(alg) {
        Some(t)
    } else if *alg == oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
        if curve == oid_registry::OID_EC_P256 {
            Some(CaKeyType::EcdsaP256)
        } else if curve == oid_registry::OID_NIST_EC_P384 {
            Some(CaKeyType::EcdsaP384)
        } else {
            None
        }
    } else {
        None
    }
}

/// The ML-DSA parameter set an SPKI algorithm OID names (2.16.840.1.101.3.4.3.17/18/19).
fn ml_dsa_key_type(alg: &oid_registry::Oid<'_>) -> Option<CaKeyType> {
    match alg.iter()?.collect::<Vec<u64>>().as_slice() {
        [2, 16, 840, 1, 101, 3, 4, 3, 17] => Some(CaKeyType::MlDsa44),
        [2, 16, 840, 1, 101, 3, 4, 3, 18] => Some(CaKeyType::MlDsa65),
        [2, 16, 840, 1, 101, 3, 4, 3, 19] => Some(CaKeyType::MlDsa87),
        _ => None,
    }
}

/// Lowercase hex of a byte string.
/// Whether every attribute type of `name` is an OID DER can encode canonically.
pub(crate) fn name_oids_encodable(name: &x509_parser::x509::X509Name<'_>) -> bool {
    name.iter_attributes().all(|attr| {
        let Some(arcs) = attr.attr_type().iter() else {
            return false; // an arc beyond u64
        };
        let arcs: Vec<u64> = arcs.collect();
        match arcs.as_slice() {
            [first, second, ..] => *first < 3 && (*first == 2 || *second < 40),
            _ => false,
        }
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// PEM `CERTIFICATE` blocks with LF line endings.
pub(crate) fn to_pem<'a>(ders: impl IntoIterator<Item = &'a Vec<u8>>) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    ders.into_iter()
        .map(|der| pem::encode_config(&pem::Pem::new("CERTIFICATE", der.clone()), config))
        .collect()
}
