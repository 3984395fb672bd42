#!/usr/bin/env bash
# What the load balancer's hop costs: pulse through HAProxy, configured by
# deploy/haproxy/haproxy.cfg, against the same pulse direct. HTTP/1.1,
# `wrk -t1 -c32 --latency` on GET /, ROUNDS rounds of SECONDS each, direct
# and through taking turns. pulse and HAProxy share CPU 0 (the server
# side, where the hop's CPU is spent), wrk runs on CPU 1.
#
# Usage: scripts/bench/hop.sh [ROUNDS] [SECONDS] [PULSE_BINARY]
#   (default 3 rounds of 4 s, target/x86_64-unknown-linux-musl/release/pulse)
# Prints one line per round, then one JSON object: each side's median round
# (requests/s, p50, p99, CPU per request of pulse and of HAProxy) and the
# ratios through/direct. A figure with no goal; scripts/bench/bench.sh keeps
# it in docs/bench.json as haproxy_hop.
#
# The config is the shipped one with only what a host needs changed (the
# listen addresses, and the one server at pulse's address instead of the
# compose DNS name); each change is checked to have applied. HAProxy's
# access log goes to /dev/null, as pulse's does.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

rounds="${1:-3}"
seconds="${2:-4}"
pulse="${3:-target/$MUSL_TARGET/release/pulse}"
need_count ROUNDS "$rounds"
need_count SECONDS "$seconds"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs: one for the servers, one for wrk"
apt_install wrk haproxy curl util-linux python3
if [ ! -x "$pulse" ]; then
  [ "$#" -lt 3 ] || die "no pulse binary at $pulse"
  release_cargo build --locked --release --quiet --target "$MUSL_TARGET" --bin pulse
fi
work="$(mktemp -d)"
pulse_pid="" haproxy_pid=""
# An EXIT trap's last status becomes the script's: HAProxy's 143 from
# SIGTERM would fail bench.sh, which calls this script, after the figures.
cleanup() {
  for pid in $pulse_pid $haproxy_pid; do
    if kill "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

pulse_port="$(free_port)"
hop_port="$(free_port)"
stats_port="$(free_port)"
PORT="$pulse_port" HOST=127.0.0.1 PULSE_LOG_FORMAT=json RUST_LOG=info taskset -c 0 "$pulse" >/dev/null 2>&1 &
pulse_pid=$!
wait_http "http://127.0.0.1:$pulse_port/" 10 || die "pulse did not start"

# The host's changes to the shipped config, each required to match once.
python3 - deploy/haproxy/haproxy.cfg "$work/haproxy.cfg" "$pulse_port" "$hop_port" "$stats_port" <<'PY'
import sys
source, target, pulse, hop, stats = sys.argv[1:]
text = open(source).read()
for old, new in [
    ("  bind :8080\n", f"  bind 127.0.0.1:{hop}\n"),
    ("  bind :8405\n", f"  bind 127.0.0.1:{stats}\n"),
    (" resolvers compose init-addr none\n", "\n"),
    ('  server-template pulse "${PULSE_REPLICAS}" pulse:8080\n', f"  server pulse1 127.0.0.1:{pulse}\n"),
]:
    if text.count(old) != 1:
        sys.exit(f"{source}: expected {old.strip()!r} once, found it {text.count(old)} times")
    text = text.replace(old, new)
open(target, "w").write(text)
PY
# -db: in the foreground, one process (no master-worker), so $! is HAProxy.
taskset -c 0 haproxy -db -f "$work/haproxy.cfg" >/dev/null 2>&1 &
haproxy_pid=$!
wait_http "http://127.0.0.1:$hop_port/" 10 || die "HAProxy did not start, or does not reach pulse"

# run SIDE PORT: one round; prints SIDE and the JSON of wrk_json.py with the
# CPU of pulse and of HAProxy per request.
run() {
  local side="$1" port="$2" pulse_before haproxy_before pulse_after haproxy_after
  pulse_before="$(cpu_ns "$pulse_pid")"
  haproxy_before="$(cpu_ns "$haproxy_pid")"
  taskset -c 1 wrk -t1 -c32 -d"${seconds}s" --latency "http://127.0.0.1:$port/" >"$work/wrk.txt"
  pulse_after="$(cpu_ns "$pulse_pid")"
  haproxy_after="$(cpu_ns "$haproxy_pid")"
  python3 scripts/bench/wrk_json.py "$work/wrk.txt" "$((pulse_after - pulse_before))" | python3 -c '
import json, sys
result = json.load(sys.stdin)
result["haproxy_cpu_us"] = int(sys.argv[2]) / 1000 / result["requests"]
print(sys.argv[1], json.dumps(result))' "$side" "$((haproxy_after - haproxy_before))"
}

# On stderr: stdout is the JSON alone, which bench.sh captures.
step "$rounds rounds of ${seconds}s: pulse direct (127.0.0.1:$pulse_port) and through HAProxy $(haproxy -v | awk 'NR == 1 { print $3 }') (127.0.0.1:$hop_port)" >&2
for round in $(seq "$rounds"); do
  for side in direct through; do
    port="$pulse_port"
    [ "$side" = direct ] || port="$hop_port"
    run "$side" "$port" | tee -a "$work/rounds.txt" | sed "s/^/    round $round /" >&2
  done
done
python3 - "$work/rounds.txt" <<'PY'
import json, sys
rounds = {"direct": [], "through": []}
for line in open(sys.argv[1]):
    side, data = line.split(" ", 1)
    rounds[side].append(json.loads(data))
def median(side):
    ordered = sorted(rounds[side], key=lambda r: r["rps"])
    return ordered[len(ordered) // 2]
direct, through = median("direct"), median("through")
cpu = lambda r: r["cpu_us"] + r["haproxy_cpu_us"]
print(json.dumps({
    "direct": direct,
    "through": through,
    "cpu_per_request_ratio": round(cpu(through) / cpu(direct), 3),
    "p99_ratio": round(through["p99_us"] / direct["p99_us"], 3),
    "rps_ratio": round(through["rps"] / direct["rps"], 3),
}))
PY
