#!/usr/bin/env bash
# Benchmarks pulse against two bare hyper servers in the same invocation and
# reports every figure as a ratio to them:
#   bare_auto   hyper-util's auto::Builder (HTTP/1.1 and h2c, like pulse):
#               isolates pulse's own per-request work; the goals are set
#               against it
#   bare_hyper  an HTTP/1-only loop: the physical limit; pulse's ratio to it
#               also pays for protocol detection
# and a third, which the goal is named after:
#   counted_auto  bare_auto with Prometheus counters and a text access log,
#               written the plain way; measured against bare_auto (what the
#               goal's 1.10x assumes it costs) and pulse against it, over
#               HTTP/1.1 and h2c
# Every server is a release musl build pinned to CPU 0; the load generator
# (wrk for HTTP/1.1, h2load for h2c) is pinned to CPU 1. pulse runs as
# shipped: metrics, the JSON access log (to /dev/null, so the disk is not
# measured), request ids and trace context on, span export off. Two more
# pulses measure PULSE_H2C=false (HTTP/1 only, against bare_hyper) and span
# export on at 100% sampling, to a local sink.
#
# CPU per request is compared in pairs served at the same time: pulse and
# its reference share CPU 0, each under its own load generator, and the
# ratio is of the CPU time each used per request (h2c also with both load
# generators held to one request rate: h2c_rate). This machine is shared
# and its speed drifts by 20% within minutes, so servers measured one after
# the other gave ratios from 0.96x to 1.45x for one pair of builds; served
# together, the same two builds of bare_auto give 1.00x +- 0.01. Requests
# per second and latency are measured with each server alone on CPU 0.
#
# Last, scripts/bench/hop.sh measures what HAProxy's hop costs (CPU per
# request and p99 through deploy/haproxy/haproxy.cfg against direct): a
# figure kept in docs/bench.json, with no goal.
#
# Usage: scripts/bench/bench.sh [RUNS] [SECONDS] [ROUNDS]
#   (default 3 runs, 4 s per measurement, 3 rounds of pairs per run: about
#   25 minutes with the build and the callgrind counts). A run's ratio is the
#   median of its rounds, and so is its GET /metrics figure.
# Writes docs/bench.json, and from it (scripts/bench/chart.py) renders
# docs/bench.svg, the README's table of goals and docs/performance.md's
# table of every figure. Not part of scripts/ci.sh: timing belongs in
# benchmarks, not in tests (CI only checks that the chart and the tables
# agree with docs/bench.json).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

runs="${1:-3}"
duration="${2:-4}"
rounds="${3:-3}"
need_count RUNS "$runs"
need_count SECONDS "$duration"
need_count ROUNDS "$rounds"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs: one for the server, one for the load generator"
apt_install wrk nghttp2-client curl util-linux librsvg2-bin

step "building release binaries for $MUSL_TARGET with Rust $(release_toolchain), as static.sh does"
# pulse on its own first: a build that compiles an example also compiles the
# dev-dependencies' features (tokio's test-util, whose clock takes a lock),
# and the pulse binary must be the one that ships.
release_cargo build --locked --release --target "$MUSL_TARGET" --bin pulse
release_cargo build --locked --release --target "$MUSL_TARGET" \
  --example bare_hyper --example bare_auto --example counted_auto --example cold_start --example otlp_sink \
  --example observe_threads
out="target/$MUSL_TARGET/release"
results_dir="docs"
mkdir -p "$results_dir"
work="$(mktemp -d)"
declare -A pids=() ports=()
sink_pid=""
cleanup() {
  for pid in "${pids[@]}" $sink_pid; do
    if kill "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

# minor_faults PID: page faults the process has taken that needed no disk
# read: memory it mapped (or got back) and touched for the first time. The
# fields after the command name, which may hold spaces; minflt is the 8th.
minor_faults() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $8 }'; }
# usage PID: its CPU nanoseconds and minor faults so far, as "CPU FAULTS".
usage() { echo "$(cpu_ns "$1") $(minor_faults "$1")"; }
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
# object: requests/s, CPU microseconds and minor page faults per request,
# p50 and p99 in us.
wrk_run() {
  local name="$1" connections="$2" path="$3" before after faults_before faults_after
  read -r before faults_before <<<"$(usage "${pids[$name]}")"
  taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" --latency "http://127.0.0.1:${ports[$name]}$path" >"$work/wrk_$name.txt"
  read -r after faults_after <<<"$(usage "${pids[$name]}")"
  python3 scripts/bench/wrk_json.py "$work/wrk_$name.txt" "$((after - before))" "$((faults_after - faults_before))" ||
    die "$name: wrk saw errors"
}

