//! The bodies of the fuzz targets. `fuzz/fuzz_targets/*.rs` include this file, and
//! `tests/fuzz/replay.rs` runs the same bodies over the seed corpus and every crash found, so a
//! regression is caught by `cargo test` without a fuzzing toolchain.
//!
//! Each body returns whether the input got through (decoded, key accepted, CA loaded); the
//! fuzzer ignores it, the replay test checks it on the seeds.
#![allow(dead_code)]

use podcert_core::ca::Ca;
use podcert_core::proof;
use podcert_core::request::{wire, ApiVersion, Request};
use time::OffsetDateTime;

/// Separates the certificate PEM from the key PEM in `ca_material` inputs.
pub const CA_SEPARATOR: &[u8] = b"\n----8<----\n";

/// A fixed clock, so a crash replays the same way whatever the date.
pub fn fixed_now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A whole request document (JSON or YAML): decode it, then check its key.
pub fn decode_request(data: &[u8]) -> bool {
    match wire::decode(data) {
        Ok(obj) => {
            let _ = obj.generation();
            let _ = proof::extract_subject_key(&obj.request);
            true
        }
        Err(_) => false,
    }
}

fn request(pod_uid: String) -> Request {
    Request {
        api_version: ApiVersion::V1,
        name: "req".into(),
        namespace: "ns".into(),
        uid: "00000000-0000-4000-8000-000000000000".into(),
        resource_version: None,
        creation_timestamp: None,
        signer_name: "fuzz.podcert.test/spiffe".into(),
        pod_name: "pod".into(),
        pod_uid,
        service_account_name: "sa".into(),
        service_account_uid: "00000000-0000-4000-8000-000000000001".into(),
        node_name: "node".into(),
        node_uid: "00000000-0000-4000-8000-000000000002".into(),
        max_expiration_seconds: 86400,
        pkix_public_key: None,
        proof_of_possession: None,
        stub_pkcs10_request: None,
        unverified_user_annotations: Default::default(),
        terminal: None,
    }
}

/// `len(uid) u16 BE | uid | len(pkix) u16 BE | pkix | proof`: a public key and its proof of
/// possession over the pod UID.
pub fn key_proof(data: &[u8]) -> bool {
    let Some((uid, rest)) = take_prefixed(data) else {
        return false;
    };
    let Some((pkix, proof_bytes)) = take_prefixed(rest) else {
        return false;
    };
    let mut req = request(String::from_utf8_lossy(uid).into_owned());
    req.pkix_public_key = Some(pkix.to_vec());
    req.proof_of_possession = Some(proof_bytes.to_vec());
    proof::extract_subject_key(&req).is_ok()
}

/// The encoding `key_proof` reads.
pub fn encode_key_proof(uid: &[u8], pkix: &[u8], proof_bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in [uid, pkix] {
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out.extend_from_slice(proof_bytes);
    out
}

fn take_prefixed(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// A stub PKCS#10 request (DER), as 1.36+ kubelets send.
pub fn stub_csr(data: &[u8]) -> bool {
    let mut req = request("00000000-0000-4000-8000-000000000003".into());
    req.stub_pkcs10_request = Some(data.to_vec());
    proof::extract_subject_key(&req).is_ok()
}

/// CA files: certificate PEM, [`CA_SEPARATOR`], key PEM.
pub fn ca_material(data: &[u8]) -> bool {
    let Some(at) = data
        .windows(CA_SEPARATOR.len())
        .position(|w| w == CA_SEPARATOR)
    else {
        return false;
    };
    let cert = String::from_utf8_lossy(&data[..at]);
    let key = String::from_utf8_lossy(&data[at + CA_SEPARATOR.len()..]);
    Ca::from_pem(&cert, &key, None, fixed_now()).is_ok()
}
