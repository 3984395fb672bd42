#!/usr/bin/env bash
# Runs the pulse image with the same lockdown as compose.yaml, on a free port
# of 127.0.0.1, and smoke-tests it through that port.
#
# Usage: scripts/e2e/image-smoke.sh [IMAGE]   (default localhost/pulse:dev)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

image="${1:-localhost/pulse:dev}"
podman_setup "$image"
port="$(free_port)"
name="pulse-smoke-$$"
trap 'podman rm -f "$name" >/dev/null 2>&1 || true' EXIT

step "podman run $image on 127.0.0.1:$port (read-only, no capabilities, uid 65532)"
podman run -d --name "$name" -p "127.0.0.1:$port:8080" --read-only --cap-drop ALL \
  --security-opt no-new-privileges --user 65532:65532 "$image" >/dev/null 2>&1
scripts/smoke.sh "http://127.0.0.1:$port" 20
podman healthcheck run "$name" 2>/dev/null || die "the image's HEALTHCHECK failed"
info "HEALTHCHECK (/pulse healthcheck) passes"
