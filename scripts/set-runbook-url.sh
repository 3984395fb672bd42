#!/usr/bin/env bash
# Points every alert's runbook_url at another copy of docs/runbooks.md, for
# a fork: the rules, their promtool tests and the generated Kubernetes
# PrometheusRule. Alert links must be absolute to work in a page or a ticket.
#
# Usage: scripts/set-runbook-url.sh BASE_URL
#   e.g. scripts/set-runbook-url.sh https://github.com/me/my-service/blob/main/docs/runbooks.md
# Each alert's link becomes BASE_URL#<its name in lower case>.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

base="${1:-}"
[[ "$base" =~ ^https?://[^[:space:]\#\'\"]+$ ]] ||
  die "BASE_URL must be an absolute http(s) URL without a #fragment, got '$base'"
files=(monitoring/prometheus/rules/*.yml monitoring/prometheus/tests/*.yml)
step "runbook_url -> $base#<alert> in ${#files[@]} files"
for file in "${files[@]}"; do
  before="$(grep -c 'runbook_url: ' "$file" || true)"
  BASE="$base" perl -pi -e 's{^(\s*runbook_url: )\S+#([a-z0-9-]+)$}{$1$ENV{BASE}#$2}' "$file"
  info "$file: $before link(s)"
done
scripts/ci/gen-prometheusrule.sh
info "check with: scripts/ci/check-monitoring.sh"
