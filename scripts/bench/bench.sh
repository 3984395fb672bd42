#!/usr/bin/env bash
# Benchmarks pulse against two bare hyper servers in the same invocation and
# reports every figure as a ratio to them:
#   bare_auto   hyper-util's auto::Builder (HTTP/1.1 and h2c, like pulse):
#               isolates pulse's own per-request work; the goals are set
#               against it
#   bare_hyper  an HTTP/1-only loop: the physical limit; pulse's ratio to it
#               also pays for protocol detection
# Every server is a release musl build pinned to CPU 0; the load generator
# (wrk for HTTP/1.1, h2load for h2c) is pinned to CPU 1. All servers run for
# the whole benchmark (an idle one costs nothing) and each workload loads
# them one after another, so a ratio compares measurements seconds apart:
# this machine is shared, and its speed drifts over minutes. pulse runs as
# shipped: metrics, the JSON access log (to /dev/null, so the disk is not
# measured), request ids and trace context on, span export off. Two more
# pulses measure PULSE_H2C=false (HTTP/1 only, against bare_hyper) and span
# export on at 100% sampling, to a local sink.
#
# Usage: scripts/bench/bench.sh [RUNS] [SECONDS] [ROUNDS]
#   (default 3 runs, each of 3 rounds, 4 s per measurement: about 9 minutes)
# Within a run, every round measures every server on every workload, one
# after another; each figure of the run is the median of its rounds.
# Writes docs/bench.json and renders docs/bench.svg from it
# (scripts/bench/chart.py). Not part of scripts/ci.sh: timing belongs in
# benchmarks, not in tests.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

runs="${1:-3}"
duration="${2:-4}"
rounds="${3:-3}"
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a whole number above 0, got '$runs'"
[[ "$duration" =~ ^[1-9][0-9]*$ ]] || die "SECONDS must be a whole number above 0, got '$duration'"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a whole number above 0, got '$rounds'"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs: one for the server, one for the load generator"
apt_install wrk nghttp2-client curl util-linux

step "building release binaries for $MUSL_TARGET"
rust_target "$MUSL_TARGET"
cargo build --locked --release --target "$MUSL_TARGET" --bin pulse \
  --example bare_hyper --example bare_auto --example cold_start --example otlp_sink \
  --example observe_threads
out="target/$MUSL_TARGET/release"
results_dir="docs"
mkdir -p "$results_dir"
work="$(mktemp -d)"
declare -A pids=() ports=()
sink_pid=""
cleanup() {
  for pid in "${pids[@]}" $sink_pid; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
rss_kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }

# start NAME BINARY [NAME=VALUE...]: one server on CPU 0, on a port of its
# own; sets pids[NAME] and ports[NAME].
start() {
  local name="$1" binary="$2" port
  shift 2
  port="$(free_port)"
  env PORT="$port" HOST=127.0.0.1 PULSE_LOG_FORMAT=json RUST_LOG=info "$@" \
    taskset -c 0 "$binary" >/dev/null 2>&1 &
  pids[$name]=$!
  ports[$name]=$port
  wait_http "http://127.0.0.1:$port/" 10 || die "$name did not start"
}
stop() {
  kill "${pids[$1]}"
  wait "${pids[$1]}" 2>/dev/null || true
  unset "pids[$1]"
}

