//! Replays the fuzz corpus (fuzz/corpus/<target>/seed-*) and every crash the fuzzer found
//! (fuzz/regressions/<target>/*) through the fuzz targets' bodies: no input may panic, and the
//! valid seeds must get through, so the corpus keeps reaching the deep paths.

use std::path::{Path, PathBuf};

use crate::targets;

fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    out
}

/// Runs every seed and regression through `body`; returns the seed file names that got through.
fn replay(target: &str, body: fn(&[u8]) -> bool) -> Vec<String> {
    let seeds = inputs("corpus", target);
    assert!(!seeds.is_empty(), "no seeds for {target}: run fuzz/seed.py");
    for (path, data) in inputs("regressions", target) {
        let _ = body(&data);
        eprintln!("replayed regression {}", path.display());
    }
    seeds
        .into_iter()
        .filter(|(_, data)| body(data))
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn decode_request_corpus() {
    let ok = replay("decode_request", targets::decode_request);
    // Every vector is a well-formed object (denials happen after decoding).
    assert!(ok.iter().any(|n| n.contains("ED25519-stub-v1")), "{ok:?}");
    assert!(ok.len() >= 40, "only {} vectors decoded: {ok:?}", ok.len());
}

#[test]
fn key_proof_corpus() {
    let ok = replay("key_proof", targets::key_proof);
    assert!(
        ok.contains(&"seed-ED25519-pop-v1beta1".to_string()),
        "{ok:?}"
    );
    assert!(
        ok.contains(&"seed-ECDSAP256-pop-v1beta1".to_string()),
        "{ok:?}"
    );
    assert!(!ok.contains(&"seed-ED25519-pop-wrong-uid".to_string()));
}

#[test]
fn stub_csr_corpus() {
    let ok = replay("stub_csr", targets::stub_csr);
    assert!(ok.contains(&"seed-ED25519-stub-v1".to_string()), "{ok:?}");
    assert!(!ok.contains(&"seed-ED25519-stub-bad-signature".to_string()));
    // Kubernetes 1.38's ML-DSA stubs, and the forgeries among them.
    assert!(ok.contains(&"seed-MLDSA87-stub-v1".to_string()), "{ok:?}");
    assert!(!ok.contains(&"seed-MLDSA65-stub-signed-by-other-key".to_string()));
    assert!(!ok.contains(&"seed-MLDSA44-stub-claims-mldsa65".to_string()));
}

#[test]
fn ca_material_corpus() {
    let ok = replay("ca_material", targets::ca_material);
    assert_eq!(ok.len(), 4, "{ok:?}");
}

#[test]
fn truncated_and_garbage_inputs_are_refused() {
    assert!(!targets::key_proof(&[0x00]));
    assert!(!targets::key_proof(&targets::encode_key_proof(
        b"uid",
        b"\x30\x00",
        b""
    )));
    assert!(!targets::stub_csr(b""));
    assert!(!targets::ca_material(b"no separator"));
    assert!(!targets::decode_request(b"\xff\xfe{"));
}

/// Found by the `ca_material` fuzzer: a CA subject with an attribute type OID that has no
/// canonical DER encoding made rcgen panic while the loader checked the issuer name.
#[test]
fn a_ca_subject_with_an_unencodable_oid_is_refused_not_a_panic() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions/ca_material/crash-aa6499c53aaab5beb2752e52cde63932c08a32f7");
    let data = std::fs::read(path).unwrap();
    let at = data
        .windows(targets::CA_SEPARATOR.len())
        .position(|w| w == targets::CA_SEPARATOR)
        .unwrap();
    let cert = String::from_utf8_lossy(&data[..at]);
    let key = String::from_utf8_lossy(&data[at + targets::CA_SEPARATOR.len()..]);
    let err = podcert_core::ca::Ca::from_pem(&cert, &key, None, targets::fixed_now()).unwrap_err();
    assert!(
        matches!(err, podcert_core::ca::CaError::UnrepresentableSubject),
        "{err}"
    );
}