# The request headers of a browser's page load, for the h2c_headers
# workload: h2load alone sends two. How many a request has decides the
# size of the header map h2 decodes it into, and whether a server's response
# map falls in the same size class of musl's allocator: with these,
# bare_auto's CPU per h2c request went from about 6 to about 10 us and
# pulse's stayed near 9 (docs/performance.md, h2c).
browser_headers=(
  -H "accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
  -H "accept-language: en-US,en;q=0.5" -H "accept-encoding: gzip, deflate, br"
  -H "cookie: session=3f2a9c" -H "referer: http://127.0.0.1/"
  -H "sec-fetch-mode: navigate" -H "upgrade-insecure-requests: 1"
)

# h2_run NAME [H2LOAD_ARGS...]: h2c with prior knowledge, 16 connections x
# 10 streams, for the measurement's duration.
h2_run() {
  local name="$1" before after faults_before faults_after
  shift
  read -r before faults_before <<<"$(usage "${pids[$name]}")"
  taskset -c 1 h2load -c16 -m10 "$@" -D"$duration" --log-file="$work/h2_$name.log" "http://127.0.0.1:${ports[$name]}/" >"$work/h2_$name.txt"
  read -r after faults_after <<<"$(usage "${pids[$name]}")"
  python3 - "$work/h2_$name.txt" "$work/h2_$name.log" "$((after - before))" "$name" "$((faults_after - faults_before))" <<'PY'
import json, re, statistics, sys
text, log, cpu_ns, name, faults = open(sys.argv[1]).read(), sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
if not done or int(done.group(1)) == 0 or int(done.group(3)) or int(done.group(4)):
    sys.exit(f"{name}: h2load saw failures or no requests:\n{text}")
requests = int(done.group(2))
# --log-file: start time, status, request time in microseconds.
times = sorted(int(line.split()[2]) for line in open(log) if line.strip())
quantiles = statistics.quantiles(times, n=100)
print(json.dumps({
    "requests": requests,
    "rps": float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1)),
    "cpu_us": cpu_ns / 1000 / requests,
    "faults_per_request": faults / requests,
    "p50_us": quantiles[49],
    "p99_us": quantiles[98],
}))
PY
}

# load WORKLOAD NAME: one measurement of NAME: http1_32, http1_64, h2c,
# h2c_headers (h2c with a browser's request headers), h2c_rate (h2c with
# each of h2load's 16 clients held to $h2c_rate_per_client requests per
# second) or metrics (GET /metrics, 8 connections).
load() {
  case "$1" in
    http1_32) wrk_run "$2" 32 / ;;
    http1_64) wrk_run "$2" 64 / ;;
    h2c) h2_run "$2" ;;
    h2c_headers) h2_run "$2" "${browser_headers[@]}" ;;
    h2c_rate) h2_run "$2" --rps="$h2c_rate_per_client" ;;
    metrics) wrk_run "$2" 8 /metrics ;;
    *) die "unknown workload $1" ;;
  esac
}

# pair WORKLOAD REFERENCE SERVER: both loaded at once; prints the JSON of
# SERVER's CPU per request against REFERENCE's.
pair() {
  local workload="$1" reference="$2" server="$3" first second
  load "$workload" "$reference" >"$work/pair_reference.json" &
  first=$!
  load "$workload" "$server" >"$work/pair_server.json" &
  second=$!
  wait "$first" || die "$reference: $workload failed"
  wait "$second" || die "$server: $workload failed"
  python3 - "$work/pair_reference.json" "$work/pair_server.json" "$reference" <<'PY'
import json, sys
reference, server = (json.load(open(path)) for path in sys.argv[1:3])
print(json.dumps({"reference": sys.argv[3], "reference_cpu_us": reference["cpu_us"],
                  "cpu_us": server["cpu_us"], "ratio": server["cpu_us"] / reference["cpu_us"],
                  "requests": [reference["requests"], server["requests"]]}))
PY
}

