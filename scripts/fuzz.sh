#!/usr/bin/env bash
# Fuzzes the signer's input handling with libFuzzer on stable Rust: builds fuzz/ with the
# coverage instrumentation cargo-fuzz uses (no sanitizer, so no nightly needed), then runs each
# target for SECONDS (default 600) starting from the committed seeds in fuzz/corpus/<target>.
# New corpus entries go to a scratch directory; a crash leaves fuzz/artifacts/<target>/crash-*
# and fails the script: copy it into fuzz/regressions/<target>/ and `cargo test --test fuzz
# replay::` replays it from then on.
#
#   scripts/fuzz.sh [SECONDS]          all four targets
#   TARGETS=stub_csr scripts/fuzz.sh 60
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
per_target=${1:-600}
targets=${TARGETS:-decode_request key_proof stub_csr ca_material}
triple=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps these flags off build scripts and proc macros (they would not link).
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --locked --target "$triple" --bins
for t in $targets; do
  mkdir -p "artifacts/$t"
  scratch=$(mktemp -d)
  echo "== fuzz $t for ${per_target}s"
  "./target/$triple/release/$t" -max_total_time="$per_target" -max_len=16384 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 "$scratch" "corpus/$t"
  rm -rf "$scratch"
done
