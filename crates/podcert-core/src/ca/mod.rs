//! CA material: the signing key, its certificate, intermediates and the trust anchors.
//!
//! A [`Ca`] is loaded and checked once; everything each issuance needs (the rcgen issuer with
//! its parsed key, the AKI, the chain tail in PEM) is precomputed so signing stays cheap.

mod cert;
pub mod generate;
mod key;
mod material;
mod ml_dsa;
mod signing_key;

use sha2::{Digest, Sha256};
use std::fmt;
use std::path::PathBuf;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub use generate::{generate_self_signed, self_signed_for_key, GeneratedCa};
pub use material::Material;
use signing_key::CaKey;
pub use signing_key::{KeyResolver, PemKeys, RemoteKey};

/// Key types a CA may have. Loaded RSA CA keys of any size aws-lc-rs accepts (2048 bits and
/// up) report `Rsa3072`: it stands for "an RSA CA", signing with sha256WithRSAEncryption.
/// The ML-DSA types sign with pure ML-DSA (FIPS 204, RFC 9881); only verifiers that know
/// ML-DSA can check what such a CA issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaKeyType {
    #[default]
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa3072,
    MlDsa44,
    MlDsa65,
    MlDsa87,
}

impl CaKeyType {
    pub const ALL: [CaKeyType; 7] = [
        CaKeyType::EcdsaP256,
        CaKeyType::EcdsaP384,
        CaKeyType::Ed25519,
        CaKeyType::Rsa3072,
        CaKeyType::MlDsa44,
        CaKeyType::MlDsa65,
        CaKeyType::MlDsa87,
    ];

    /// The signature algorithm a CA of this key type signs leaves with.
    pub fn signature_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            CaKeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            CaKeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            CaKeyType::Ed25519 => &rcgen::PKCS_ED25519,
            CaKeyType::Rsa3072 => &rcgen::PKCS_RSA_SHA256,
            CaKeyType::MlDsa44 => &rcgen::PKCS_ML_DSA_44,
            CaKeyType::MlDsa65 => &rcgen::PKCS_ML_DSA_65,
            CaKeyType::MlDsa87 => &rcgen::PKCS_ML_DSA_87,
        }
    }

    pub fn is_ml_dsa(self) -> bool {
        matches!(
            self,
            CaKeyType::MlDsa44 | CaKeyType::MlDsa65 | CaKeyType::MlDsa87
        )
    }

    /// The name flags use (`--ca-key-type ecdsa-p256`).
    pub fn name(self) -> &'static str {
        match self {
            CaKeyType::EcdsaP256 => "ecdsa-p256",
            CaKeyType::EcdsaP384 => "ecdsa-p384",
            CaKeyType::Ed25519 => "ed25519",
            CaKeyType::Rsa3072 => "rsa3072",
            CaKeyType::MlDsa44 => "mldsa44",
            CaKeyType::MlDsa65 => "mldsa65",
            CaKeyType::MlDsa87 => "mldsa87",
        }
    }
}

impl std::str::FromStr for CaKeyType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        CaKeyType::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = CaKeyType::ALL.iter().map(|k| k.name()).collect();
                format!("unknown CA key type {s:?} (one of {})", names.join(", "))
            })
    }
}

/// The DER SubjectPublicKeyInfo of a PEM private key a CA may have (ML-DSA included, which
/// rcgen cannot load): for checking that a credential bundle's key matches its leaf.
pub fn public_key_info_of_pem(key_pem: &str) -> Result<Vec<u8>, CaError> {
    use rcgen::PublicKeyData;
    let (key, _) = key::load_key(key_pem)?;
    Ok(key.subject_public_key_info())
}

