#!/usr/bin/env bash
# Chart and demo checks, no cluster needed:
#   - renders charts/podcert-signer with helm-python-sdk (the Helm v4 library, no helm binary)
#     for the default values and each CA mode / ServiceMonitor / NetworkPolicy / crdSigners variant;
#   - helm lint --strict; values.schema.json refuses unknown keys and wrong types;
#   - every rendered manifest, the chart's crds/ and demo/manifests validated strictly against
#     the Kubernetes 1.34-1.37 schemas (kubernetes-validate); ServiceMonitor (a CRD) is
#     shape-checked instead;
#   - restricted Pod Security, RBAC limits, probes, replicas, PDB, and the ValidatingAdmissionPolicy
#     (its CEL compiled and evaluated with cel-python) (scripts/test_chart.py);
#   - charts/podcert-signer/rendered/rbac.yaml, rendered/rbac-crd.yaml and crds/ match a fresh
#     render (and the repository's crds/);
#   - bash -n and shellcheck on the shell scripts.
#
# Usage: scripts/check-chart.sh            run the checks
#        scripts/check-chart.sh --update   rewrite rendered/rbac*.yaml and the chart's crds/
# The Python tools live in a cached venv ($PODCERT_CHART_VENV, default ~/.cache/...).
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_PYTHON_SDK_VERSION=0.2.2
KUBERNETES_VALIDATE_VERSION=1.37.0
# cel-python compiles and evaluates the ValidatingAdmissionPolicy's CEL (scripts/test_chart.py).
CEL_PYTHON_VERSION=0.5.0
venv="${PODCERT_CHART_VENV:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/podcert-chart-venv-${HELM_PYTHON_SDK_VERSION}-${KUBERNETES_VALIDATE_VERSION}-cel${CEL_PYTHON_VERSION}}"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import helm_python, kubernetes_validate, celpy' 2>/dev/null; then
  echo "chart checks: installing helm-python-sdk==$HELM_PYTHON_SDK_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION cel-python==$CEL_PYTHON_VERSION into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "helm-python-sdk==$HELM_PYTHON_SDK_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    "cel-python==$CEL_PYTHON_VERSION"
fi
py="$venv/bin/python"

if [ "${1:-}" = "--update" ]; then
  exec "$py" scripts/test_chart.py --update
fi

echo "chart checks: helm $("$py" -c 'import helm_python as h; print(h.helm_sdk_version())'), kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
"$py" scripts/test_chart.py

shopt -s nullglob
shell_scripts=(scripts/*.sh demo/*.sh)
for f in "${shell_scripts[@]}"; do
  [ -e "$f" ] || continue
  bash -n "$f"
done
if ! command -v shellcheck >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq >/dev/null && apt-get install -y -qq shellcheck >/dev/null
fi
if command -v shellcheck >/dev/null 2>&1; then
  shellcheck "${shell_scripts[@]}"
  echo "chart checks: bash -n and shellcheck clean on ${shell_scripts[*]}"
else
  echo "chart checks: shellcheck not installed; only bash -n ran" >&2
  exit 1
fi
