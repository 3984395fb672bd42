#!/usr/bin/env bash
# Builds the scratch image from a static binary that cargo builds here, with
# the same Containerfile that builds from source elsewhere: the `bin` stage is
# replaced by a folder holding the binary (podman's --build-context).
#
# Usage: scripts/build/image.sh [amd64|arm64] [TAG]   (default: amd64 localhost/pulse:dev)
# PULSE_BINARY=path uses an already built binary (the CI matrix's artifact).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

arch="${1:-amd64}"
tag="${2:-localhost/pulse:dev}"
case "$arch" in
  amd64) target=x86_64-unknown-linux-musl ;;
  arm64) target=aarch64-unknown-linux-musl ;;
  *) die "unknown architecture '$arch': use amd64 or arm64" ;;
esac
# The binary's fence (static.sh, 4.25 MiB) plus the image's few KB of
# metadata; issue 40's goal was 4 MB, before TLS to PostgreSQL.
max_bytes=4500000

command -v podman >/dev/null || podman_install
podman_session
if [ -n "${PULSE_BINARY:-}" ]; then
  binary="$PULSE_BINARY"
  [ -x "$binary" ] || die "PULSE_BINARY=$binary is not an executable file"
else
  step "building the static binary for $target"
  binary="$(static_binary "$target")"
fi
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$binary" "$context/pulse"

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
revision="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
step "podman build --platform linux/$arch --build-context bin=$context -t $tag"
podman build --quiet --format docker --platform "linux/$arch" \
  --build-context "bin=$context" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  -t "$tag" . >/dev/null
size="$(podman image inspect --format '{{.Size}}' "$tag")"
info "$tag: $size bytes (limit $max_bytes)"
[ "$size" -le "$max_bytes" ] || die "the image is over 4.5 MB"
