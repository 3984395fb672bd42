#!/usr/bin/env bash
# HTTP/1.1 latency of pulse against bare_auto, each server alone on CPU 0
# and wrk on CPU 1, with `wrk -t1 -cN --latency` for SECONDS per round,
# the servers taking turns round by round. Also pulse with its log-writer
# thread moved to CPU 1 (`writer_off_cpu0`), and pulse with the access log
# filtered out (`no_access_log`): the two suspects for its tail.
#
# Usage: scripts/bench/latency.sh [ROUNDS] [SECONDS]   (default 5 rounds of 4 s)
# Prints one line per server, load and round: p50, p99, requests per second
# and the mean latency in microseconds, then each variant's medians over
# bare_auto's.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

rounds="${1:-5}"
seconds="${2:-4}"
need_count ROUNDS "$rounds"
need_count SECONDS "$seconds"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs: one for the server, one for wrk"
apt_install wrk curl util-linux python3
rust_target "$MUSL_TARGET"
step "building pulse and bare_auto (release, $MUSL_TARGET)"
# Separately: a build with an example compiles tokio's test-util into pulse.
cargo build --locked --release --quiet --target "$MUSL_TARGET" --bin pulse
cargo build --locked --release --quiet --target "$MUSL_TARGET" --example bare_auto
out="target/$MUSL_TARGET/release"
results="$(mktemp)"
server_pid=""
trap '[ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true; rm -f "$results" "$results.wrk"' EXIT

# measure NAME CONNECTIONS: starts the server NAME, loads it, stops it.
measure() {
  local name="$1" connections="$2" port binary="$out/pulse" filter=info
  port="$(free_port)"
  case "$name" in
    bare_auto) binary="$out/examples/bare_auto" ;;
    no_access_log) filter="info,pulse::access=warn" ;;
  esac
  PORT="$port" HOST=127.0.0.1 PULSE_LOG_FORMAT=json RUST_LOG="$filter" \
    taskset -c 0 "$binary" >/dev/null 2>&1 &
  server_pid=$!
  wait_http "http://127.0.0.1:$port/" 10 || die "$name did not start"
  if [ "$name" = writer_off_cpu0 ]; then
    local task
    for task in /proc/"$server_pid"/task/*; do
      if [ "$(cat "$task/comm")" = log-writer ]; then
        taskset -p -c 1 "$(basename "$task")" >/dev/null
      fi
    done
  fi
  taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" --latency "http://127.0.0.1:$port/" >"$results.wrk"
  python3 scripts/bench/wrk_json.py "$results.wrk" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f" % (sys.argv[1], sys.argv[2], r["p50_us"], r["p99_us"], r["rps"], r["mean_us"]))
' "$name" "$connections" | tee -a "$results"
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

step "$rounds rounds; each line: server, connections, p50 us, p99 us, requests/s, mean us"
for round in $(seq "$rounds"); do
  info "round $round"
  for connections in 32 64; do
    for name in bare_auto pulse writer_off_cpu0 no_access_log; do
      measure "$name" "$connections"
    done
  done
done

step "medians over bare_auto's"
python3 - "$results" <<'PY'
import statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
by = {}
for name, connections, p50, p99, rps, mean in rows:
    by.setdefault((name, connections), []).append((float(p50), float(p99), float(rps), float(mean)))
for connections in ("32", "64"):
    base = [statistics.median(x[i] for x in by[("bare_auto", connections)]) for i in range(4)]
    for name in ("pulse", "writer_off_cpu0", "no_access_log"):
        mine = [statistics.median(x[i] for x in by[(name, connections)]) for i in range(4)]
        print(f"c{connections} {name:16} p50 {mine[0] / base[0]:.2f}x  p99 {mine[1] / base[1]:.2f}x  "
              f"mean {mine[3] / base[3]:.2f}x  rps {mine[2] / base[2]:.2f}x  "
              f"(bare_auto p50 {base[0]:.0f} us, p99 {base[1]:.0f} us, mean {base[3]:.0f} us)")
PY
