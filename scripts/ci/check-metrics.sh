#!/usr/bin/env bash
# Lints a live pulse's /metrics with `promtool check metrics`: zero findings.
#
# Usage: scripts/ci/check-metrics.sh [PULSE_BINARY]
# It starts pulse (fault injection on, a metrics token from a file and a
# throwaway PostgreSQL, so every kind of series exists, the secret reloads'
# and the database's included), sends traffic that creates each label
# combination, then lints the scrape.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"

command -v promtool >/dev/null || apt_install prometheus
binary="${1:-$(static_binary "$MUSL_TARGET")}"
work="$(mktemp -d)"
trap 'stop_pulse || true; stop_postgres; rm -rf "$work"' EXIT

step "starting pulse ($binary) with fault injection on, a metrics token and PostgreSQL"
start_postgres
token="$(random_hex 16)"
printf '%s\n' "$token" >"$work/metrics-token"
start_pulse "$binary" "$work/pulse.log" PULSE_FAULT_INJECTION=true PULSE_DRAIN_DELAY=0 \
  PULSE_METRICS_TOKEN_FILE="$work/metrics-token" PULSE_DATABASE_URL="$PG_URL"
wait_http "$PULSE_URL/readyz" 30 || die "pulse never migrated its database"
info "pulse is at $PULSE_URL"

step "sending traffic that creates every kind of series"
for path in / /health /livez /readyz /version /nope /delay/5 /status/503 /panic; do
  curl -s -o /dev/null "$PULSE_URL$path"
done
curl -s -o /dev/null -X POST "$PULSE_URL/"
curl -s -o /dev/null -X BREW "$PULSE_URL/"
curl -s -o /dev/null --http2-prior-knowledge "$PULSE_URL/"
curl -s -o /dev/null -H 'Content-Type: application/json' -d '{"text": "a note"}' "$PULSE_URL/notes"
curl -s -o /dev/null "$PULSE_URL/notes/1"

step "promtool check metrics"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$PULSE_URL/metrics")" = 401 ] ||
  die "/metrics answered without the token"
curl -sf -H "Authorization: Bearer $token" "$PULSE_URL/metrics" >"$work/metrics.txt"
info "$(grep -vc '^#' "$work/metrics.txt") samples scraped"
for name in http_requests_total http_request_duration_seconds_bucket http_requests_in_flight \
  pulse_build_info process_cpu_seconds_total process_resident_memory_bytes \
  process_open_fds process_start_time_seconds pulse_secret_reloads_total \
  pulse_secret_last_reload_timestamp_seconds pulse_database_up pulse_database_pool_connections \
  pulse_database_query_duration_seconds_bucket; do
  grep -q "^$name" "$work/metrics.txt" || die "/metrics has no $name"
done
findings="$(promtool check metrics <"$work/metrics.txt" 2>&1)" || {
  printf '%s\n' "$findings"
  die "promtool check metrics failed"
}
if [ -n "$findings" ]; then
  printf '%s\n' "$findings"
  die "promtool check metrics reported findings"
fi
info "promtool: no findings"
