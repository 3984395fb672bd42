#!/usr/bin/env bash
# What pulse adds around a database query: POST /notes and GET /notes/{id}
# on pulse against examples/bare_notes.rs (hyper-util's auto::Builder, the
# same pool size and the same two prepared queries, nothing else), both on
# a throwaway PostgreSQL on 127.0.0.1. Each server alone on CPU 0, `wrk -t1
# -c16 --latency` on CPU 1, PostgreSQL wherever the scheduler puts it; the
# servers take turns round by round.
#
# Usage: scripts/bench/notes.sh [ROUNDS] [SECONDS]   (default 3 rounds of 5 s)
# Prints one line per server, route and round (requests/s, p50 and p99 in
# microseconds, the server's CPU microseconds per request), then per route
# the median over rounds of pulse's CPU per request over bare_notes's in
# the same round (issue 40's goal: at most 1.15x) and both p99s.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

rounds="${1:-3}"
seconds="${2:-5}"
need_count ROUNDS "$rounds"
need_count SECONDS "$seconds"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs: one for the server, one for wrk"
apt_install wrk curl util-linux python3
step "building pulse and bare_notes (release, $MUSL_TARGET)"
# Separately: a build with an example compiles tokio's test-util into pulse.
release_cargo build --locked --release --quiet --target "$MUSL_TARGET" --bin pulse
release_cargo build --locked --release --quiet --target "$MUSL_TARGET" --example bare_notes
out="target/$MUSL_TARGET/release"
work="$(mktemp -d)"
server_pid=""
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  stop_postgres
  rm -rf "$work"
}
trap cleanup EXIT

step "PostgreSQL, migrated by pulse migrate, with one note to read"
start_postgres
PULSE_DATABASE_URL="$PG_URL" "$out/pulse" migrate
psql "$PG_URL" -qc "INSERT INTO notes (text) VALUES ('the note every GET reads')"
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"text": "a note from the benchmark"}'
wrk.headers["Content-Type"] = "application/json"
LUA

# measure NAME ROUTE ROUND: starts the server NAME, loads ROUTE, stops it.
measure() {
  local name="$1" route="$2" round="$3" port binary="$out/pulse" before after script=()
  port="$(free_port)"
  [ "$name" = pulse ] || binary="$out/examples/bare_notes"
  [ "$route" = POST ] && script=(-s "$work/post.lua")
  PORT="$port" HOST=127.0.0.1 PULSE_LOG_FORMAT=json PULSE_DATABASE_URL="$PG_URL" \
    taskset -c 0 "$binary" >/dev/null 2>&1 &
  server_pid=$!
  wait_http "http://127.0.0.1:$port/notes/1" 20 || die "$name did not start"
  before="$(cpu_ns "$server_pid")"
  if [ "$route" = POST ]; then
    taskset -c 1 wrk -t1 -c16 -d"${seconds}s" --latency "${script[@]}" "http://127.0.0.1:$port/notes" >"$work/wrk"
  else
    taskset -c 1 wrk -t1 -c16 -d"${seconds}s" --latency "http://127.0.0.1:$port/notes/1" >"$work/wrk"
  fi
  after="$(cpu_ns "$server_pid")"
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  python3 scripts/bench/wrk_json.py "$work/wrk" "$((after - before))" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.2f" % (sys.argv[1], sys.argv[2], sys.argv[3], r["rps"], r["p50_us"], r["p99_us"], r["cpu_us"]))' \
    "$name" "$route" "$round" | tee -a "$work/results"
}

step "$rounds rounds of ${seconds}s per server and route (server, route, round, requests/s, p50 us, p99 us, CPU us/request)"
for round in $(seq 1 "$rounds"); do
  for route in POST GET; do
    measure bare_notes "$route" "$round"
    measure pulse "$route" "$round"
  done
done

step "pulse over bare_notes, the median over rounds"
python3 - "$work/results" <<'PY'
import statistics
import sys

rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
by = {(name, route, round_): (float(rps), float(p50), float(p99), float(cpu)) for name, route, round_, rps, p50, p99, cpu in rows}
for route in ("POST", "GET"):
    rounds = sorted({r for (_, rt, r) in by if rt == route})
    cpu = statistics.median(by[("pulse", route, r)][3] / by[("bare_notes", route, r)][3] for r in rounds)
    p99_pulse = statistics.median(by[("pulse", route, r)][2] for r in rounds)
    p99_bare = statistics.median(by[("bare_notes", route, r)][2] for r in rounds)
    verdict = "met" if cpu <= 1.15 else "NOT met"
    path = "/notes" if route == "POST" else "/notes/{id}"
    print(f"    {route} {path}: CPU per request {cpu:.3f}x (goal at most 1.15x: {verdict}); "
          f"p99 {p99_pulse:.0f} us against {p99_bare:.0f} us")
PY
