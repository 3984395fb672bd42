#!/usr/bin/env bash
# A rolling restart of the pulse replicas of a compose stack started with
# deploy/compose/replicas.yaml, onto a new image, one replica at a time:
#
#   scripts/rollout.sh IMAGE
#
# For each replica it
#   1. drains it: `podman stop` sends SIGTERM, pulse answers /readyz with 503
#      (HAProxy's check takes it out of the pool within a second), keeps
#      serving for PULSE_DRAIN_DELAY, then finishes what is in flight and
#      exits 0;
#   2. removes it and has podman-compose create the same replica again from
#      IMAGE (`up --no-recreate` creates only the missing container);
#   3. waits until HAProxy reports every replica UP again, the new one
#      included, before it touches the next.
# A replica that does not come back stops the rollout, with the others
# still serving.
#
# Settings, with their defaults:
#   COMPOSE_PROJECT_NAME  pulse
#   COMPOSE_FILE          compose.yaml:deploy/compose/replicas.yaml
#   HAPROXY_STATS_URL     http://127.0.0.1:${HAPROXY_STATS_PORT:-8405}
#   ROLLOUT_READY_TIMEOUT 60 (seconds a new replica has to become UP)
# Podman only: it reads the replicas through podman's compose labels.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
podman_session

image="${1:-}"
{ [ "$#" -eq 1 ] && [ -n "$image" ]; } || die "usage: scripts/rollout.sh IMAGE"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-pulse}"
export COMPOSE_FILE="${COMPOSE_FILE:-compose.yaml:deploy/compose/replicas.yaml}"
stats_url="${HAPROXY_STATS_URL:-http://127.0.0.1:${HAPROXY_STATS_PORT:-8405}}"
ready_timeout="${ROLLOUT_READY_TIMEOUT:-60}"
need_count ROLLOUT_READY_TIMEOUT "$ready_timeout"
image_id="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null)" ||
  die "no image '$image' here: build or pull it first"

haproxy_up_count() { haproxy_servers "$stats_url" | awk '$1 == "UP" { n++ } END { print n + 0 }'; }
# address_of CONTAINER prints its address on the compose network, as
# HAProxy's CSV shows a server: IP:8080.
address_of() { podman inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}:8080{{end}}' "$1"; }

mapfile -t replicas < <(podman ps --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
  --filter label=com.docker.compose.service=pulse --format '{{.Names}}' | sort)
count="${#replicas[@]}"
[ "$count" -gt 0 ] || die "no running pulse replica in compose project '$COMPOSE_PROJECT_NAME'"
haproxy_servers "$stats_url" >/dev/null || die "HAProxy's stats do not answer at $stats_url/stats;csv"
up="$(haproxy_up_count)"
[ "$up" -eq "$count" ] ||
  die "HAProxy reports $up of $count replicas UP: bring them all up before a rollout"

step "rolling $count replicas of project $COMPOSE_PROJECT_NAME onto $image, one at a time"
started=$SECONDS
for replica in "${replicas[@]}"; do
  replica_started=$SECONDS
  old_image="$(podman inspect --format '{{.ImageName}}' "$replica")"
  grace="$(podman inspect --format '{{.Config.StopTimeout}}' "$replica")"
  info "$replica ($old_image): draining, stop grace period ${grace}s"
  out="$(podman stop -t "$grace" "$replica" 2>&1)" || die "podman stop $replica failed: $out"
  code="$(podman inspect --format '{{.State.ExitCode}}' "$replica")"
  [ "$code" = 0 ] || die "$replica exited with $code, not 0: it did not shut down cleanly within ${grace}s"
  info "$replica: stopped cleanly after $((SECONDS - replica_started))s; HAProxy reports $(haproxy_up_count) UP"
  out="$(podman rm "$replica" 2>&1)" || die "podman rm $replica failed: $out"
  out="$(PULSE_IMAGE="$image" podman-compose up -d --no-build --no-deps --no-recreate --scale "pulse=$count" pulse 2>&1)" ||
    die "podman-compose could not create $replica again from $image: $out"
  new_image_id="$(podman inspect --format '{{.Image}}' "$replica" 2>/dev/null)" ||
    die "podman-compose did not create $replica again"
  [ "$new_image_id" = "$image_id" ] || die "$replica runs image $new_image_id, not $image ($image_id)"
  address="$(address_of "$replica")"
  deadline=$((SECONDS + ready_timeout))
  # All UP, the new address among them.
  until servers="$(haproxy_servers "$stats_url")" && grep -qx "UP $address" <<<"$servers" &&
    [ "$(grep -c '^UP ' <<<"$servers")" -eq "$count" ]; do
    [ "$SECONDS" -lt "$deadline" ] ||
      die "the new $replica ($address) is not UP in HAProxy after ${ready_timeout}s; stopped here, the other replicas serve"
    sleep 0.5
  done
  info "$replica: replaced ($image, $address), UP in HAProxy, $((SECONDS - replica_started))s in all"
done
step "rollout onto $image done: $count replicas in $((SECONDS - started))s"
