#!/usr/bin/env bash
# Benchmarks pulse against a bare hyper server (examples/bare_hyper.rs) in the
# same invocation, and reports every figure as a ratio to that reference.
#
# Usage: scripts/bench/bench.sh [DURATION_SECONDS] [CONNECTIONS]
# Both servers are release musl builds pinned to CPU 0; wrk is pinned to
# CPU 1. pulse runs as shipped: metrics on and its JSON access log on (to
# /dev/null, so the disk is not measured). Not part of scripts/ci.sh: timing
# belongs in benchmarks, not in tests.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

duration="${1:-10}"
connections="${2:-32}"
runs=20
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs: one for the server, one for wrk"
apt_install wrk curl util-linux

step "building release binaries for $MUSL_TARGET"
rust_target "$MUSL_TARGET"
cargo build --locked --release --target "$MUSL_TARGET" --bin pulse --example bare_hyper --example cold_start --example otlp_sink
out="target/$MUSL_TARGET/release"
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

# measure NAME BINARY [NAME=VALUE...]: one server, one wrk run. Prints a
# line of "name rps p50 p99 us_per_request idle_kib peak_kib".
measure() {
  local name="$1" binary="$2"
  shift 2
  local port
  port="$(free_port)"
  env PORT="$port" HOST=127.0.0.1 "$@" taskset -c 0 "$binary" >/dev/null 2>&1 &
  server_pid=$!
  wait_http "http://127.0.0.1:$port/" 10 || die "$name did not start"
  sleep 0.5
  local idle before after
  idle=$(rss_kib "$server_pid" VmRSS)
  before=$(ticks "$server_pid")
  taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" --latency "http://127.0.0.1:$port/" >"$work/$name.wrk"
  after=$(ticks "$server_pid")
  # The span counters, read before the server stops (pulse with export on).
  curl -s --max-time 5 "http://127.0.0.1:$port/metrics" 2>/dev/null |
    awk '/^pulse_spans_(exported|dropped)_total/ { printf "%s %d\n", $1, $2 }' >"$work/$name.spans" || true
  local peak
  peak=$(rss_kib "$server_pid" VmHWM)
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  grep -q 'Non-2xx\|Socket errors' "$work/$name.wrk" && {
    cat "$work/$name.wrk" >&2
    die "$name: wrk saw errors"
  }
  local requests rps p50 p99
  requests=$(awk '/requests in/ { print $1 }' "$work/$name.wrk")
  rps=$(awk '/^Requests\/sec/ { print $2 }' "$work/$name.wrk")
  p50=$(awk '$1 == "50%" { print $2 }' "$work/$name.wrk")
  p99=$(awk '$1 == "99%" { print $2 }' "$work/$name.wrk")
  # Ticks are 10 ms (USER_HZ 100): CPU microseconds = ticks * 10000.
  local us_per_request
  us_per_request=$(awk -v t=$((after - before)) -v r="$requests" 'BEGIN { printf "%.3f", t * 10000 / r }')
  echo "$name $rps $p50 $p99 $us_per_request $idle $peak"
}

# to_us "1.23ms" -> microseconds
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else print n * 1000000 }'; }

step "load: wrk -t1 -c$connections -d${duration}s against / (server on CPU 0, wrk on CPU 1)"
reference=$(measure bare_hyper "$out/examples/bare_hyper")
info "reference: $reference"
pulse=$(measure pulse "$out/pulse" PULSE_LOG_FORMAT=json RUST_LOG=info)
info "pulse:     $pulse"
sink_port="$(free_port)"
PORT="$sink_port" taskset -c 1 "$out/examples/otlp_sink" >/dev/null 2>&1 &
sink_pid=$!
wait_http "http://127.0.0.1:$sink_port/" 10 || die "otlp_sink did not start"
exporting=$(measure pulse_export "$out/pulse" PULSE_LOG_FORMAT=json RUST_LOG=info \
  OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port" OTEL_TRACES_SAMPLER=always_on)
info "pulse, spans exported at 100% sampling: $exporting"
sed 's/^/    /' "$work/pulse_export.spans"
kill "$sink_pid"
wait "$sink_pid" 2>/dev/null || true
sink_pid=""

step "cold start: exec to first 200, median of $runs runs"
pulse_cold=$("$out/examples/cold_start" "$out/pulse" /livez "$runs" | awk '/median/ { print $2 }')
reference_cold=$("$out/examples/cold_start" "$out/examples/bare_hyper" / "$runs" | awk '/median/ { print $2 }')

step "results (ratio = pulse / bare hyper, same run)"
read -r _ r_rps r_p50 r_p99 r_cpu r_idle r_peak <<<"$reference"
read -r _ p_rps p_p50 p_p99 p_cpu p_idle p_peak <<<"$pulse"
read -r _ e_rps _ _ e_cpu _ e_peak <<<"$exporting"
row() { awk -v n="$1" -v p="$2" -v r="$3" -v u="$4" 'BEGIN { printf "    %-24s %12s %12s %8.3fx  %s\n", n, p, r, (r > 0 ? p / r : 0), u }'; }
printf '    %-24s %12s %12s %9s\n' figure pulse reference ratio
row "requests/s" "$p_rps" "$r_rps" ""
row "latency p50 (us)" "$(to_us "$p_p50")" "$(to_us "$r_p50")" ""
row "latency p99 (us)" "$(to_us "$p_p99")" "$(to_us "$r_p99")" ""
row "CPU per request (us)" "$p_cpu" "$r_cpu" "goal <= 1.10x"
row "idle RSS (KiB)" "$p_idle" "$r_idle" "goal: pulse <= 2048 KiB"
row "peak RSS (KiB)" "$p_peak" "$r_peak" ""
row "cold start (us)" "$pulse_cold" "$reference_cold" "goal: pulse < 3000 us"
row "export on: requests/s" "$e_rps" "$r_rps" "spans to a local OTLP sink, always_on"
row "export on: CPU/request" "$e_cpu" "$r_cpu" ""
row "export on: peak RSS" "$e_peak" "$r_peak" ""
