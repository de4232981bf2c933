//! A fresh self-signed CA (`podcert-signer ca init`, `--ca-bootstrap`, rotation).

use super::{CaError, CaKeyType, RemoteKey};
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    RsaKeySize, SerialNumber, SigningKey,
};
use time::{Duration, OffsetDateTime};

/// A generated CA: certificate and PKCS#8 key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedCa {
    pub cert_pem: String,
    /// PKCS#8 `PRIVATE KEY`.
    pub key_pem: String,
}

impl std::fmt::Debug for GeneratedCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedCa")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// Generates a self-signed CA valid from `now - 60 s` until `now + validity`: CA:TRUE, key
/// usage keyCertSign + cRLSign (critical), SKI, random serial, no name constraints (rustls-webpki
/// would reject URI ones). RSA keys are 3072 bits.
pub fn generate_self_signed(
    key_type: CaKeyType,
    trust_domain: Option<&str>,
    validity: Duration,
    now: OffsetDateTime,
) -> Result<GeneratedCa, CaError> {
    let alg = key_type.signature_algorithm();
    let key_pair = match key_type {
        CaKeyType::Rsa3072 => KeyPair::generate_rsa_for(alg, RsaKeySize::_3072),
        _ => KeyPair::generate_for(alg),
    }
    .map_err(|e| CaError::Generate(format!("key generation failed ({e})")))?;

    let cert_pem = self_signed_pem(&key_pair, trust_domain, validity, now)?;
    // aws-lc-rs serialises every generated key as PKCS#8 (RSA included).
    let key_pem = pem::encode_config(
        &pem::Pem::new("PRIVATE KEY", key_pair.serialize_der()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    Ok(GeneratedCa { cert_pem, key_pem })
}

/// A self-signed CA certificate, PEM, for a key held elsewhere (a PKCS#11 token: `ca init
/// --ca-key pkcs11:...`); the same profile as [`generate_self_signed`].
pub fn self_signed_for_key(
    key: &RemoteKey,
    trust_domain: Option<&str>,
    validity: Duration,
    now: OffsetDateTime,
) -> Result<String, CaError> {
    super::signing_key::remote_key_type(key.as_ref())?;
    self_signed_pem(
        &super::signing_key::CaKey::Remote(key.clone()),
        trust_domain,
        validity,
        now,
    )
}

fn self_signed_pem(
    key: &impl SigningKey,
    trust_domain: Option<&str>,
    validity: Duration,
    now: OffsetDateTime,
) -> Result<String, CaError> {
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let mut params = CertificateParams::default();
    let serial = random_serial_bytes();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "podcert-signer");
    // A per-CA suffix (the serial's first 32 bits): during a rotation two CAs of one trust
    // domain are published together, and verifiers and operators must tell them apart by name.
    let id: String = serial[..4].iter().map(|b| format!("{b:02x}")).collect();
    dn.push(
        DnType::CommonName,
        match trust_domain {
            Some(td) => format!("podcert-signer CA {td} {id}"),
            None => format!("podcert-signer CA {id}"),
        },
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - Duration::seconds(60);
    params.not_after = now + validity;
    params.serial_number = Some(SerialNumber::from_slice(&serial));

    let cert = params
        .self_signed(key)
        .map_err(|e| CaError::Generate(format!("self-signing failed ({e})")))?;
    Ok(cert.pem())
}

/// 128 random bits as a positive serial; the first byte is never zero so the serial keeps
/// its full 16-byte width.
pub(crate) fn random_serial_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    if bytes[0] == 0 {
        bytes[0] = 1;
    }
    bytes
}
