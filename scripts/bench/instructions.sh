#!/usr/bin/env bash
# Counts the user-space instructions a server spends per request, under
# callgrind: REQUESTS keep-alive GETs of PATH on one connection, minus a run
# with none, so that start-up and shutdown cancel out. Unlike CPU time, the
# count does not move with the machine's load: it is the figure to compare
# two builds with. Kernel time (most of a small request's cost) is not in it.
#
# Usage: scripts/bench/instructions.sh BINARY [PATH] [REQUESTS]
#   (default / and 10000) Prints the count per request on stdout.
# PROTOCOL=h2c sends the requests over one h2c connection with h2load
# instead of HTTP/1.1; SERVER_ENV="NAME=value ..." adds settings to the
# server's environment (span export, say).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"

binary="${1:?usage: scripts/bench/instructions.sh BINARY [PATH] [REQUESTS]}"
path="${2:-/}"
requests="${3:-10000}"
[ -x "$binary" ] || die "BINARY must be an executable file, got '$binary'"
[[ "$path" == /* ]] || die "PATH must start with /, got '$path'"
need_count REQUESTS "$requests"
# Progress goes to stderr: stdout is the count alone.
protocol="${PROTOCOL:-http1}"
[[ "$protocol" == http1 || "$protocol" == h2c ]] || die "PROTOCOL must be http1 or h2c, got '$protocol'"
read -r -a server_env <<<"${SERVER_ENV:-}"
apt_install valgrind curl python3 nghttp2-client >&2
server_pid=""
trap '[ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true' EXIT

# instructions COUNT: the instructions of a run that serves COUNT requests.
instructions() {
  local count="$1" port log
  port="$(free_port)"
  log="$(mktemp)"
  # On one CPU, as bench.sh runs the servers: pulse and the references then
  # start the same runtime as there (tokio's current-thread scheduler).
  env PORT="$port" HOST=127.0.0.1 PULSE_LOG_FORMAT=json PULSE_DRAIN_DELAY=0 "${server_env[@]}" \
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$binary" >/dev/null 2>"$log" &
  server_pid=$!
  wait_http "http://127.0.0.1:$port$path" 60 || die "$binary did not start under valgrind"
  if [ "$protocol" = h2c ]; then
    [ "$count" -eq 0 ] || h2load -n "$count" -c 1 -m 1 "http://127.0.0.1:$port$path" 2>&1 |
      grep -q "succeeded, 0 failed" || die "h2load: not every GET $path succeeded"
  else
    python3 - "$port" "$path" "$count" <<'PY'
import http.client, sys
port, path, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for _ in range(count):
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"GET {path} answered {response.status}")
PY
  fi
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=""
  grep -o 'Collected : [0-9]*' "$log" | awk '{ print $3 }' || die "no callgrind total for $binary"
  rm -f "$log"
}

info "callgrind: $(basename "$binary"), GET $path over $protocol, an idle run and one of $requests requests" >&2
idle="$(instructions 0)"
loaded="$(instructions "$requests")"
echo $(((loaded - idle) / requests))