fn rfc3339(t: &OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Why CA material was refused.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} holds no PEM CERTIFICATE block")]
    NoCertificate(String),
    #[error("invalid CA certificate: {0}")]
    BadCertificate(String),
    #[error(
        "the CA key file holds no PEM private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)"
    )]
    NoKey,
    #[error("the CA key is encrypted; provide it unencrypted (protect the file instead)")]
    EncryptedKey,
    #[error("unsupported CA key: {0}; use ECDSA P-256, P-384, Ed25519 or RSA")]
    UnsupportedKey(String),
    #[error("invalid CA key: {0}")]
    BadKey(String),
    #[error("the CA key does not match the CA certificate's public key")]
    KeyMismatch,
    #[error("the CA certificate is not a CA: {0}")]
    NotCa(String),
    #[error("the CA certificate is not valid before {}", rfc3339(.not_before))]
    NotYetValid { not_before: OffsetDateTime },
    #[error("the CA certificate expired at {}", rfc3339(.not_after))]
    Expired { not_after: OffsetDateTime },
    #[error("the CA certificate expires at {}, less than one hour from now", rfc3339(.not_after))]
    ExpiresTooSoon { not_after: OffsetDateTime },
    #[error("the CA certificate {0:?} has URI name constraints, which rustls-webpki rejects")]
    UriNameConstraints(String),
    #[error("the CA certificate's subject cannot be reproduced exactly as the leaves' issuer (multi-valued or repeated name attributes)")]
    UnrepresentableSubject,
    /// A remote key (a PKCS#11 token) could not be reached or refused to sign.
    #[error("the CA key is unavailable: {0}")]
    KeyUnavailable(String),
    #[error("could not generate the CA: {0}")]
    Generate(String),
    #[error("{} already exists; refusing to overwrite it", .0.display())]
    Exists(PathBuf),
    #[error("could not write {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What is wrong with a PEM text, without quoting it: the pem crate's messages can carry a
/// header line or a byte of the (possibly private key) body.
pub(crate) fn pem_problem(e: &pem::PemError) -> &'static str {
    match e {
        pem::PemError::MismatchedTags(..) => "its BEGIN and END lines do not match",
        pem::PemError::MalformedFraming => "its framing is malformed",
        pem::PemError::MissingBeginTag => "a BEGIN line is missing",
        pem::PemError::MissingEndTag => "an END line is missing",
        pem::PemError::MissingData => "a block has no data",
        pem::PemError::InvalidData(_) => "a block is not valid base64",
        pem::PemError::InvalidHeader(_) => "a block has an invalid header",
        pem::PemError::NotUtf8(_) => "it is not UTF-8",
    }
}

/// A loaded, checked CA able to sign leaves.
pub struct Ca {
    /// rcgen's issuer: parsed key pair, subject DN, key identifier (the AKI of every leaf).
    pub(crate) issuer: rcgen::Issuer<'static, CaKey>,
    key_type: CaKeyType,
    signing_cert_der: Vec<u8>,
    /// Certificates after the signing one that belong in issued chains (no self-signed root).
    intermediates_der: Vec<Vec<u8>>,
    trust_anchors_der: Vec<Vec<u8>>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    /// What follows the leaf in every issued chain, already PEM.
    pub(crate) chain_tail_pem: String,
    fingerprint_sha256: String,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Ca")
            .field("key_type", &self.key_type)
            .field("fingerprint_sha256", &self.fingerprint_sha256)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("intermediates", &self.intermediates_der.len())
            .field("trust_anchors", &self.trust_anchors_der.len())
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads a CA from PEM: `cert_pem` holds the signing certificate followed by any
    /// intermediates; `key_pem` is PKCS#8, SEC1 or PKCS#1; `trust_anchors_pem` names the
    /// root(s) to publish (default: the last certificate of the chain if self-signed, else the
    /// signing certificate). Refuses mismatched keys, non-CA certificates, expired CAs and CAs
    /// with less than one hour left at `now`.
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        trust_anchors_pem: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Ca, CaError> {
        Ca::load(cert_pem, key_pem, trust_anchors_pem, now, &PemKeys)
    }

