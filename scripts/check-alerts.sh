#!/usr/bin/env bash
# The chart's alerts (charts/podcert-signer/files/alerts.rules.yaml):
#   - promtool check rules (syntax, PromQL, templates);
#   - promtool test rules testdata/alerts/alerts.test.yaml (a firing and a quiet case per alert);
#   - every alert has a unit test there and an entry in docs/runbook.md;
#   - the dashboard (files/dashboard.json) is JSON.
# That every metric they use is exported is asserted by tests/controller/check.rs against a real /metrics.
# Needs promtool (Debian: apt-get install prometheus; .ci/run installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

rules=charts/podcert-signer/files/alerts.rules.yaml
tests=testdata/alerts/alerts.test.yaml
runbook=docs/runbook.md

promtool --version 2>&1 | head -1
promtool check rules "$rules"
promtool test rules "$tests"

alerts=$(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\) *$/\1/p' "$rules")
[ -n "$alerts" ] || { echo "check-alerts: no alerts found in $rules" >&2; exit 1; }
missing=0
for a in $alerts; do
  if ! grep -Eq "^ *alertname: *$a *$" "$tests"; then
    echo "check-alerts: alert $a has no unit test in $tests" >&2; missing=1
  fi
  if ! grep -q "^## $a\$" "$runbook"; then
    echo "check-alerts: alert $a has no runbook entry (## $a) in $runbook" >&2; missing=1
  fi
  anchor=$(printf '%s' "$a" | tr '[:upper:]' '[:lower:]')
  if ! grep -q "runbook_url: RUNBOOK_URL#$anchor\$" "$rules"; then
    echo "check-alerts: alert $a's runbook_url is not RUNBOOK_URL#$anchor" >&2; missing=1
  fi
done
[ "$missing" = 0 ]
python3 -m json.tool charts/podcert-signer/files/dashboard.json >/dev/null
echo "check-alerts: $(echo "$alerts" | wc -l) alerts checked, tested and in the runbook; dashboard JSON parses"
