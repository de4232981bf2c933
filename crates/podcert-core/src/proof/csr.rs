//! The stub PKCS#10 carrier (1.36+): parse the CertificationRequest, verify its self-signature,
//! and keep only the public key. Subject, attributes and extensions are skipped as opaque TLVs
//! and never interpreted, so nothing but the key can leave this module.
//!
//! Signature algorithms accepted are the ones Go's `x509.CreateCertificateRequest` emits by
//! default, plus the other PKCS#1 v1.5 SHA-2 sizes (kube-apiserver's `CheckSignature` accepts
//! them too): sha{256,384,512}WithRSAEncryption, ecdsa-with-SHA{256,384,512} on the key's own
//! curve, pure Ed25519, and (Kubernetes 1.38) pure ML-DSA with the empty context, as Go 1.27's
//! `x509.CreateCertificateRequest` signs with a `crypto/mldsa` key and `CheckSignature` verifies
//! (RFC 9881: the signature OID is the key's own, parameters absent). Anything else
//! (RSASSA-PSS, SHA-1, MD5, HashML-DSA, ...) is refused by name.

use aws_lc_rs::signature as pq;
use aws_lc_rs::signature::{self as sig, VerificationAlgorithm};
use der::asn1::{BitStringRef, ObjectIdentifier};
use der::{Decode, Reader, SliceReader, Tag, TagNumber, Tagged};
use spki::AlgorithmIdentifierRef;

use super::key::{self, ParsedKey, OID_ML_DSA_44, OID_ML_DSA_65, OID_ML_DSA_87};
use super::pop::{parse_public_key, verify_ed25519_strict};
use super::{ProofError, SubjectKey};
use crate::key_type::KeyType;

const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_WITH_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
// Named only so that a refusal can say what it saw.
const SHA1_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
const MD5_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.4");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const ECDSA_WITH_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.1");
const ECDSA_WITH_SHA224: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.1");
const SHA224_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.14");
const ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");

const FIELD: &str = "spec.stubPKCS10Request";

/// The parts of a CertificationRequest this module needs, borrowed from its DER.
struct RawCsr<'a> {
    /// The DER of CertificationRequestInfo: the signed bytes.
    info: &'a [u8],
    spki: &'a [u8],
    algorithm: AlgorithmIdentifierRef<'a>,
    signature: BitStringRef<'a>,
}

fn malformed(what: impl std::fmt::Display) -> ProofError {
    ProofError::Malformed(format!(
        "{FIELD} is not a DER PKCS#10 certification request: {what}"
    ))
}

/// Extracts the subject key from a stub CSR whose self-signature verifies.
pub(crate) fn extract(der: &[u8]) -> Result<SubjectKey, ProofError> {
    let csr = parse(der).map_err(malformed)?;
    let key = key::parse_spki(csr.spki, "the public key of spec.stubPKCS10Request")?;
    verify_self_signature(&csr, &key)?;
    Ok(SubjectKey {
        key_type: key.key_type,
        spki_der: key.spki_der.to_vec(),
    })
}

/// CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature }
/// CertificationRequestInfo ::= SEQUENCE { version INTEGER { v1(0) }, subject Name,
///     subjectPKInfo SubjectPublicKeyInfo, attributes [0] IMPLICIT Attributes }
fn parse(der: &[u8]) -> der::Result<RawCsr<'_>> {
    let mut outer = SliceReader::new(der)?;
    let csr = outer.sequence(|r| {
        let info = r.tlv_bytes()?;
        let algorithm = AlgorithmIdentifierRef::decode(r)?;
        let signature = BitStringRef::decode(r)?;
        Ok((info, algorithm, signature))
    })?;
    let (info, algorithm, signature) = outer.finish(csr)?;

    let mut info_reader = SliceReader::new(info)?;
    let spki = info_reader.sequence(|r| {
        let version = u8::decode(r)?;
        if version != 0 {
            return Err(Tag::Integer.value_error());
        }
        let subject = r.tlv_bytes()?;
        expect_tag(subject, Tag::Sequence)?;
        let spki = r.tlv_bytes()?;
        let attributes = r.tlv_bytes()?;
        expect_tag(
            attributes,
            Tag::ContextSpecific {
                constructed: true,
                number: TagNumber::N0,
            },
        )?;
        Ok(spki)
    })?;
    let spki = info_reader.finish(spki)?;
    Ok(RawCsr {
        info,
        spki,
        algorithm,
        signature,
    })
}

fn expect_tag(tlv: &[u8], tag: Tag) -> der::Result<()> {
    let found = Tag::try_from(tlv.first().copied().unwrap_or_default())?;
    if found == tag {
        Ok(())
    } else {
        Err(found.unexpected_error(Some(tag)))
    }
}

fn verify_self_signature(csr: &RawCsr<'_>, key: &ParsedKey<'_>) -> Result<(), ProofError> {
    let oid = csr.algorithm.oid;
    let alg = verification_algorithm(oid, key.key_type)?;
    check_parameters(&csr.algorithm)?;
    let signature = csr
        .signature
        .as_bytes()
        .ok_or_else(|| malformed("the signature BIT STRING has unused bits"))?;
    let verified = if key.key_type == KeyType::Ed25519 {
        // Strict, as on the pkix carrier (see `verify_ed25519_strict`).
        verify_ed25519_strict(key.key_bytes, csr.info, signature)
    } else {
        parse_public_key(alg, key)?
            .verify_sig(csr.info, signature)
            .is_ok()
    };
    if verified {
        return Ok(());
    }
    Err(ProofError::InvalidProof(format!(
        "the {FIELD} self-signature ({}) does not verify with its {} public key",
        algorithm_name(oid),
        key.key_type
    )))
}

