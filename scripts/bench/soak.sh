#!/usr/bin/env bash
# Soak test: 10 minutes of mixed load (successes, 404s, 5xx, panics, delays)
# against the release binary, sampling its RSS and open file descriptors
# every 10 s. Passes when RSS at the end is within 10% of RSS after the first
# minute and the descriptors return to their baseline once the load stops.
#
# Usage: scripts/bench/soak.sh [MINUTES] [CONNECTIONS]   (default 10 and 64)
# Not part of scripts/ci.sh: it takes ten minutes.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

minutes="${1:-10}"
connections="${2:-64}"
[[ "$minutes" =~ ^[0-9]+$ && "$minutes" -ge 2 ]] || die "MINUTES must be 2 or more"
apt_install wrk curl
binary="$(static_binary "$MUSL_TARGET")"
work="$(mktemp -d)"
trap 'stop_pulse || true; rm -rf "$work"' EXIT

# Mixed traffic: mostly /, some health checks, 404s, 5xx, panics and short delays.
cat >"$work/mix.lua" <<'LUA'
local paths = { "/", "/", "/", "/", "/", "/health", "/version", "/nope", "/status/500",
                "/status/503", "/panic", "/delay/20", "/metrics" }
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
LUA

start_pulse "$binary" "$work/pulse.log" PULSE_FAULT_INJECTION=true RUST_LOG=info,pulse::access=warn PULSE_LOG_FORMAT=json
pid="$PULSE_PID"
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }
fds() { find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
baseline_fds="$(fds)"
step "soaking $PULSE_URL for ${minutes} min with $connections connections (baseline: $(rss) KiB, $baseline_fds fds)"
wrk -t1 -c"$connections" -d"${minutes}m" -s "$work/mix.lua" "$PULSE_URL/" >"$work/wrk.txt" 2>&1 &
wrk_pid=$!
samples=$((minutes * 6))
rss_after_first_minute=""
for sample in $(seq 1 "$samples"); do
  sleep 10
  kill -0 "$pid" 2>/dev/null || die "pulse died during the soak"
  line="$(printf '%4ss  rss %6s KiB  fds %4s' "$((sample * 10))" "$(rss)" "$(fds)")"
  info "$line"
  echo "$line" >>"$work/samples.txt"
  [ "$sample" -eq 6 ] && rss_after_first_minute="$(rss)"
  # The last sample taken while the load still runs.
  [ "$sample" -eq "$((samples - 1))" ] && rss_end="$(rss)"
done
wait "$wrk_pid" || true
sed 's/^/    wrk: /' "$work/wrk.txt" | grep -E 'requests in|Requests/sec|Non-2xx|Socket errors' || true

step "after the load"
sleep 15
fds_end="$(fds)"
info "RSS under load after 1 min: $rss_after_first_minute KiB; at the end of the load: $rss_end KiB; idle again: $(rss) KiB"
info "fds: baseline $baseline_fds, after the load $fds_end"
growth="$(awk -v a="$rss_after_first_minute" -v b="$rss_end" 'BEGIN { printf "%.1f", (b - a) * 100 / a }')"
info "RSS change from minute 1 to the end of the load: $growth%"
awk -v g="$growth" 'BEGIN { exit !(g <= 10 && g >= -10) }' || die "RSS changed by $growth% (more than 10%)"
[ "$fds_end" -le "$baseline_fds" ] || die "file descriptors did not return to the baseline ($fds_end > $baseline_fds)"
grep -q '"level":"ERROR","target":"pulse::panic"' "$work/pulse.log" || die "no panic was logged: the mix did not reach /panic"
info "soak passed"
