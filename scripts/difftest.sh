#!/usr/bin/env bash
# Differential test of the kube-apiserver emulator: starts `podcert-testkit apiserver` (from
# target/debug, built if missing) and sends conformance/difftest/corpus.yaml to it and to the
# server of KUBECONFIG (a real kube-apiserver, e.g. from conformance's k8s-harness). Exits
# non-zero on a mismatch not listed in testkit/KNOWN_DIFFERENCES.md.
#
#   scripts/difftest.sh REAL_KUBECONFIG [difftest flags, e.g. -v or -only pcr-]
#   scripts/difftest.sh --self [flags]     # emulator against a second emulator (checks the runner)
#
# Env: KUBE_VERSION (emulator's --kube-version, default 1.37), TESTKIT (the binary).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if [ $# -lt 1 ]; then
  echo "usage: scripts/difftest.sh REAL_KUBECONFIG|--self [difftest flags]" >&2
  exit 2
fi
real="$1"
shift
testkit="${TESTKIT:-$root/target/debug/podcert-testkit}"
# Always build (a no-op when fresh): a stale emulator binary would compare old behaviour.
# DIFFTEST_SKIP_BUILD=1 when the caller has just built it (scripts/conformance.sh).
if [ -z "${TESTKIT:-}" ] && [ "${DIFFTEST_SKIP_BUILD:-0}" != 1 ]; then
  cargo build -q -p podcert-testkit
fi
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

start_emulator() { # $1: kubeconfig path
  "$testkit" apiserver --listen 127.0.0.1:0 --kubeconfig "$1" \
    --kube-version "${KUBE_VERSION:-1.37}" >"$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    [ -s "$1" ] && return 0
    sleep 0.1
  done
  echo "difftest.sh: the emulator did not write $1:" >&2
  cat "$1.log" >&2
  exit 2
}

start_emulator "$work/emulator.kubeconfig"
name_b=kube-apiserver
if [ "$real" = "--self" ]; then
  start_emulator "$work/emulator2.kubeconfig"
  real="$work/emulator2.kubeconfig"
  name_b=emulator2
fi
[ -r "$real" ] || { echo "difftest.sh: cannot read the kubeconfig $real" >&2; exit 2; }

bin="$work/difftest"
(cd conformance/difftest && go build -o "$bin" .)
"$bin" -a "$work/emulator.kubeconfig" -name-a emulator -b "$real" -name-b "$name_b" \
  -corpus conformance/difftest/corpus.yaml -root "$root" "$@"
