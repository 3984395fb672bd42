#!/usr/bin/env bash
# HTTP/1.1 latency of pulse against bare_auto under wrk's closed loop, each
# server alone on CPU 0 and `wrk -t1 -cN --latency` on CPU 1 for SECONDS per
# round, the servers taking turns round by round. Beside pulse it runs two
# controls:
#   padded_auto    bare_auto plus PAD_NS of busy CPU per request (default:
#                  pulse's extra CPU per request, 600 ns): a server that does
#                  nothing pulse does and costs what pulse costs
#   no_access_log  pulse with its access log filtered out
# wrk keeps every connection busy, so wrk and the server are both saturated
# and a request waits in whichever is slower; the controls show how far the
# latency follows that and not anything pulse does (docs/performance.md,
# "Closed-loop latency follows the slower side").
#
# Usage: scripts/bench/latency.sh [ROUNDS] [SECONDS]   (default 5 rounds of 4 s)
# Prints one line per server, load and round: p50, p99, requests per second,
# mean latency in microseconds and the server's CPU microseconds per request;
# then, per variant, the median over rounds of its ratio to the bare_auto of
# the same round.
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
step "building pulse and bare_auto (release, $MUSL_TARGET)"
# Separately: a build with an example compiles tokio's test-util into pulse.
release_cargo build --locked --release --quiet --target "$MUSL_TARGET" --bin pulse
release_cargo build --locked --release --quiet --target "$MUSL_TARGET" --example bare_auto --example padded_auto
out="target/$MUSL_TARGET/release"
results="$(mktemp)"
server_pid=""
trap '[ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true; rm -f "$results" "$results.wrk"' EXIT

# measure NAME CONNECTIONS: starts the server NAME, loads it, stops it.
measure() {
  local name="$1" connections="$2" port binary="$out/pulse" filter=info before after
  port="$(free_port)"
  case "$name" in
    bare_auto) binary="$out/examples/bare_auto" ;;
    padded_auto) binary="$out/examples/padded_auto" ;;
    no_access_log) filter="info,pulse::access=warn" ;;
  esac
  PORT="$port" HOST=127.0.0.1 PULSE_LOG_FORMAT=json RUST_LOG="$filter" PAD_NS="${PAD_NS:-600}" \
    taskset -c 0 "$binary" >/dev/null 2>&1 &
  server_pid=$!
  wait_http "http://127.0.0.1:$port/" 10 || die "$name did not start"
  before="$(cpu_ns "$server_pid")"
  taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" --latency "http://127.0.0.1:$port/" >"$results.wrk"
  after="$(cpu_ns "$server_pid")"
  python3 scripts/bench/wrk_json.py "$results.wrk" "$((after - before))" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.2f" % (sys.argv[1], sys.argv[2], sys.argv[3], r["p50_us"], r["p99_us"], r["rps"], r["mean_us"], r["cpu_us"]))
' "$round" "$name" "$connections" | tee -a "$results"
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

step "$rounds rounds; each line: round, server, connections, p50 us, p99 us, requests/s, mean us, CPU us per request"
for round in $(seq "$rounds"); do
  info "round $round"
  for connections in 32 64; do
    for name in bare_auto pulse padded_auto no_access_log; do
      measure "$name" "$connections"
    done
  done
done

step "medians over rounds of each round's ratio to bare_auto"
python3 - "$results" <<'PY'
import statistics, sys
FIGURES = ("p50", "p99", "rps", "mean", "cpu")
by = {}
for line in open(sys.argv[1]).read().splitlines():
    round_, name, connections, *figures = line.split("\t")
    by[(round_, name, connections)] = [float(f) for f in figures]
rounds = sorted({key[0] for key in by})
for connections in ("32", "64"):
    for name in ("pulse", "padded_auto", "no_access_log"):
        ratios = [statistics.median(by[(r, name, connections)][i] / by[(r, "bare_auto", connections)][i] for r in rounds)
                  for i in range(len(FIGURES))]
        print(f"c{connections} {name:14} " + "  ".join(f"{f} {x:.2f}x" for f, x in zip(FIGURES, ratios)))
PY
