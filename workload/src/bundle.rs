//! Parsing and checking the two projected files: the kubelet's credential bundle (one PKCS#8
//! `PRIVATE KEY` block, then the chain, leaf first) and the trust bundle (CA certificates).

use crate::identity::{spiffe_id_of_cert, IdentityError, SpiffeId};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, TrustAnchor};
use rustls::sign::CertifiedKey;
use std::fmt;
use std::sync::Arc;
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("the file is not valid PEM: {0}")]
    Pem(String),
    #[error("the file is not valid PEM: line {0} is outside any block (half-written file?)")]
    StrayText(usize),
    #[error("the file is not valid PEM: the last block has no END line (half-written file?)")]
    Truncated,
    #[error("the credential bundle must start with a PRIVATE KEY block, found {0}")]
    KeyFirst(String),
    #[error("the credential bundle has a second private key block (block {0})")]
    ExtraKey(usize),
    #[error("block {index} is {tag}, expected CERTIFICATE")]
    UnexpectedBlock { index: usize, tag: String },
    #[error("the file holds no certificate")]
    NoCertificate,
    #[error("certificate {index} cannot be parsed: {reason}")]
    BadCertificate { index: usize, reason: String },
    #[error("the private key is unusable: {0}")]
    BadKey(String),
    #[error("the private key does not match the leaf certificate")]
    KeyMismatch,
    #[error("the leaf certificate has no usable SPIFFE ID: {0}")]
    Identity(#[from] IdentityError),
    #[error("trust bundle certificate {index} is not a usable trust anchor: {reason}")]
    BadAnchor { index: usize, reason: String },
}

/// A checked credential bundle: key and chain ready for rustls, and what it identifies.
#[derive(Clone)]
pub struct Credential {
    pub certified_key: Arc<CertifiedKey>,
    pub spiffe_id: SpiffeId,
    /// Leaf serial number, lowercase hex without leading zero bytes.
    pub serial_hex: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Credential")
            .field("spiffe_id", &self.spiffe_id)
            .field("serial_hex", &self.serial_hex)
            .field("chain_len", &self.certified_key.cert.len())
            .finish_non_exhaustive()
    }
}

/// Parses a credential bundle exactly as the kubelet writes it, and checks that the key
/// matches the leaf and the leaf carries one SPIFFE ID. The chain itself is verified by peers.
pub fn parse_credential_bundle(
    pem_bytes: &[u8],
    provider: &CryptoProvider,
) -> Result<Credential, BundleError> {
    let mut blocks = strict_pem(pem_bytes)?.into_iter();
    let key_block = blocks
        .next()
        .ok_or(BundleError::KeyFirst("nothing".into()))?;
    if key_block.tag() != "PRIVATE KEY" {
        return Err(BundleError::KeyFirst(key_block.tag().to_string()));
    }
    let mut chain = Vec::new();
    for (i, block) in blocks.enumerate() {
        let index = i + 1;
        if block.tag().contains("PRIVATE KEY") {
            return Err(BundleError::ExtraKey(index));
        }
        chain.push(cert_block(block, index)?);
    }
    let leaf = chain.first().ok_or(BundleError::NoCertificate)?;
    let spiffe_id = spiffe_id_of_cert(leaf)?;
    let serial_hex = serial_of(leaf)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_block.into_contents()));
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| BundleError::BadKey(e.to_string()))?;
    let certified_key = CertifiedKey::new(chain, signing_key);
    // Every provider key type we load (ECDSA, Ed25519, RSA) exposes its SPKI, so "unknown"
    // consistency is an error too: a mismatched pair would only fail at handshake time.
    certified_key
        .keys_match()
        .map_err(|_| BundleError::KeyMismatch)?;
    Ok(Credential {
        certified_key: Arc::new(certified_key),
        spiffe_id,
        serial_hex,
    })
}

/// The CA certificates peers must chain to.
#[derive(Debug, Clone)]
pub struct TrustBundle {
    pub anchors: Arc<Vec<TrustAnchor<'static>>>,
}

/// Parses a trust bundle: one or more CERTIFICATE blocks, each a usable trust anchor.
pub fn parse_trust_bundle(pem_bytes: &[u8]) -> Result<TrustBundle, BundleError> {
    let blocks = strict_pem(pem_bytes)?;
    if blocks.is_empty() {
        return Err(BundleError::NoCertificate);
    }
    let anchors = blocks
        .into_iter()
        .enumerate()
        .map(|(index, block)| {
            let der = cert_block(block, index)?;
            webpki::anchor_from_trusted_cert(&der)
                .map(|a| a.to_owned())
                .map_err(|e| BundleError::BadAnchor {
                    index,
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TrustBundle {
        anchors: Arc::new(anchors),
    })
}

/// PEM blocks with nothing but blank lines between them. `pem::parse_many` skips text it
/// does not recognise, which would let a file cut mid-block pass as a shorter bundle.
fn strict_pem(bytes: &[u8]) -> Result<Vec<pem::Pem>, BundleError> {
    let text = std::str::from_utf8(bytes).map_err(|_| BundleError::Pem("not UTF-8".into()))?;
    let mut in_block = false;
    let mut begins = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if in_block {
            in_block = !line.starts_with("-----END ");
        } else if line.starts_with("-----BEGIN ") {
            in_block = true;
            begins += 1;
        } else if !line.is_empty() {
            return Err(BundleError::StrayText(i + 1));
        }
    }
    if in_block {
        return Err(BundleError::Truncated);
    }
    let blocks = pem::parse_many(bytes).map_err(|e| BundleError::Pem(e.to_string()))?;
    if blocks.len() != begins {
        return Err(BundleError::Pem(format!(
            "{begins} BEGIN lines but {} well-formed blocks",
            blocks.len()
        )));
    }
    Ok(blocks)
}

/// A CERTIFICATE block that parses as X.509 (so a truncated file is refused here, not later).
fn cert_block(block: pem::Pem, index: usize) -> Result<CertificateDer<'static>, BundleError> {
    if block.tag() != "CERTIFICATE" {
        return Err(BundleError::UnexpectedBlock {
            index,
            tag: block.tag().to_string(),
        });
    }
    let der = block.into_contents();
    match X509Certificate::from_der(&der) {
        Ok(([], _)) => Ok(CertificateDer::from(der)),
        Ok(_) => Err(BundleError::BadCertificate {
            index,
            reason: "trailing data after the certificate".into(),
        }),
        Err(e) => Err(BundleError::BadCertificate {
            index,
            reason: e.to_string(),
        }),
    }
}

/// The serial number of a certificate, lowercase hex (as `openssl x509 -serial`, lowercased).
pub fn serial_of(der: &[u8]) -> Result<String, BundleError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| BundleError::BadCertificate {
        index: 0,
        reason: e.to_string(),
    })?;
    Ok(cert
        .raw_serial()
        .iter()
        .skip_while(|b| **b == 0)
        .map(|b| format!("{b:02x}"))
        .collect())
}
