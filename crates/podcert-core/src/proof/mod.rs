//! Finding and checking the requester's key: pkix + proof of possession, or the stub PKCS#10.
//!
//! Carrier rules mirror kube-apiserver: the kubernetes/api v1beta1 types say of
//! `pkixPublicKey`/`proofOfPossession` "If StubPKCS10Request is set, this field must be empty",
//! the pre-1.36 API requires both of them, and v1 has only the stub. So exactly one carrier
//! must be present: the stub alone, or pkix and proof together. Both carriers, neither, or half
//! of the pkix pair is [`ProofError::Malformed`] (a request the apiserver would not store).
//! An empty byte field counts as absent, as Go's `len(x) == 0` checks do.
//! (The 1.36+ `validation.go` itself was not reachable from the sources searched; the rule
//! above is the one its field documentation states.)

mod csr;
mod key;
mod pop;

use crate::key_type::KeyType;
use crate::request::Request;

/// Largest `spec.pkixPublicKey` accepted (apiserver limit, 10 KiB).
pub const MAX_PKIX_PUBLIC_KEY_BYTES: usize = 10 * 1024;
/// Largest `spec.proofOfPossession` accepted (apiserver limit, 10 KiB).
pub const MAX_PROOF_OF_POSSESSION_BYTES: usize = 10 * 1024;
/// Largest `spec.stubPKCS10Request` accepted. A kubelet stub with an RSA-4096 key is about
/// 1.2 KiB; 10 KiB, the same bound as the other key fields, leaves room for requested SANs.
pub const MAX_STUB_PKCS10_REQUEST_BYTES: usize = 10 * 1024;

/// The requester's public key, checked: its type is one the API allows and the requester
/// proved possession of it (or the stub CSR self-signature verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectKey {
    pub key_type: KeyType,
    /// DER SubjectPublicKeyInfo, exactly as it must appear in the leaf.
    pub spki_der: Vec<u8>,
}

/// Why a request's key was refused. Every variant maps to a Denied reason ([`Self::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The key parsed but is of a type/size the API does not allow (RSA-2048, P-224, DSA...).
    /// Denied reason `UnsupportedKeyType`; the message suggests supported types.
    #[error("unsupported key type: {0}")]
    UnsupportedKeyType(String),
    /// Neither carrier present, both present, oversize, or malformed DER.
    /// Denied reason `MalformedRequest`.
    #[error("malformed key material: {0}")]
    Malformed(String),
    /// The proof of possession or the CSR self-signature does not verify, or the CSR is signed
    /// with an algorithm that is not accepted. Denied reason `InvalidProof` (see `policy`).
    #[error("invalid proof of possession: {0}")]
    InvalidProof(String),
}

/// Extracts and checks the subject key of a request.
pub fn extract_subject_key(req: &Request) -> Result<SubjectKey, ProofError> {
    let stub = present(&req.stub_pkcs10_request);
    let pkix = present(&req.pkix_public_key);
    let proof = present(&req.proof_of_possession);

    match (stub, pkix, proof) {
        (Some(stub), None, None) => {
            check_size(
                stub,
                MAX_STUB_PKCS10_REQUEST_BYTES,
                "spec.stubPKCS10Request",
            )?;
            csr::extract(stub)
        }
        (None, Some(pkix), Some(proof)) => {
            check_size(pkix, MAX_PKIX_PUBLIC_KEY_BYTES, "spec.pkixPublicKey")?;
            check_size(
                proof,
                MAX_PROOF_OF_POSSESSION_BYTES,
                "spec.proofOfPossession",
            )?;
            let key = key::parse_spki(pkix, "spec.pkixPublicKey")?;
            pop::verify(&key, req.pod_uid.as_bytes(), proof)?;
            Ok(SubjectKey {
                key_type: key.key_type,
                spki_der: key.spki_der.to_vec(),
            })
        }
        (Some(_), _, _) => Err(ProofError::Malformed(
            "spec.stubPKCS10Request must not be combined with spec.pkixPublicKey or \
             spec.proofOfPossession"
                .into(),
        )),
        (None, Some(_), None) => Err(ProofError::Malformed(
            "spec.pkixPublicKey is set without spec.proofOfPossession".into(),
        )),
        (None, None, Some(_)) => Err(ProofError::Malformed(
            "spec.proofOfPossession is set without spec.pkixPublicKey".into(),
        )),
        (None, None, None) => Err(ProofError::Malformed(
            "the request carries no public key: neither spec.stubPKCS10Request nor \
             spec.pkixPublicKey with spec.proofOfPossession is set"
                .into(),
        )),
    }
}

/// An empty byte field counts as absent.
fn present(v: &Option<Vec<u8>>) -> Option<&[u8]> {
    v.as_deref().filter(|b| !b.is_empty())
}

fn check_size(bytes: &[u8], max: usize, field: &str) -> Result<(), ProofError> {
    if bytes.len() > max {
        return Err(ProofError::Malformed(format!(
            "{field} is {} bytes; at most {max} are allowed",
            bytes.len()
        )));
    }
    Ok(())
}