/// The aws-lc-rs verifier for a signature algorithm on this key type, or a precise refusal.
fn verification_algorithm(
    oid: ObjectIdentifier,
    key_type: KeyType,
) -> Result<&'static dyn VerificationAlgorithm, ProofError> {
    use KeyType::*;
    let alg: &'static dyn VerificationAlgorithm = match (oid, key_type) {
        (SHA256_WITH_RSA, Rsa3072 | Rsa4096) => &sig::RSA_PKCS1_2048_8192_SHA256,
        (SHA384_WITH_RSA, Rsa3072 | Rsa4096) => &sig::RSA_PKCS1_2048_8192_SHA384,
        (SHA512_WITH_RSA, Rsa3072 | Rsa4096) => &sig::RSA_PKCS1_2048_8192_SHA512,
        (ECDSA_WITH_SHA256, EcdsaP256) => &sig::ECDSA_P256_SHA256_ASN1,
        (ECDSA_WITH_SHA384, EcdsaP256) => &sig::ECDSA_P256_SHA384_ASN1,
        (ECDSA_WITH_SHA512, EcdsaP256) => &sig::ECDSA_P256_SHA512_ASN1,
        (ECDSA_WITH_SHA256, EcdsaP384) => &sig::ECDSA_P384_SHA256_ASN1,
        (ECDSA_WITH_SHA384, EcdsaP384) => &sig::ECDSA_P384_SHA384_ASN1,
        (ECDSA_WITH_SHA512, EcdsaP384) => &sig::ECDSA_P384_SHA512_ASN1,
        (ECDSA_WITH_SHA256, EcdsaP521) => &sig::ECDSA_P521_SHA256_ASN1,
        (ECDSA_WITH_SHA384, EcdsaP521) => &sig::ECDSA_P521_SHA384_ASN1,
        (ECDSA_WITH_SHA512, EcdsaP521) => &sig::ECDSA_P521_SHA512_ASN1,
        (ED25519, Ed25519) => &sig::ED25519,
        // Pure ML-DSA, empty context (aws-lc-rs's only ML-DSA mode): what Go signs with.
        (OID_ML_DSA_44, MlDsa44) => &pq::ML_DSA_44,
        (OID_ML_DSA_65, MlDsa65) => &pq::ML_DSA_65,
        (OID_ML_DSA_87, MlDsa87) => &pq::ML_DSA_87,
        (
            SHA256_WITH_RSA | SHA384_WITH_RSA | SHA512_WITH_RSA | ECDSA_WITH_SHA256
            | ECDSA_WITH_SHA384 | ECDSA_WITH_SHA512 | ED25519 | OID_ML_DSA_44 | OID_ML_DSA_65
            | OID_ML_DSA_87,
            _,
        ) => {
            return Err(ProofError::InvalidProof(format!(
                "the {FIELD} is signed with {} but its public key is {key_type}",
                algorithm_name(oid)
            )))
        }
        _ => {
            return Err(ProofError::InvalidProof(format!(
                "the {FIELD} signature algorithm {} is not supported; expected \
                 sha256WithRSAEncryption, ecdsa-with-SHA256/384/512, Ed25519 or ML-DSA",
                algorithm_name(oid)
            )))
        }
    };
    Ok(alg)
}

/// RSA PKCS#1 v1.5 algorithms carry NULL (or, leniently as Go, nothing); ECDSA, Ed25519 and
/// ML-DSA carry no parameters (RFC 5758, RFC 8410, RFC 9881).
fn check_parameters(alg: &AlgorithmIdentifierRef<'_>) -> Result<(), ProofError> {
    let ok = match alg.oid {
        SHA256_WITH_RSA | SHA384_WITH_RSA | SHA512_WITH_RSA => alg
            .parameters
            .is_none_or(|p| p.tag() == Tag::Null && p.value().is_empty()),
        _ => alg.parameters.is_none(),
    };
    if ok {
        Ok(())
    } else {
        Err(malformed(format_args!(
            "unexpected parameters for signature algorithm {}",
            algorithm_name(alg.oid)
        )))
    }
}

fn algorithm_name(oid: ObjectIdentifier) -> String {
    let name = match oid {
        SHA256_WITH_RSA => "sha256WithRSAEncryption",
        SHA384_WITH_RSA => "sha384WithRSAEncryption",
        SHA512_WITH_RSA => "sha512WithRSAEncryption",
        SHA224_WITH_RSA => "sha224WithRSAEncryption",
        SHA1_WITH_RSA => "sha1WithRSAEncryption",
        MD5_WITH_RSA => "md5WithRSAEncryption",
        RSASSA_PSS => "RSASSA-PSS",
        ECDSA_WITH_SHA1 => "ecdsa-with-SHA1",
        ECDSA_WITH_SHA224 => "ecdsa-with-SHA224",
        ECDSA_WITH_SHA256 => "ecdsa-with-SHA256",
        ECDSA_WITH_SHA384 => "ecdsa-with-SHA384",
        ECDSA_WITH_SHA512 => "ecdsa-with-SHA512",
        ED25519 => "Ed25519",
        ED448 => "Ed448",
        OID_ML_DSA_44 => "ML-DSA-44",
        OID_ML_DSA_65 => "ML-DSA-65",
        OID_ML_DSA_87 => "ML-DSA-87",
        other => return format!("OID {other}"),
    };
    name.to_string()
}
