#!/usr/bin/env bash
# End-to-end test of compose.yaml with podman-compose, on this machine.
#
# Usage: scripts/e2e-compose.sh
# Builds the pulse image from a cargo-built binary and local stand-ins for
# Prometheus and Alertmanager (no registry is reachable here), starts pulse,
# the alert log, Prometheus and Alertmanager from the unchanged compose.yaml,
# and checks them from the host through ports published on 127.0.0.1.
# Grafana has no image here; scripts/check-grafana.sh checks its files.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
started=$SECONDS

project="pulse-e2e-$$"
export PULSE_IMAGE=localhost/pulse:dev
export PROMETHEUS_IMAGE=localhost/standin/prometheus:debian
export ALERTMANAGER_IMAGE=localhost/standin/alertmanager:debian

step "building images"
scripts/build-image.sh amd64 "$PULSE_IMAGE"
scripts/build-standins.sh
podman_setup "$PULSE_IMAGE"

PULSE_PORT="$(free_port)"
PROMETHEUS_PORT="$(free_port)"
ALERTMANAGER_PORT="$(free_port)"
export PULSE_PORT PROMETHEUS_PORT ALERTMANAGER_PORT
compose() { podman-compose -p "$project" -f compose.yaml "$@"; }

cleanup() {
  local code=$?
  if [ "$code" -ne 0 ]; then
    step "failed: the containers' last log lines"
    for container in $(podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}'); do
      echo "--- $container"
      podman logs --tail 15 "$container" 2>&1 || true
    done
  fi
  step "tearing down $project (containers, network, volumes)"
  compose down -v -t 2 >/dev/null 2>&1 || true
  podman ps -aq --filter "label=io.podman.compose.project=$project" | xargs -r podman rm -f >/dev/null 2>&1 || true
  podman volume ls -q --filter "label=io.podman.compose.project=$project" | xargs -r podman volume rm -f >/dev/null 2>&1 || true
  podman network ls -q --filter "label=io.podman.compose.project=$project" | xargs -r podman network rm -f >/dev/null 2>&1 || true
  exit "$code"
}
trap cleanup EXIT

step "podman-compose up -d pulse alert-log prometheus alertmanager ($(podman-compose version 2>/dev/null | head -n1))"
compose_log="$(mktemp)"
compose up -d --no-build pulse alert-log prometheus alertmanager >"$compose_log" 2>&1 || {
  cat "$compose_log"
  die "podman-compose up failed"
}
pulse_url="http://127.0.0.1:$PULSE_PORT"
prometheus_url="http://127.0.0.1:$PROMETHEUS_PORT"
alertmanager_url="http://127.0.0.1:$ALERTMANAGER_PORT"

step "waiting for health through the published ports"
wait_http "$pulse_url/readyz" 30 || die "pulse is not ready at $pulse_url"
info "pulse        $pulse_url"
wait_http "$prometheus_url/-/ready" 60 || die "prometheus is not ready at $prometheus_url"
info "prometheus   $prometheus_url"
wait_http "$alertmanager_url/-/ready" 60 || die "alertmanager is not ready at $alertmanager_url"
info "alertmanager $alertmanager_url"

step "scripts/smoke.sh against the container"
scripts/smoke.sh "$pulse_url" 10

step "Prometheus scrapes pulse: up{job=\"pulse\"} == 1"
wait_pulse_scraped "$prometheus_url" 60 ||
  die "Prometheus never saw the pulse target up: $(curl -s "$prometheus_url/api/v1/targets")"
info "$(curl -s "$prometheus_url/api/v1/query" --data-urlencode 'query=up{job="pulse"}' | grep -o '"instance":"[^"]*"') is up"

container="$(podman ps --filter "label=io.podman.compose.project=$project" --filter "label=com.docker.compose.service=pulse" --format '{{.Names}}')"
[ -n "$container" ] || die "no pulse container"
step "the pulse container ($container) runs locked down"
check_locked_down "$container"
memory="$(podman inspect --format '{{.HostConfig.Memory}}' "$container")"
[ "$memory" -gt 0 ] || die "no memory limit"
info "memory limit $memory bytes"
# PulseHighMemory divides by what pulse reads from its own cgroup.
seen="$(curl -s "$pulse_url/metrics" | awk '$1 == "pulse_memory_limit_bytes" { printf "%d", $2 }')"
[ "$seen" = "$memory" ] || die "pulse_memory_limit_bytes is '$seen', the container limit is $memory"
info "pulse_memory_limit_bytes reports the same limit"

step "podman healthcheck run $container"
podman healthcheck run "$container" 2>/dev/null || die "the healthcheck failed"
info "healthy"

step "podman stop ends pulse gracefully within its grace period (10 s)"
stop_started=$SECONDS
podman stop -t 10 "$container" >/dev/null 2>&1
stop_seconds=$((SECONDS - stop_started))
exit_code="$(podman inspect --format '{{.State.ExitCode}}' "$container")"
[ "$exit_code" = 0 ] || die "pulse exited with $exit_code"
[ "$stop_seconds" -lt 10 ] || die "stopping took ${stop_seconds}s: pulse was killed, not drained"
grep -q '"shutdown complete"' <<<"$(podman logs "$container" 2>&1)" || die "no 'shutdown complete' in the log"
info "exit code 0 after ${stop_seconds}s, log ends with shutdown complete"

step "e2e-compose passed in $((SECONDS - started))s"
