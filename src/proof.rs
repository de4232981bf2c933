//! Finding and checking the requester's key: pkix + proof of possession, or the stub PKCS#10.
//! (Interface fixed here; implementation owned by the proof task.)

use crate::api::Request;
use crate::key_type::KeyType;

/// The requester's public key, checked: its type is one the API allows and the requester
/// proved possession of it (or the stub CSR self-signature verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectKey {
    pub key_type: KeyType,
    /// DER SubjectPublicKeyInfo, exactly as it must appear in the leaf.
    pub spki_der: Vec<u8>,
}

/// Why a request's key was refused. Every variant maps to a Denied reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The key parsed but is of a type/size the API does not allow (RSA-2048, P-224, DSA...).
    #[error("unsupported key type: {0}")]
    UnsupportedKeyType(String),
    /// Neither carrier present, both present, or malformed DER.
    #[error("malformed key material: {0}")]
    Malformed(String),
    /// The proof of possession or the CSR self-signature does not verify.
    #[error("invalid proof of possession: {0}")]
    InvalidProof(String),
}

/// Extracts and checks the subject key of a request.
pub fn extract_subject_key(_req: &Request) -> Result<SubjectKey, ProofError> {
    Err(ProofError::Malformed("not implemented".into()))
}