# h2c_rate PAIRED_JSONL: requests per second per client for the h2c_rate
# pair: half what the slower server of the last saturated h2c pair served,
# over h2load's 16 clients (at 80%, pulse fell up to 14% behind in some
# rounds). Saturated, each server runs as fast as it and its load generator
# can, and the two settle at different rates, so at different burst sizes,
# which move the CPU per request; held to one rate below both, they do the
# same work.
h2c_rate() {
  python3 - "$1" "$duration" <<'PY'
import json, sys
last = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print(max(1, int(0.5 * min(last["requests"]) / float(sys.argv[2]) / 16)))
PY
}
h2c_rate_per_client=""

sink_port="$(free_port)"
PORT="$sink_port" taskset -c 1 "$out/examples/otlp_sink" >/dev/null 2>&1 &
sink_pid=$!
wait_http "http://127.0.0.1:$sink_port/" 10 || die "otlp_sink did not start"
export_env=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port" OTEL_TRACES_SAMPLER=always_on)

: >"$work/runs.jsonl"
step "starting bare_hyper, bare_auto, counted_auto, pulse, pulse_http1 (PULSE_H2C=false), pulse_export, all on CPU 0"
start bare_hyper "$out/examples/bare_hyper"
start bare_auto "$out/examples/bare_auto"
start counted_auto "$out/examples/counted_auto"
start pulse "$out/pulse"
start pulse_http1 "$out/pulse" PULSE_H2C=false
start pulse_export "$out/pulse" "${export_env[@]}"
sleep 0.3
# The pairs: each pulse against its reference, on every workload it serves,
# bare_auto against bare_hyper: what protocol detection alone costs, and
# counted_auto against bare_auto and pulse against counted_auto. A pair's
# results are kept as WORKLOAD_SERVER, or under the fourth word if given.
pairs=(
  "http1_32 bare_auto pulse" "http1_64 bare_auto pulse" "h2c bare_auto pulse"
  "h2c_rate bare_auto pulse" "h2c_headers bare_auto pulse"
  "http1_32 bare_hyper pulse_http1" "http1_64 bare_hyper pulse_http1"
  "http1_32 bare_auto pulse_export" "h2c bare_auto pulse_export"
  "http1_32 bare_hyper bare_auto" "http1_64 bare_hyper bare_auto"
  "http1_32 bare_auto counted_auto" "http1_64 bare_auto counted_auto"
  "http1_32 counted_auto pulse http1_32_pulse_to_counted_auto"
  "http1_64 counted_auto pulse http1_64_pulse_to_counted_auto"
  "h2c bare_auto counted_auto" "h2c counted_auto pulse h2c_pulse_to_counted_auto"
  "h2c_rate bare_auto counted_auto" "h2c_rate counted_auto pulse h2c_rate_pulse_to_counted_auto"
)
for run in $(seq 1 "$runs"); do
  step "run $run of $runs: $rounds rounds of ${#pairs[@]} pairs served at once, then each server alone, ${duration}s each"
  rm -f "$work"/paired_*.jsonl "$work"/alone_*.json "$work"/metrics_round_*.json
  for round in $(seq 1 "$rounds"); do
    for entry in "${pairs[@]}"; do
      read -r workload reference server key <<<"$entry"
      key="${key:-${workload}_$server}"
      pair "$workload" "$reference" "$server" >>"$work/paired_$key.jsonl"
      info "round $round, $server against $reference, $workload: $(tail -n 1 "$work/paired_$key.jsonl")"
      if [ "$workload $reference $server" = "h2c bare_auto pulse" ]; then
        h2c_rate_per_client=$(h2c_rate "$work/paired_h2c_pulse.jsonl")
        info "h2c_rate: each server's 16 clients held to $h2c_rate_per_client requests/s each"
      fi
    done
  done
  for workload in http1_32 http1_64 h2c; do
    for server in bare_hyper bare_auto pulse pulse_http1 pulse_export; do
      case "$workload:$server" in h2c:bare_hyper | h2c:pulse_http1) continue ;; esac
      load "$workload" "$server" >"$work/alone_${workload}_$server.json"
      info "$server alone, $workload: $(cat "$work/alone_${workload}_$server.json")"
    done
  done
  # GET /metrics alone, once per round: the run's figure is the median
  # round by scrapes per second, as a pair's ratio is the median of its
  # rounds. One measurement of a few seconds on a shared machine can fall
  # in a slow spell (2026-11-27: one run's CPU per scrape 85 us, against 54
  # in the runs before and after).
  for round in $(seq 1 "$rounds"); do
    load metrics pulse >"$work/metrics_round_$round.json"
    info "round $round, pulse alone, GET /metrics c=8: $(cat "$work/metrics_round_$round.json")"
  done
  python3 - "$work" >"$work/alone_metrics.json" <<'PY'
