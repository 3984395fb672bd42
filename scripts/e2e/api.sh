#!/usr/bin/env bash
# The API from the outside, against a running pulse binary:
#   schemathesis  requests generated from GET /openapi.json, every answer
#                 checked against it (tests/schemathesis.toml bounds it and
#                 names the checks the fault routes are exempt from, and
#                 why), with a real PostgreSQL behind /notes
#   http-lint     REDbot on every GET route: no BAD or WARN note
#                 (tests/http_lint.py)
#   otlp          span export to a receiver that decodes every batch with
#                 opentelemetry-proto (tests/otlp_export.py)
#
# Usage: scripts/e2e/api.sh schemathesis|http-lint|otlp [BINARY]
#   BINARY  default dist/pulse-x86_64-unknown-linux-musl
# The Python tools go into virtual environments of their own (venv_tool).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

check="${1:-}"
binary="${2:-dist/pulse-x86_64-unknown-linux-musl}"
[ -x "$binary" ] || die "$binary is not an executable; build it with scripts/build/static.sh"
work="$(mktemp -d)"
trap 'stop_pulse >/dev/null 2>&1 || true; stop_postgres; rm -rf "$work"' EXIT

case "$check" in
  schemathesis)
    venv_tool schemathesis 'schemathesis>=4.1,<5'
    # Every route, /notes included: with a real PostgreSQL behind it.
    step "PostgreSQL for the /notes routes"
    start_postgres
    start_pulse "$binary" "$work/pulse.log" PULSE_FAULT_INJECTION=true PULSE_DATABASE_URL="$PG_URL"
    wait_http "$PULSE_URL/readyz" 30 || { cat "$work/pulse.log"; die "pulse never became ready"; }
    step "st run $PULSE_URL/openapi.json ($(st --version 2>/dev/null))"
    code=0
    st --config-file tests/schemathesis.toml run --no-color "$PULSE_URL/openapi.json" >"$work/st.log" 2>&1 || code=$?
    stop_pulse
    if [ "$code" -ne 0 ]; then
      cat "$work/st.log"
      die "schemathesis found problems (exit $code)"
    fi
    sed -n '/^API Operations:/,$p' "$work/st.log" | sed 's/^/    /'
    ;;
  http-lint)
    venv_tool redbot 'redbot>=2,<3'
    start_pulse "$binary" "$work/pulse.log" PULSE_FAULT_INJECTION=true
    step "REDbot on every GET route of $PULSE_URL"
    python3 tests/http_lint.py "$PULSE_URL"
    stop_pulse
    ;;
  otlp)
    venv_tool otlp 'opentelemetry-proto>=1.27,<2'
    step "span export to a local OTLP receiver (opentelemetry-proto decodes every batch)"
    python tests/otlp_export.py "$binary"
    ;;
  *) die "usage: scripts/e2e/api.sh schemathesis|http-lint|otlp [BINARY]" ;;
esac