    /// As [`Ca::from_pem`], but `key_text` may also be a reference `resolver` knows (a
    /// `pkcs11:` URI): that key signs every leaf, and the process never holds it.
    pub fn load(
        cert_pem: &str,
        key_text: &str,
        trust_anchors_pem: Option<&str>,
        now: OffsetDateTime,
        resolver: &dyn KeyResolver,
    ) -> Result<Ca, CaError> {
        let chain = cert::parse_pem_certs(cert_pem, "the CA certificate file")?;
        let key = match resolver.resolve(key_text) {
            Some(remote) => remote?,
            None => {
                let (key_pair, key_type) = key::load_key(key_text)?;
                return Ca::from_parts(chain, key_pair, key_type, trust_anchors_pem, now);
            }
        };
        Ca::from_parts_remote(chain, key, trust_anchors_pem, now)
    }

    /// A CA whose key is `key` (any [`rcgen::SigningKey`], e.g. a PKCS#11 token's), with the
    /// same checks as [`Ca::from_pem`]; the probe signature made here is the key's first.
    pub fn with_remote_key(
        cert_pem: &str,
        key: RemoteKey,
        trust_anchors_pem: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Ca, CaError> {
        let chain = cert::parse_pem_certs(cert_pem, "the CA certificate file")?;
        Ca::from_parts_remote(chain, key, trust_anchors_pem, now)
    }

    fn from_parts_remote(
        chain: Vec<Vec<u8>>,
        key: RemoteKey,
        trust_anchors_pem: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Ca, CaError> {
        let key_type = signing_key::remote_key_type(key.as_ref())?;
        Ca::from_parts(chain, CaKey::Remote(key), key_type, trust_anchors_pem, now)
    }

    fn from_parts(
        chain: Vec<Vec<u8>>,
        key_pair: CaKey,
        key_type: CaKeyType,
        trust_anchors_pem: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Ca, CaError> {
        use rcgen::PublicKeyData;
        let anchors_given = trust_anchors_pem
            .map(|p| cert::parse_pem_certs(p, "the trust anchors file"))
            .transpose()?;

        let parsed = chain
            .iter()
            .map(|der| cert::parse(der).map_err(CaError::BadCertificate))
            .collect::<Result<Vec<_>, _>>()?;
        let signing = &parsed[0];
        cert::check_is_ca(signing)?;
        cert::check_validity(signing, now)?;
        for c in &parsed {
            cert::check_no_uri_name_constraints(c)?;
        }
        for der in anchors_given.iter().flatten() {
            let c = cert::parse(der).map_err(CaError::BadCertificate)?;
            cert::check_no_uri_name_constraints(&c)?;
        }
        if cert::key_type(signing) != Some(key_type)
            || signing.public_key().subject_public_key.data.as_ref() != key_pair.der_bytes()
        {
            return Err(CaError::KeyMismatch);
        }

        let issuer = rcgen::Issuer::from_ca_cert_der(&chain[0].clone().into(), key_pair)
            .map_err(|_| CaError::UnrepresentableSubject)?;
        check_issuer_name_round_trips(&issuer, signing.subject())?;

        let signing_self_signed = cert::is_self_signed(signing);
        let intermediates_der: Vec<Vec<u8>> = chain[1..]
            .iter()
            .zip(&parsed[1..])
            .filter(|(_, c)| !cert::is_self_signed(c))
            .map(|(der, _)| der.clone())
            .collect();
        let trust_anchors_der = match anchors_given {
            Some(anchors) => anchors,
            None => {
                let last = parsed.len() - 1;
                if cert::is_self_signed(&parsed[last]) {
                    vec![chain[last].clone()]
                } else {
                    vec![chain[0].clone()]
                }
            }
        };
        let chain_tail_pem = if signing_self_signed {
            cert::to_pem(&intermediates_der)
        } else {
            cert::to_pem(std::iter::once(&chain[0]).chain(&intermediates_der))
        };

        Ok(Ca {
            key_type,
            not_before: cert::not_before(signing),
            not_after: cert::not_after(signing),
            fingerprint_sha256: cert::hex(&Sha256::digest(&chain[0])),
            signing_cert_der: chain[0].clone(),
            intermediates_der,
            trust_anchors_der,
            chain_tail_pem,
            issuer,
        })
    }

    /// The signing certificate's notBefore.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// The signing certificate's notAfter.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    pub fn key_type(&self) -> CaKeyType {
        self.key_type
    }

    /// Whether the key is held elsewhere (a token): signing may block on I/O.
    pub fn has_remote_key(&self) -> bool {
        matches!(self.issuer.key(), CaKey::Remote(_))
    }

    /// DER of the certificate whose key signs leaves.
    pub fn signing_cert_der(&self) -> &[u8] {
        &self.signing_cert_der
    }

    /// The trust anchors (roots) to publish, DER.
    pub fn trust_anchors_der(&self) -> &[Vec<u8>] {
        &self.trust_anchors_der
    }

    /// The trust anchors as PEM CERTIFICATE blocks.
    pub fn trust_anchors_pem(&self) -> String {
        cert::to_pem(&self.trust_anchors_der)
    }

    /// The intermediates given after the signing certificate (self-signed roots left out), PEM.
    pub fn intermediates_pem(&self) -> String {
        cert::to_pem(&self.intermediates_der)
    }

    /// SHA-256 of the signing certificate's DER, lowercase hex.
    pub fn fingerprint_sha256(&self) -> String {
        self.fingerprint_sha256.clone()
    }
}

/// A self-signed CA certificate as checked without its key.
pub(crate) struct InspectedCa {
    pub der: Vec<u8>,
    pub fingerprint_sha256: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Checks one self-signed CA certificate (a CA, valid at `now` for an hour more, no URI name
/// constraints) without its key.
pub(crate) fn inspect_self_signed(
    cert_pem: &str,
    now: OffsetDateTime,
) -> Result<InspectedCa, CaError> {
    let chain = cert::parse_pem_certs(cert_pem, "the CA certificate")?;
    let [der] = chain.as_slice() else {
        return Err(CaError::Invalid(
            "a generated CA is one self-signed certificate".into(),
        ));
    };
    let c = cert::parse(der).map_err(CaError::BadCertificate)?;
    cert::check_is_ca(&c)?;
    cert::check_validity(&c, now)?;
    cert::check_no_uri_name_constraints(&c)?;
    if !cert::is_self_signed(&c) {
        return Err(CaError::Invalid(
            "a generated CA certificate must be self-signed".into(),
        ));
    }
    Ok(InspectedCa {
        fingerprint_sha256: cert::hex(&Sha256::digest(der)),
        not_before: cert::not_before(&c),
        not_after: cert::not_after(&c),
        der: der.clone(),
    })
}

/// rcgen re-encodes the issuer name from its parsed form; chain building compares names byte
/// for byte, so sign one probe certificate and check its issuer equals the CA's subject.
fn check_issuer_name_round_trips(
    issuer: &rcgen::Issuer<'static, CaKey>,
    subject: &x509_parser::x509::X509Name<'_>,
) -> Result<(), CaError> {
    // rcgen (through yasna) panics on an attribute type OID that has no canonical encoding
    // (first arc above 2, second above 39 under arcs 0 and 1, or an arc beyond u64); such a
    // name can never be reproduced, so refuse it before rcgen sees it.
    if !cert::name_oids_encodable(subject) {
        return Err(CaError::UnrepresentableSubject);
    }
    let subject_raw = subject.as_raw();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&[1]));
    let probe = params
        .signed_by(issuer.key(), issuer)
        .map_err(|e| match issuer.key() {
            CaKey::Remote(_) => {
                CaError::KeyUnavailable(format!("the probe signature failed ({e})"))
            }
            CaKey::Local(_) | CaKey::MlDsa(_) => {
                CaError::BadKey(format!("signing with the CA key failed ({e})"))
            }
        })?;
    let probe = cert::parse(probe.der()).map_err(CaError::BadCertificate)?;
    if probe.issuer().as_raw() != subject_raw {
        return Err(CaError::UnrepresentableSubject);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_can_be_shared_across_threads() {
        // The controller signs from many tasks through an Arc<Ca>.
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Ca>();
    }
}