import glob, json, os, sys
rounds = [json.load(open(path)) for path in sorted(glob.glob(os.path.join(sys.argv[1], "metrics_round_*.json")))]
median = sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2]
print(json.dumps(dict(median, rounds_rps=[r["rps"] for r in rounds])))
PY
  # The figures measured alone, and each pair's median ratio over the rounds.
  python3 - "$run" "$work" >>"$work/runs.jsonl" <<'PY'
import glob, json, os, statistics, sys
run = {"run": int(sys.argv[1]), "paired": {}}
for path in sorted(glob.glob(os.path.join(sys.argv[2], "alone_*.json"))):
    run[os.path.basename(path)[len("alone_"):-len(".json")]] = json.load(open(path))
for path in sorted(glob.glob(os.path.join(sys.argv[2], "paired_*.jsonl"))):
    rounds = [json.loads(line) for line in open(path)]
    key = os.path.basename(path)[len("paired_"):-len(".jsonl")]
    run["paired"][key] = {
        "reference": rounds[0]["reference"],
        "ratio": statistics.median(r["ratio"] for r in rounds),
        "rounds": [round(r["ratio"], 3) for r in rounds],
        "requests": [r["requests"] for r in rounds],
    }
print(json.dumps(run))
PY
done
for server in bare_hyper counted_auto pulse_http1 pulse_export; do stop "$server"; done
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
step "user-space instructions per request under callgrind, GET / (scripts/bench/instructions.sh)"
pulse_instructions=$(scripts/bench/instructions.sh "$out/pulse" / 10000)
reference_instructions=$(scripts/bench/instructions.sh "$out/examples/bare_auto" / 10000)
info "pulse $pulse_instructions, bare_auto $reference_instructions"
step "Metrics::observe on one thread, then on two at once on the same series (CPUs 0 and 1)"
observe_threads=$(taskset -c 0,1 "$out/examples/observe_threads")
info "$observe_threads"

step "the load balancer's hop: pulse through HAProxy against direct (scripts/bench/hop.sh; a figure, no goal)"
haproxy_hop=$(scripts/bench/hop.sh "$rounds" "$duration" "$out/pulse")
info "$haproxy_hop"

python3 - "$work/runs.jsonl" "$results_dir/bench.json" <<PY
import json, platform, sys, datetime
runs = [json.loads(line) for line in open(sys.argv[1])]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
json.dump({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "machine": f"{cpu}, {platform.system()} {platform.release()}, server on CPU 0, load on CPU 1",
    "seconds_per_measurement": $duration,
    "pair_rounds_per_run": $rounds,
    "runs": runs,
    "idle_rss_kib": {"pulse": $pulse_idle, "bare_auto": $reference_idle},
    "rss_after_load_kib": {"pulse": $pulse_loaded, "bare_auto": $reference_loaded},
    "cold_start_us": {"pulse": $pulse_cold, "bare_auto": $reference_cold},
    "observe_threads": $observe_threads,
    "haproxy_hop": $haproxy_hop,
    "instructions_per_request": {"pulse": $pulse_instructions, "bare_auto": $reference_instructions},
    "binary_bytes": {"pulse": $(stat -c %s "$out/pulse"), "bare_auto": $(stat -c %s "$out/examples/bare_auto")},
}, open(sys.argv[2], "w"), indent=1)
PY
python3 scripts/bench/chart.py "$results_dir/bench.json" docs/bench.svg README.md docs/performance.md
# The chart as a picture, to look at before committing it: an SVG that is
# valid can still have labels on top of each other.
rsvg-convert -o target/bench.png docs/bench.svg
info "look at the chart before committing it: target/bench.png"
