#!/usr/bin/env bash
# Benchmarks pulse against two bare hyper servers in the same invocation and
# reports every figure as a ratio to them:
#   bare_auto   hyper-util's auto::Builder (HTTP/1.1 and h2c, like pulse):
#               isolates pulse's own per-request work; the goals are set
#               against it
#   bare_hyper  an HTTP/1-only loop: the physical limit; pulse's ratio to it
#               also pays for protocol detection
# Every server is a release musl build pinned to CPU 0; the load generator
# (wrk for HTTP/1.1, h2load for h2c) is pinned to CPU 1. pulse runs as
# shipped: metrics, the JSON access log (to /dev/null, so the disk is not
# measured), request ids and trace context on, span export off. Two more
# pulses measure PULSE_H2C=false (HTTP/1 only, against bare_hyper) and span
# export on at 100% sampling, to a local sink.
#
# Usage: scripts/bench/bench.sh [RUNS] [SECONDS]   (default 3 runs of 10 s)
# Writes docs/bench.json and renders docs/bench.svg from it
# (scripts/bench/chart.py). Not part of scripts/ci.sh: timing belongs in
# benchmarks, not in tests.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

runs="${1:-3}"
duration="${2:-10}"
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a whole number above 0, got '$runs'"
[[ "$duration" =~ ^[1-9][0-9]*$ ]] || die "SECONDS must be a whole number above 0, got '$duration'"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs: one for the server, one for the load generator"
apt_install wrk nghttp2-client curl util-linux

step "building release binaries for $MUSL_TARGET"
rust_target "$MUSL_TARGET"
cargo build --locked --release --target "$MUSL_TARGET" --bin pulse \
  --example bare_hyper --example bare_auto --example cold_start --example otlp_sink
out="target/$MUSL_TARGET/release"
results_dir="docs"
mkdir -p "$results_dir"
work="$(mktemp -d)"
server_pid=""
sink_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null && wait "$sink_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
rss_kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }

# start NAME BINARY [NAME=VALUE...]: one server on CPU 0; sets server_pid, port.
start() {
  local name="$1" binary="$2"
  shift 2
  port="$(free_port)"
  env PORT="$port" HOST=127.0.0.1 PULSE_LOG_FORMAT=json RUST_LOG=info "$@" \
    taskset -c 0 "$binary" >/dev/null 2>&1 &
  server_pid=$!
  wait_http "http://127.0.0.1:$port/" 10 || die "$name did not start"
  sleep 0.3
}
stop() {
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# wrk_run NAME CONNECTIONS PATH: load the running server; prints one JSON
# object: requests/s, CPU microseconds per request, p50 and p99 in us.
wrk_run() {
  local name="$1" connections="$2" path="$3" before after
  before=$(ticks "$server_pid")
  taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" --latency "http://127.0.0.1:$port$path" >"$work/wrk.txt"
  after=$(ticks "$server_pid")
  if grep -q 'Non-2xx\|Socket errors' "$work/wrk.txt"; then
    cat "$work/wrk.txt" >&2
    die "$name: wrk saw errors"
  fi
  python3 - "$work/wrk.txt" "$((after - before))" <<'PY'
import json, re, sys
text, ticks = open(sys.argv[1]).read(), int(sys.argv[2])
def micros(value):
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
requests = int(re.search(r"(\d+) requests in", text).group(1))
print(json.dumps({
    "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
    # Ticks are 10 ms (USER_HZ 100).
    "cpu_us": ticks * 10000 / requests,
    "p50_us": micros(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1)),
    "p99_us": micros(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1)),
}))
PY
}