# wrk_run NAME CONNECTIONS PATH: load the running server; prints one JSON
# object: requests/s, CPU microseconds per request, p50 and p99 in us.
wrk_run() {
  local name="$1" connections="$2" path="$3" before after
  before=$(ticks "${pids[$name]}")
  taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" --latency "http://127.0.0.1:${ports[$name]}$path" >"$work/wrk.txt"
  after=$(ticks "${pids[$name]}")
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
  before=$(ticks "${pids[$name]}")
  taskset -c 1 h2load -c16 -m10 -n"$requests" --log-file="$work/h2.log" "http://127.0.0.1:${ports[$name]}/" >"$work/h2.txt"
  after=$(ticks "${pids[$name]}")
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
step "starting bare_hyper, bare_auto, pulse, pulse_http1 (PULSE_H2C=false), pulse_export on CPU 0"
start bare_hyper "$out/examples/bare_hyper"
start bare_auto "$out/examples/bare_auto"
start pulse "$out/pulse"
start pulse_http1 "$out/pulse" PULSE_H2C=false
start pulse_export "$out/pulse" "${export_env[@]}"
sleep 0.3
for run in $(seq 1 "$runs"); do
  step "run $run of $runs: $rounds rounds of wrk -c32 and -c64 (HTTP/1.1), h2load -c16 -m10 (h2c), wrk -c8 /metrics, ${duration}s each"
  rm -f "$work"/figure_*.jsonl
  for round in $(seq 1 "$rounds"); do
    for connections in 32 64; do
      for server in bare_hyper bare_auto pulse pulse_http1 pulse_export; do
        wrk_run "$server" "$connections" / >>"$work/figure_http1_${connections}_$server.jsonl"
        info "round $round, $server HTTP/1.1 c=$connections: $(tail -n 1 "$work/figure_http1_${connections}_$server.jsonl")"
      done
    done
    for server in bare_auto pulse pulse_export; do
      h2_run "$server" >>"$work/figure_h2c_$server.jsonl"
      info "round $round, $server h2c: $(tail -n 1 "$work/figure_h2c_$server.jsonl")"
    done
    wrk_run pulse 8 /metrics >>"$work/figure_metrics.jsonl"
    info "round $round, pulse GET /metrics c=8: $(tail -n 1 "$work/figure_metrics.jsonl")"
  done
  # Each figure of the run is its median over the rounds.
  python3 - "$run" "$work" >>"$work/runs.jsonl" <<'PY'
import glob, json, os, statistics, sys
run = {"run": int(sys.argv[1])}
for path in sorted(glob.glob(os.path.join(sys.argv[2], "figure_*.jsonl"))):
    rounds = [json.loads(line) for line in open(path)]
    key = os.path.basename(path)[len("figure_"):-len(".jsonl")]
    run[key] = {field: statistics.median(r[field] for r in rounds) for field in rounds[0]}
print(json.dumps(run))
PY
done
for server in bare_hyper pulse_http1 pulse_export; do stop "$server"; done
kill "$sink_pid"
wait "$sink_pid" 2>/dev/null || true
sink_pid=""

step "idle RSS after the load, fresh idle RSS, cold start (exec to first 200, median of 20), binary size"
pulse_loaded=$(rss_kib "${pids[pulse]}" VmRSS)
reference_loaded=$(rss_kib "${pids[bare_auto]}" VmRSS)
stop pulse
stop bare_auto
start pulse "$out/pulse"
sleep 0.3
pulse_idle=$(rss_kib "${pids[pulse]}" VmRSS)
stop pulse
start bare_auto "$out/examples/bare_auto"
sleep 0.3
reference_idle=$(rss_kib "${pids[bare_auto]}" VmRSS)
stop bare_auto
pulse_cold=$("$out/examples/cold_start" "$out/pulse" /livez 20 | awk '/median/ { print $2 }')
reference_cold=$("$out/examples/cold_start" "$out/examples/bare_auto" / 20 | awk '/median/ { print $2 }')
step "Metrics::observe on one thread, then on two at once on the same series (CPUs 0 and 1)"
observe_threads=$(taskset -c 0,1 "$out/examples/observe_threads")
info "$observe_threads"

python3 - "$work/runs.jsonl" "$results_dir/bench.json" <<PY
import json, platform, sys, datetime
runs = [json.loads(line) for line in open(sys.argv[1])]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
json.dump({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "machine": f"{cpu}, {platform.system()} {platform.release()}, server on CPU 0, load on CPU 1",
    "seconds_per_measurement": $duration,
    "rounds_per_run": $rounds,
    "runs": runs,
    "idle_rss_kib": {"pulse": $pulse_idle, "bare_auto": $reference_idle},
    "rss_after_load_kib": {"pulse": $pulse_loaded, "bare_auto": $reference_loaded},
    "cold_start_us": {"pulse": $pulse_cold, "bare_auto": $reference_cold},
    "observe_threads": $observe_threads,
    "binary_bytes": {"pulse": $(stat -c %s "$out/pulse"), "bare_auto": $(stat -c %s "$out/examples/bare_auto")},
}, open(sys.argv[2], "w"), indent=1)
PY
python3 scripts/bench/chart.py "$results_dir/bench.json" docs/bench.svg
