//! The short fuzzing run of every CI build: the fuzz targets' bodies over seeded random
//! mutations of their corpus (bit flips, byte edits, truncation, splices between seeds), a few
//! thousand inputs per target. No coverage guidance (that is libFuzzer's job, `scripts/fuzz.sh`,
//! whose instrumented build does not fit in CI's time), but it runs the same code on inputs
//! nobody wrote by hand, every time. A panic fails the test and prints the seed and round, so
//! the input can be rebuilt and added to fuzz/regressions/.

use std::path::Path;

use crate::targets;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Inputs per target; the RNG seed is fixed so a failure reproduces.
const ROUNDS: usize = 20_000;
const SEED: u64 = 0x5eed_f022;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds for {target}");
    out
}

/// One random edit of `data` (possibly with a piece of `other`).
fn mutate(rng: &mut StdRng, data: &mut Vec<u8>, other: &[u8]) {
    const INTERESTING: [u8; 8] = [0x00, 0xff, 0x7f, 0x80, 0x30, 0x02, b'"', b'\n'];
    let len = data.len();
    match rng.gen_range(0..6) {
        0 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] ^= 1 << rng.gen_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] = INTERESTING[rng.gen_range(0..INTERESTING.len())];
        }
        2 => {
            let i = rng.gen_range(0..=len);
            data.insert(i, rng.gen());
        }
        3 if len > 0 => {
            let i = rng.gen_range(0..len);
            let n = rng.gen_range(1..=(len - i).min(16));
            data.drain(i..i + n);
        }
        4 if len > 0 => data.truncate(rng.gen_range(0..len)),
        _ if !other.is_empty() => {
            let i = rng.gen_range(0..=len);
            let a = rng.gen_range(0..other.len());
            let b = rng.gen_range(a..=other.len().min(a + 64));
            data.splice(i..i, other[a..b].iter().copied());
        }
        _ => data.push(rng.gen()),
    }
}

fn smoke(target: &str, body: fn(&[u8]) -> bool) {
    let seeds = corpus(target);
    let mut rng = StdRng::seed_from_u64(SEED ^ target.len() as u64);
    let mut through = 0usize;
    for round in 0..ROUNDS {
        let mut input = seeds[rng.gen_range(0..seeds.len())].clone();
        let other = &seeds[rng.gen_range(0..seeds.len())];
        for _ in 0..rng.gen_range(1..=4) {
            mutate(&mut rng, &mut input, other);
        }
        let ok = std::panic::catch_unwind(|| body(&input));
        match ok {
            Ok(true) => through += 1,
            Ok(false) => {}
            Err(_) => panic!(
                "{target}: panic at round {round} (seed {SEED:#x}); input ({} bytes): {:?}",
                input.len(),
                String::from_utf8_lossy(&input)
            ),
        }
    }
    eprintln!("{target}: {ROUNDS} mutated inputs, {through} accepted, no panic");
}

#[test]
fn decode_request_survives_mutations() {
    smoke("decode_request", targets::decode_request);
}

#[test]
fn key_proof_survives_mutations() {
    smoke("key_proof", targets::key_proof);
}

#[test]
fn stub_csr_survives_mutations() {
    smoke("stub_csr", targets::stub_csr);
}

#[test]
fn ca_material_survives_mutations() {
    smoke("ca_material", targets::ca_material);
}
