#!/usr/bin/env bash
# End-to-end proof that a rolling restart loses no request: three pulse
# replicas behind HAProxy (deploy/compose/replicas.yaml), an open-loop load
# of 200 requests/s through HAProxy, and scripts/rollout.sh run twice in a
# row under it. Then the negative control: the same stack with the drain
# taken away must lose requests, or the test could not tell the difference.
#
# Usage: scripts/e2e/rollout.sh upstream|standin [IMAGE]
#   upstream  the pinned HAProxy, Prometheus and Alertmanager images (GitHub)
#   standin   local stand-ins built from Debian packages (no registry here)
#   IMAGE     the pulse image to start from (default localhost/pulse:dev, as
#             scripts/build/image.sh builds it)
#
# It passes when, across both rollouts,
#   - no request failed (no non-2xx, no reset, no timeout: open-loop.py);
#   - every replica served traffic before, and every new one after (each
#     container's own access log);
#   - Prometheus sees count(up{job="pulse"} == 1) == 3 before and after;
#   - HAProxy's exporter counted each server going DOWN at least twice and
#     reports each UP at the end;
#   - no alert fired but the Watchdog and the per-instance PulseDown
#     warning, and every dashboard panel returns a number (healthy-stack.py).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"
started=$SECONDS

mode="${1:-}"
base_image="${2:-localhost/pulse:dev}"
export COMPOSE_PROJECT_NAME="pulse-rollout-$$"
export COMPOSE_FILE=compose.yaml:deploy/compose/replicas.yaml
export PULSE_REPLICAS=3 PULSE_IMAGE="$base_image" PULSE_FAULT_INJECTION=false
case "$mode" in
  upstream) info "mode upstream: the pinned HAProxy, Prometheus and Alertmanager images" ;;
  standin)
    info "mode standin: local stand-ins for HAProxy, PostgreSQL, Prometheus and Alertmanager"
    skip "the rollout with the upstream HAProxy, Prometheus and Alertmanager images" \
      "no registry here; scripts/e2e/rollout.sh upstream runs them in GitHub Actions"
    skip "the rollout on a real Kubernetes (kind)" \
      "no Kubernetes control plane here; the kind job of .github/workflows/ci.yml runs it"
    scripts/sandbox/build-standins.sh postgres prometheus alertmanager haproxy
    export POSTGRES_IMAGE=localhost/standin/postgres:debian
    export PROMETHEUS_IMAGE=localhost/standin/prometheus:debian
    export ALERTMANAGER_IMAGE=localhost/standin/alertmanager:debian
    export HAPROXY_IMAGE=localhost/standin/haproxy:debian
    ;;
  *) die "usage: scripts/e2e/rollout.sh upstream|standin [IMAGE]" ;;
esac
podman_session
podman image exists "$base_image" || die "no image $base_image: build it first (scripts/build/image.sh amd64 $base_image)"
podman_setup "$base_image"
need_python_yaml

PULSE_PORT="$(free_port)"
PROMETHEUS_PORT="$(free_port)"
ALERTMANAGER_PORT="$(free_port)"
HAPROXY_STATS_PORT="$(free_port)"
export PULSE_PORT PROMETHEUS_PORT ALERTMANAGER_PORT HAPROXY_STATS_PORT
lb_url="http://127.0.0.1:$PULSE_PORT"
stats_url="http://127.0.0.1:$HAPROXY_STATS_PORT"
prometheus_url="http://127.0.0.1:$PROMETHEUS_PORT"
services=(secrets postgres pulse lb alert-log prometheus alertmanager)
work="$(mktemp -d)"

cleanup() {
  local code=$?
  [ -z "${load_pid:-}" ] || kill "$load_pid" 2>/dev/null || true
  if [ "$code" -ne 0 ]; then
    step "failed: the containers' last log lines"
    for container in $(podman ps -a --filter "label=io.podman.compose.project=$COMPOSE_PROJECT_NAME" --format '{{.Names}}'); do
      echo "--- $container"
      podman logs --tail 10 "$container" 2>&1 | grep -v '"pulse::access"' || true
    done
  fi
  step "tearing down $COMPOSE_PROJECT_NAME (containers, network, volumes)"
  podman-compose down -v -t 2 >/dev/null 2>&1 || true
  podman ps -aq --filter "label=io.podman.compose.project=$COMPOSE_PROJECT_NAME" | xargs -r podman rm -f >/dev/null 2>&1 || true
  podman volume ls -q --filter "label=io.podman.compose.project=$COMPOSE_PROJECT_NAME" | xargs -r podman volume rm -f >/dev/null 2>&1 || true
  podman network ls -q --filter "label=io.podman.compose.project=$COMPOSE_PROJECT_NAME" | xargs -r podman network rm -f >/dev/null 2>&1 || true
  podman rmi localhost/pulse:rollout-1 localhost/pulse:rollout-2 >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$code"
}
trap cleanup EXIT

