#!/usr/bin/env bash
# Smoke-tests a running pulse from the outside, with bash and curl only.
#
# Usage: scripts/smoke.sh [BASE_URL] [WAIT_SECONDS]
#   BASE_URL      default http://127.0.0.1:8080 (a binary, a container, a remote URL)
#   WAIT_SECONDS  first wait up to this long for /readyz to answer 200 (default 0)
#   PULSE_METRICS_TOKEN (environment) the bearer token /metrics requires, if
#                 the target has one; it must then refuse a scrape without it
# Prints one line per check and stops with exit code 1 at the first failure.
set -euo pipefail

base="${1:-${PULSE_URL:-http://127.0.0.1:8080}}"
base="${base%/}"
wait_seconds="${2:-${SMOKE_WAIT:-0}}"
[[ "$wait_seconds" =~ ^[0-9]+$ ]] || {
  echo "smoke: WAIT_SECONDS must be a whole number, got '$wait_seconds'" >&2
  exit 2
}
command -v curl >/dev/null || {
  echo "smoke: curl is required" >&2
  exit 2
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
checks=0

pass() {
  checks=$((checks + 1))
  printf 'ok    %s\n' "$*"
}
fail() {
  printf 'FAIL  %s\n' "$*" >&2
  printf 'smoke: %s passed, 1 failed against %s\n' "$checks" "$base" >&2
  exit 1
}

# fetch METHOD PATH [CURL_ARGS...]: sets status, and leaves the headers and
# body in $work/headers and $work/body.
fetch() {
  local method="$1" path="$2"
  shift 2
  status=$(curl -sS --max-time 10 -X "$method" -o "$work/body" -D "$work/headers" \
    -w '%{http_code}' "$@" "$base$path" 2>"$work/error") ||
    fail "$method $path: $(cat "$work/error")"
}
header() { tr -d '\r' <"$work/headers" | awk -v name="$1" 'tolower($1) == tolower(name) ":" { sub(/^[^:]*: */, ""); print; exit }'; }
body() { cat "$work/body"; }

if [ "$wait_seconds" -gt 0 ]; then
  deadline=$((SECONDS + wait_seconds))
  until [ "$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$base/readyz" 2>/dev/null)" = 200 ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "/readyz did not answer 200 within ${wait_seconds}s"
    sleep 0.2
  done
  pass "ready within ${wait_seconds}s"
fi

fetch GET /
{ [ "$status" = 200 ] && [ "$(body)" = "Hello, DevOps!" ]; } || fail "GET / -> $status $(body)"
pass "GET / -> 200 Hello, DevOps!"

fetch GET /health
{ [ "$status" = 200 ] && grep -q '"status":"healthy"' "$work/body"; } || fail "GET /health -> $status $(body)"
pass "GET /health -> 200 $(body)"

for path in /livez /readyz; do
  fetch GET "$path"
  [ "$status" = 200 ] || fail "GET $path -> $status $(body)"
  [ "$(header cache-control)" = no-store ] || fail "GET $path has no Cache-Control: no-store"
  pass "GET $path -> 200, Cache-Control: no-store"
done

fetch GET /version
{ [ "$status" = 200 ] && grep -q '"version":' "$work/body" && grep -q '"commit":' "$work/body"; } ||
  fail "GET /version -> $status $(body)"
pass "GET /version -> 200 $(body)"

if [ -n "${PULSE_METRICS_TOKEN:-}" ]; then
  fetch GET /metrics
  { [ "$status" = 401 ] && [ -n "$(header www-authenticate)" ]; } ||
    fail "GET /metrics without the token -> $status, expected 401 with WWW-Authenticate"
  pass "GET /metrics without the token -> 401, WWW-Authenticate: $(header www-authenticate)"
  fetch GET /metrics -H "Authorization: Bearer $PULSE_METRICS_TOKEN"
else
  fetch GET /metrics
fi
[ "$status" = 200 ] || fail "GET /metrics -> $status"
for name in http_requests_total pulse_build_info; do
  grep -q "^$name" "$work/body" || fail "GET /metrics has no $name"
done
pass "GET /metrics -> 200 with http_requests_total and pulse_build_info"

fetch GET /smoke-test-no-such-path
{ [ "$status" = 404 ] && [ "$(body)" = '{"error":"Not found"}' ]; } || fail "GET unknown path -> $status $(body)"
pass "GET unknown path -> 404 $(body)"

fetch POST /
{ [ "$status" = 405 ] && [ "$(body)" = '{"error":"Method not allowed"}' ]; } || fail "POST / -> $status $(body)"
[ "$(header allow)" = "GET, HEAD" ] || fail "POST / has Allow '$(header allow)', expected 'GET, HEAD'"
pass "POST / -> 405, Allow: GET, HEAD"

fetch POST /echo -H 'Content-Type: application/json' --data '{"smoke":[1,true,null]}'
{ [ "$status" = 200 ] && [ "$(body)" = '{"smoke":[1,true,null]}' ]; } || fail "POST /echo -> $status $(body)"
pass "POST /echo -> 200 with the document sent"
fetch POST /echo -H 'Content-Type: text/plain' --data 'hello'
[ "$status" = 415 ] || fail "POST /echo as text/plain -> $status $(body), expected 415"
pass "POST /echo as text/plain -> 415 $(body)"

fetch GET /openapi.json
{ [ "$status" = 200 ] && grep -q '"openapi":"3.1.0"' "$work/body"; } || fail "GET /openapi.json -> $status"
pass "GET /openapi.json -> 200, OpenAPI 3.1.0"

fetch GET /
generated="$(header x-request-id)"
[ -n "$generated" ] || fail "GET / has no X-Request-Id"
[ "$(header x-content-type-options)" = nosniff ] || fail "GET / has no X-Content-Type-Options: nosniff"
pass "GET / -> X-Request-Id $generated, X-Content-Type-Options: nosniff"
sent="smoke-$RANDOM$RANDOM"
fetch GET / -H "X-Request-Id: $sent"
[ "$(header x-request-id)" = "$sent" ] || fail "X-Request-Id $sent came back as '$(header x-request-id)'"
pass "GET / echoes X-Request-Id $sent"

parent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
fetch GET / -H "traceparent: $parent"
returned="$(header traceparent)"
[[ "$returned" =~ ^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$ ]] ||
  fail "GET / with traceparent $parent answered traceparent '$returned'"
[ "$returned" != "$parent" ] || fail "GET / answered the caller's span id, not its own"
pass "GET / continues the W3C trace: traceparent $returned"

printf 'smoke: %s passed, 0 failed against %s\n' "$checks" "$base"
