#!/usr/bin/env bash
# Builds the image from source the way `podman compose up` and
# `podman build .` do: the Containerfile's `bin` stage compiles pulse in the
# Rust builder image, for amd64 and arm64 (cross-compiled with rust-lld), and
# then smoke-tests both images: amd64 as a locked-down container, arm64's
# binary under qemu (no binfmt_misc is needed).
#
# Usage: scripts/build/image-from-source.sh upstream|standin
#   upstream  the Containerfile's pinned builder is pulled (GitHub Actions, your machine)
#   standin   a local stand-in tagged with the builder's name (without its
#             digest) is built first (scripts/sandbox/build-standins.sh rust),
#             for machines with no registry
# It prints the cold build time of each architecture and the warm time of a
# rebuild after a source edit, with the dependency layer cached.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"
started=$SECONDS

mode="${1:-}"
builder="$(builder_image)"
case "$mode" in
  upstream) info "mode upstream: podman pulls $builder" ;;
  standin)
    info "mode standin: $(builder_tag) is a local stand-in built here"
    skip "source build with the upstream Rust image" "no registry here; built with a stand-in tagged $(builder_tag)"
    scripts/sandbox/build-standins.sh rust
    ;;
  *) die "usage: scripts/build/image-from-source.sh upstream|standin" ;;
esac
apt_install qemu-user-static file
podman_install

# The build context: a copy of what the Containerfile reads, so a warm
# rebuild can edit a source file without touching the work tree.
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp -r Containerfile .containerignore Cargo.toml Cargo.lock build.rs .cargo src "$context/"
mkdir -p "$context/scripts/build"
cp scripts/build/link-ordered.sh scripts/build/hot-functions.txt "$context/scripts/build/"
if [ "$mode" = standin ]; then standin_containerfile "$context"; fi
revision="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
# Podman 4.3 (Debian 12) leaves $BUILDPLATFORM empty in `FROM --platform=`,
# so a cross build would look for an arm64 builder image; naming the build
# platform makes the bin stage run natively and cross-compile, as newer
# podman and docker buildx do by themselves.
build_platform="linux/$(podman info --format '{{.Host.Arch}}')"

# build ARCH TAG: podman build --platform linux/ARCH, timed.
build() {
  local arch="$1" tag="$2" build_started=$SECONDS log
  log="$(mktemp)"
  step "podman build --platform linux/$arch -t $tag . (from source)"
  podman build --format docker --platform "linux/$arch" --build-arg "BUILDPLATFORM=$build_platform" \
    --build-arg "REVISION=$revision" \
    -t "$tag" "$context" >"$log" 2>&1 || {
    tail -n 40 "$log"
    die "the source build for $arch failed"
  }
  rm -f "$log"
  info "$tag built in $((SECONDS - build_started))s, $(podman image inspect --format '{{.Size}}' "$tag") bytes"
  [ "$(podman image inspect --format '{{.Architecture}}' "$tag")" = "$arch" ] ||
    die "$tag is not an $arch image"
}

build amd64 localhost/pulse:source-amd64
build arm64 localhost/pulse:source-arm64

step "warm rebuild: a source edit, the dependency layer cached"
printf '\n// warm rebuild at %s\n' "$(date -u +%FT%TZ)" >>"$context/src/main.rs"
build amd64 localhost/pulse:source-amd64-warm
podman rmi localhost/pulse:source-amd64-warm >/dev/null

step "the amd64 image from source, locked down, smoke-tested"
scripts/e2e/image-smoke.sh localhost/pulse:source-amd64

step "the arm64 image's binary under qemu"
extract="$(mktemp -d)"
container="$(podman create --platform linux/arm64 localhost/pulse:source-arm64)"
podman cp "$container:/pulse" "$extract/pulse"
podman rm "$container" >/dev/null
info "$(file -b "$extract/pulse")"
[[ "$(file -b "$extract/pulse")" == *"ARM aarch64"*"statically linked"* ||
  "$(file -b "$extract/pulse")" == *"ARM aarch64"*"static-pie linked"* ]] ||
  die "the arm64 image does not hold a static aarch64 binary"
scripts/build/smoke-arm64.sh "$extract/pulse"
rm -rf "$extract"

step "build-image-from-source ($mode) passed in $((SECONDS - started))s"