# prom_value EXPR prints the first value of an instant query, or "none".
prom_value() {
  curl -s --max-time 5 "$prometheus_url/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
result = json.load(sys.stdin)["data"]["result"]
print(result[0]["value"][1] if result else "none")'
}
# wait_prom EXPR WANT SECONDS waits until prom_value EXPR prints WANT.
wait_prom() {
  local deadline=$((SECONDS + $3)) value
  until value="$(prom_value "$1")" && [ "$value" = "$2" ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "Prometheus: $1 is $value after $3s, expected $2"
    sleep 1
  done
  info "Prometheus: $1 = $value"
}
# wait_all_up SECONDS waits until HAProxy reports all 3 replicas UP.
wait_all_up() {
  local deadline=$((SECONDS + $1))
  until [ "$(haproxy_servers "$stats_url" 2>/dev/null | grep -c '^UP ')" -eq 3 ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "HAProxy does not report 3 replicas UP: $(haproxy_servers "$stats_url" | tr '\n' ' ')"
    sleep 0.5
  done
  info "HAProxy: $(haproxy_servers "$stats_url" | tr '\n' ' ')"
}
replicas() {
  podman ps --filter "label=io.podman.compose.project=$COMPOSE_PROJECT_NAME" \
    --filter label=com.docker.compose.service=pulse --format '{{.ID}} {{.Names}}' | sort -k2
}
# served_root CONTAINER prints how many GET / its access log holds.
served_root() {
  podman logs "$1" 2>/dev/null | grep '"target":"pulse::access"' | grep -c '"path":"/",' || true
}
# every_replica_served WHEN checks each running replica's access log.
every_replica_served() {
  local id name served
  while read -r id name; do
    served="$(served_root "$id")"
    [ "$served" -gt 0 ] || die "$name ($id) served no request $1"
    info "$name ($id) served $served requests $1"
  done < <(replicas)
}
# exporter_metric NAME prints "server value" per server of the pulse
# backend, from HAProxy's own Prometheus exporter.
exporter_metric() {
  curl -sf --max-time 2 "$stats_url/metrics" |
    sed -n "s/^$1{proxy=\"pulse\",server=\"\\([^\"]*\\)\"\\(,state=\"UP\"\\)\\{0,1\\}} \\(.*\\)/\\1 \\3/p" | sort
}
# load_start NAME starts open-loop.py through HAProxy; load_stop waits for it.
load_start() {
  rm -f "$work/stop"
  python3 scripts/e2e/open-loop.py "$lb_url/" --rate 200 --max-seconds 300 \
    --stop-file "$work/stop" --report "$work/$1.json" &
  load_pid=$!
}
load_stop() {
  local code=0
  touch "$work/stop"
  wait "$load_pid" || code=$?
  load_pid=""
  return "$code"
}

step "rollout images: two derived from $base_image, so each rollout changes the image"
for n in 1 2; do
  printf 'FROM %s\nLABEL io.pulse.e2e.rollout="%s"\n' "$base_image" "$n" >"$work/Containerfile.$n"
  podman build --quiet --format docker -t "localhost/pulse:rollout-$n" -f "$work/Containerfile.$n" "$work" >/dev/null
  info "localhost/pulse:rollout-$n"
done

step "podman-compose up: 3 replicas behind HAProxy, Prometheus, Alertmanager ($(podman-compose version 2>/dev/null | head -n1))"
podman-compose up -d --no-build "${services[@]}" >"$work/up.log" 2>&1 || {
  cat "$work/up.log"
  die "podman-compose up failed"
}
wait_http "$stats_url/health" 60 || die "HAProxy is not up at $stats_url"
wait_all_up 60
wait_http "$prometheus_url/-/ready" 60 || die "Prometheus is not ready at $prometheus_url"
step "Prometheus finds each replica, not the load balancer"
wait_prom 'count(up{job="pulse"} == 1)' 3 60
wait_prom 'count(up{job="haproxy"} == 1)' 1 60

step "open-loop load through HAProxy ($lb_url) at 200 requests/s, for both rollouts"
load_start rollouts
sleep 15
every_replica_served "before the rollouts"
mapfile -t before < <(replicas | awk '{ print $1 }')
exporter_metric haproxy_server_check_up_down_total >"$work/downs-before"

scripts/rollout.sh localhost/pulse:rollout-1
scripts/rollout.sh localhost/pulse:rollout-2
sleep 15
load_code=0
load_stop || load_code=$?

step "the outcome (open-loop.py's counts above)"
[ "$load_code" -eq 0 ] || die "requests failed during the rolling restarts (open-loop.py exit $load_code)"
info "no request failed"
for id in $(replicas | awk '{ print $1 }'); do
  for old in "${before[@]}"; do
    [ "$id" != "$old" ] || die "replica $id was not replaced"
  done
done
info "every replica is a new container"
every_replica_served "after the rollouts"
wait_prom 'count(up{job="pulse"} == 1)' 3 60
wait_prom 'count(up{job="pulse"})' 3 60
exporter_metric haproxy_server_check_up_down_total >"$work/downs-after"
while read -r server after; do
  before_count="$(awk -v s="$server" '$1 == s { print $2 }' "$work/downs-before")"
  [ $((after - ${before_count:-0})) -ge 2 ] ||
    die "HAProxy saw $server go DOWN $((after - ${before_count:-0})) times in two rollouts, expected at least 2"
  info "HAProxy: $server went DOWN $((after - ${before_count:-0})) times"
done <"$work/downs-after"
[ "$(wc -l <"$work/downs-after")" -eq 3 ] || die "HAProxy's exporter lists $(wc -l <"$work/downs-after") servers, expected 3"
exporter_metric haproxy_server_status >"$work/status"
[ "$(awk '$2 == 1' "$work/status" | wc -l)" -eq 3 ] || die "not every server is UP at the end: $(tr '\n' ' ' <"$work/status")"
info "HAProxy: every server UP again"
alerts="$(prom_value "count(max_over_time(ALERTS{alertstate=\"firing\", alertname!~\"Watchdog|PulseDown\"}[$((SECONDS - started + 60))s]))")"
[ "$alerts" = none ] ||
  die "alerts fired during the rollouts: $(curl -s "$prometheus_url/api/v1/query" --data-urlencode 'query=ALERTS{alertstate="firing"}')"
info "no alert fired but the Watchdog and the per-instance warning"
# A replaced replica scraped between its stop and the next DNS refresh has
# up == 0 for one sample: PulseDown pending for it, until its series ends.
wait_prom 'count(ALERTS{alertname!="Watchdog"})' none 90
# healthy-stack.py reads pulse's /metrics too: with the generated token.
PULSE_METRICS_TOKEN="$(podman exec "$(podman ps --filter "label=io.podman.compose.project=$COMPOSE_PROJECT_NAME" \
  --filter "label=com.docker.compose.service=prometheus" --format '{{.Names}}')" sh -c 'read -r token </run/secrets/metrics_token; echo "$token"')" \
  python3 scripts/e2e/healthy-stack.py "$prometheus_url" "$lb_url" 120 || die "the stack does not look healthy with 3 replicas"

step "/notes through HAProxy: a note written through one replica is read through every one"
location="$(post_note "$lb_url" "through the load balancer")"
for attempt in 1 2 3 4 5 6; do
  text="$(note_text "$lb_url" "$location")"
  [ "$text" = "through the load balancer" ] || die "GET $location through HAProxy, attempt $attempt: '$text'"
done
info "POST /notes 201 $location; read back 6 times through HAProxy's round robin"

step "negative control: no drain delay, and HAProxy checks only that the port is open"
mkdir -p "$work/haproxy-no-drain"
grep -v -e '^  option httpchk' -e '^  http-check ' deploy/haproxy/haproxy.cfg >"$work/haproxy-no-drain/haproxy.cfg"
removed=$(($(wc -l <deploy/haproxy/haproxy.cfg) - $(wc -l <"$work/haproxy-no-drain/haproxy.cfg")))
[ "$removed" -eq 3 ] || die "expected to take out 3 /readyz check lines of haproxy.cfg, took $removed"
cat >"$work/no-drain.yaml" <<EOF
services:
  pulse:
    environment:
      PULSE_DRAIN_DELAY: 0s
  lb:
    volumes: !override
      - $work/haproxy-no-drain:/usr/local/etc/haproxy:ro,z
EOF
export COMPOSE_FILE="$COMPOSE_FILE:$work/no-drain.yaml"
podman-compose up -d --no-build pulse lb >"$work/up.log" 2>&1 || {
  cat "$work/up.log"
  die "podman-compose up (negative control) failed"
}
wait_http "$stats_url/health" 60 || die "HAProxy is not up at $stats_url"
wait_all_up 60
load_start no-drain
sleep 5
scripts/rollout.sh localhost/pulse:rollout-1
sleep 5
load_code=0
load_stop || load_code=$?
[ "$load_code" -eq 1 ] ||
  die "without the drain the rollout lost no request (open-loop.py exit $load_code): this test cannot tell a drained rollout from one that is not"
info "without the drain requests fail, as they must"

step "e2e-rollout passed in $((SECONDS - started))s"
