#!/usr/bin/env bash
# Measures pulse's resident memory with many open keep-alive connections
# (each has sent one request and idles), at 0, 1000 and 5000 connections.
#
# Usage: scripts/bench/measure-connections.sh [COUNT...]   (default 1000 5000)
# A measurement for the notes and docs/deploy.md, not a test.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

counts=("$@")
[ "${#counts[@]}" -gt 0 ] || counts=(1000 5000)
binary="$(static_binary "$MUSL_TARGET")"
max=0
for count in "${counts[@]}"; do [ "$count" -gt "$max" ] && max="$count"; done
# Both pulse and the client hold one descriptor per connection.
ulimit -n "$((max + 1024))" 2>/dev/null || die "cannot raise the open-file limit to $((max + 1024))"
work="$(mktemp -d)"
trap 'stop_pulse || true; grep -v access "$work/pulse.log" | tail -n 5; rm -rf "$work"' EXIT
start_pulse "$binary" "$work/pulse.log" PULSE_MAX_CONNECTIONS="$((max + 100))" \
  PULSE_HEADER_READ_TIMEOUT=300s RUST_LOG=info,pulse::access=warn
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$PULSE_PID/status"; }
info "idle: $(rss) KiB"
python3 - "${PULSE_URL#http://}" "$PULSE_PID" "${counts[@]}" <<'PY'
import socket
import sys
import time

host, port = sys.argv[1].rsplit(":", 1)
pid = sys.argv[2]
targets = sorted(int(c) for c in sys.argv[3:])

def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

sockets = []
for target in targets:
    opened = []
    while len(sockets) + len(opened) < target:
        s = socket.create_connection((host, int(port)))
        s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        opened.append(s)
    for s in opened:
        s.settimeout(10)
        s.recv(4096)  # each connection is served and now idles on keep-alive
    sockets.extend(opened)
    time.sleep(1)
    print(f"    {target} open connections: {rss_kib()} KiB ({rss_kib() / target:.1f} KiB each, all included)")
PY