# h2_run NAME: h2c with prior knowledge, 16 connections x 10 streams.
h2_run() {
  local name="$1" before after requests=$((20000 * duration))
  before=$(ticks "$server_pid")
  taskset -c 1 h2load -c16 -m10 -n"$requests" --log-file="$work/h2.log" "http://127.0.0.1:$port/" >"$work/h2.txt"
  after=$(ticks "$server_pid")
  grep -q "$requests succeeded" "$work/h2.txt" || {
    cat "$work/h2.txt" >&2
    die "$name: h2load saw failures"
  }
  python3 - "$work/h2.txt" "$work/h2.log" "$((after - before))" "$requests" <<'PY'
import json, re, statistics, sys
text, log, ticks, requests = open(sys.argv[1]).read(), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
# --log-file: start time, status, request time in microseconds.
times = sorted(int(line.split()[2]) for line in open(log) if line.strip())
quantiles = statistics.quantiles(times, n=100)
print(json.dumps({
    "rps": float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1)),
    "cpu_us": ticks * 10000 / requests,
    "p50_us": quantiles[49],
    "p99_us": quantiles[98],
}))
PY
}

sink_port="$(free_port)"
PORT="$sink_port" taskset -c 1 "$out/examples/otlp_sink" >/dev/null 2>&1 &
sink_pid=$!
wait_http "http://127.0.0.1:$sink_port/" 10 || die "otlp_sink did not start"
export_env=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port" OTEL_TRACES_SAMPLER=always_on)

: >"$work/runs.jsonl"
for run in $(seq 1 "$runs"); do
  step "run $run of $runs: wrk -c32 and -c64 (HTTP/1.1), h2load -c16 -m10 (h2c), ${duration}s each"
  declare -A figures=()
  for server in bare_hyper bare_auto pulse pulse_http1 pulse_export; do
    case "$server" in
      pulse) start pulse "$out/pulse" ;;
      pulse_http1) start pulse_http1 "$out/pulse" PULSE_H2C=false ;;
      pulse_export) start pulse_export "$out/pulse" "${export_env[@]}" ;;
      *) start "$server" "$out/examples/$server" ;;
    esac
    for connections in 32 64; do
      figures["http1_${connections}_$server"]=$(wrk_run "$server" "$connections" /)
      info "$server HTTP/1.1 c=$connections: ${figures["http1_${connections}_$server"]}"
    done
    if [ "$server" != bare_hyper ] && [ "$server" != pulse_http1 ]; then
      figures["h2c_$server"]=$(h2_run "$server")
      info "$server h2c: ${figures["h2c_$server"]}"
    fi
    if [ "$server" = pulse ]; then
      figures[metrics]=$(wrk_run pulse-metrics 8 /metrics)
      info "pulse GET /metrics c=8: ${figures[metrics]}"
    fi
    stop
  done
  {
    printf '{"run": %s' "$run"
    for key in "${!figures[@]}"; do printf ', "%s": %s' "$key" "${figures[$key]}"; done
    printf '}\n'
  } >>"$work/runs.jsonl"
  unset figures
done
kill "$sink_pid"
wait "$sink_pid" 2>/dev/null || true
sink_pid=""

step "idle RSS, cold start (exec to first 200, median of 20), binary size"
start pulse "$out/pulse"
pulse_idle=$(rss_kib "$server_pid" VmRSS)
stop
start bare_auto "$out/examples/bare_auto"
reference_idle=$(rss_kib "$server_pid" VmRSS)
stop
pulse_cold=$("$out/examples/cold_start" "$out/pulse" /livez 20 | awk '/median/ { print $2 }')
reference_cold=$("$out/examples/cold_start" "$out/examples/bare_auto" / 20 | awk '/median/ { print $2 }')

python3 - "$work/runs.jsonl" "$results_dir/bench.json" <<PY
import json, platform, sys, datetime
runs = [json.loads(line) for line in open(sys.argv[1])]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
json.dump({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "machine": f"{cpu}, {platform.system()} {platform.release()}, server on CPU 0, load on CPU 1",
    "seconds_per_measurement": $duration,
    "runs": runs,
    "idle_rss_kib": {"pulse": $pulse_idle, "bare_auto": $reference_idle},
    "cold_start_us": {"pulse": $pulse_cold, "bare_auto": $reference_cold},
    "binary_bytes": {"pulse": $(stat -c %s "$out/pulse"), "bare_auto": $(stat -c %s "$out/examples/bare_auto")},
}, open(sys.argv[2], "w"), indent=1)
PY
python3 scripts/bench/chart.py "$results_dir/bench.json" docs/bench.svg
