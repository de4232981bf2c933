//! The fuzz targets' bodies without a fuzzing toolchain: the seed corpus and every recorded crash
//! replayed (`replay`), and seeded random mutations of the corpus (`smoke`). Needs none of
//! `tests/fixtures/`.

mod replay;
mod smoke;
/// The bodies of the fuzz targets, shared with `fuzz/fuzz_targets/*.rs`.
mod targets;
