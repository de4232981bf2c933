#!/usr/bin/env bash
# Conformance against real Kubernetes: builds k8s-harness (embedded etcd, kube-apiserver, the
# PCR cleaner and the kubelet's PodCertificate manager, from the Kubernetes Go modules) for each
# release, builds the signer and podcert-workload, and runs conformance/suite against each.
# The last line is the summary: `conformance: N passed, M failed (kube-apiserver v1.37.2, v1.35.4)`.
# Needs Go >= 1.26 and the Go module proxy (or a warm module cache). Environment:
#   RELEASES="1.37 1.35"  which releases to run; KEEP_LOGS=DIR keeps each run's logs in DIR/<release>.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
export GOTOOLCHAIN=local
RELEASES=${RELEASES:-"1.37 1.35"}
BIN=$ROOT/conformance/bin
mkdir -p "$BIN"

# CONFORMANCE_CARGO: how to build the signer, the workload and the emulator (for the difftest). .ci/run passes
# "cargo test --workspace --no-run", which its test run has already done: `cargo build -p` alone
# resolves features without the dev-dependencies and would rebuild many crates a second time.
${CONFORMANCE_CARGO:-cargo build -p podcert-signer -p podcert-workload -p podcert-testkit} ||
  { echo "conformance: 0 passed, 1 failed (cargo build failed)"; exit 1; }

# Starts the harness with no nodes, runs scripts/difftest.sh against it, stops it.
difftest_against() {
  local dir hpid rc=1
  dir=$(mktemp -d)
  "$1" -test.run '^TestHarness$' -test.timeout 0 --kubeconfig "$dir/real.kubeconfig" --nodes 0 \
    </dev/null >"$dir/harness.log" 2>&1 &
  hpid=$!
  for _ in $(seq 1 240); do
    grep -q '^ready ' "$dir/harness.log" 2>/dev/null && break
    kill -0 "$hpid" 2>/dev/null || break
    sleep 0.5
  done
  if grep -q '^ready ' "$dir/harness.log"; then
    DIFFTEST_SKIP_BUILD=1 bash scripts/difftest.sh "$dir/real.kubeconfig" >"$dir/difftest.log" 2>&1
    rc=$?
    tail -25 "$dir/difftest.log"
  else
    echo "difftest: the harness did not start:"; tail -20 "$dir/harness.log"
  fi
  kill -TERM "$hpid" 2>/dev/null; wait "$hpid" 2>/dev/null
  rm -rf "$dir"
  return "$rc"
}

passed=0 failed=0 versions=()
for r in $RELEASES; do
  case $r in
    1.37) modflags=(); tags=(); version=v1.37.2 ;;
    1.35) modflags=(-modfile=go.k8s135.mod); tags=(-tags k8s135); version=v1.35.4 ;;
    *) echo "unknown release $r"; exit 2 ;;
  esac
  versions+=("$version")
  # No -trimpath: StartTestServer locates its package directory through runtime.Caller.
  start=$(date +%s)
  if ! (cd conformance && go test -c "${modflags[@]}" "${tags[@]}" -o "$BIN/k8s-harness-$r" ./harness); then
    echo "harness $version: build failed"; failed=$((failed + 1)); continue
  fi
  echo "harness $version built in $(( $(date +%s) - start )) s ($(du -m "$BIN/k8s-harness-$r" | cut -f1) MB)"
  log=$(mktemp)
  start=$(date +%s)
  keep=()
  if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS/$r"; keep=(KEEP_LOGS="$KEEP_LOGS/$r"); fi
  # The suite always builds against go.mod (client-go 0.37 speaks both servers' APIs).
  (cd conformance && env "${keep[@]}" HARNESS_BIN="$BIN/k8s-harness-$r" \
      SIGNER_BIN="$ROOT/target/debug/podcert-signer" WORKLOAD_BIN="$ROOT/target/debug/podcert-workload" \
      REPO_ROOT="$ROOT" go test -count=1 -json -timeout 40m ./suite) > "$log" 2>&1
  # Every case is a subtest (Test/Case): count those.
  p=$(grep -c '"Action":"pass","Package":"[^"]*","Test":"[^"]*/' "$log")
  f=$(grep -c '"Action":"fail","Package":"[^"]*","Test":"[^"]*/' "$log")
  # A setup failure or a crash fails the package without failing any subtest.
  if grep -q '"Action":"fail","Package":"[^"]*","Elapsed"' "$log" && [ "$f" -eq 0 ]; then f=1; fi
  grep -o '"Action":"\(pass\|fail\|skip\)","Package":"[^"]*","Test":"[^"]*/[^"]*"' "$log" |
    sed 's/"Action":"\([a-z]*\)".*"Test":"\([^"]*\)"/  \1 \2/' | sed "s/^/$version /"
  if [ "$f" -gt 0 ]; then
    # The failing tests' output, for the CI log.
    grep '"Action":"output"' "$log" | grep -o '"Output":".*"' | sed 's/^"Output":"//; s/"$//; s/\\n$//; s/\\t/\t/g' |
      grep -E -- '--- FAIL|_test.go:[0-9]+:' | head -40
  fi
  echo "suite $version: $p passed, $f failed in $(( $(date +%s) - start )) s"
  # The emulator's differential test, against a fresh server of this release (the corpus
  # creates fixed names, so it needs one of its own). Counted as one case. DIFFTEST=0 skips it.
  if [ "$r" = 1.37 ] && [ "${DIFFTEST:-1}" = 1 ]; then
    start=$(date +%s)
    if difftest_against "$BIN/k8s-harness-$r"; then p=$((p + 1)); echo "  pass difftest"
    else f=$((f + 1)); echo "  fail difftest"; fi
    echo "difftest $version: $(( $(date +%s) - start )) s"
  fi
  passed=$((passed + p)); failed=$((failed + f))
  rm -f "$log"
done
list=$(IFS=,; echo "${versions[*]}")
list=${list//,/, }
echo "conformance: $passed passed, $failed failed (kube-apiserver $list)"
[ "$failed" -eq 0 ]
