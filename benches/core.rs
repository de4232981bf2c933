//! Micro-benchmarks of the signing core, per subject key type and per CA key type.
//! `cargo bench -p podcert-signer --bench core` (add `-- process/ED25519` to filter).
//!
//! - `process/<key>`: one request through `signer::process` from its JSON (decode, proof,
//!   policy, issue, status encoding), P-256 CA;
//! - `issue_leaf/<key>`: bare leaf issuance with the same CA and profile (the ceiling);
//! - `decode/<key>`, `proof/<key>`: the two pre-issuance stages alone (proof includes decode);
//! - `ca/<ca key>`: `process` of an Ed25519 request under each CA key type.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use podcert_core::ca::CaKeyType;
use podcert_testkit::bench::core_rate::Fixture;
use podcert_testkit::kubelet::KeyType;

fn per_key_type(c: &mut Criterion) {
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(1));
    for kt in KeyType::ALL {
        let f = Fixture::new(kt, CaKeyType::EcdsaP256, 64).expect("bench fixture");
        let name = kt.as_str();
        let mut i = 0usize;
        let mut next = move || {
            i = i.wrapping_add(1);
            i
        };
        g.bench_function(format!("process/{name}"), |b| {
            b.iter(|| f.core_once(next()).expect("issued"))
        });
        g.bench_function(format!("issue_leaf/{name}"), |b| {
            b.iter(|| f.raw_once(next()).expect("issued"))
        });
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| f.decode_once(next()).expect("decoded"))
        });
        g.bench_function(format!("proof/{name}"), |b| {
            b.iter(|| f.proof_once(next()).expect("verified"))
        });
    }
    g.finish();
}

fn per_ca_key_type(c: &mut Criterion) {
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(1));
    for (name, ca) in [
        ("ecdsa-p256", CaKeyType::EcdsaP256),
        ("ecdsa-p384", CaKeyType::EcdsaP384),
        ("ed25519", CaKeyType::Ed25519),
        ("rsa3072", CaKeyType::Rsa3072),
    ] {
        let f = Fixture::new(KeyType::Ed25519, ca, 64).expect("bench fixture");
        let mut i = 0usize;
        g.bench_function(format!("ca/{name}"), |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                f.core_once(i).expect("issued")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, per_key_type, per_ca_key_type);
criterion_main!(benches);
