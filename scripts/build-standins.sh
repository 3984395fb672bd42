#!/usr/bin/env bash
# Builds local stand-ins for the upstream Prometheus and Alertmanager images
# from Debian's binaries, for machines without a container registry.
#
# Usage: scripts/build-standins.sh
# Tags: localhost/standin/prometheus:debian and
#       localhost/standin/alertmanager:debian (clearly not the upstream images).
# The binaries are dynamically linked against glibc only, so each image is
# scratch plus the binary, libc.so.6, the dynamic loader and a static busybox
# (sh and wget, as in the upstream busybox-based images).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

apt_install podman prometheus prometheus-alertmanager busybox-static
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# rootfs DIR BINARY NAME: a minimal root with BINARY at /bin/NAME.
rootfs() {
  local dir="$1" binary="$2" name="$3" library
  mkdir -p "$dir/rootfs/bin" "$dir/rootfs/tmp" "$dir/data" "$dir/rootfs/etc/$name"
  cp "$binary" "$dir/rootfs/bin/$name"
  cp /bin/busybox "$dir/rootfs/bin/busybox"
  ln -s busybox "$dir/rootfs/bin/sh"
  ln -s busybox "$dir/rootfs/bin/wget"
  # Every library the binary loads, at the path the loader looks for it.
  for library in $(ldd "$binary" | grep -o '/[^ ]*'); do
    mkdir -p "$dir/rootfs$(dirname "$library")"
    cp -L "$library" "$dir/rootfs$library"
  done
  chmod 1777 "$dir/rootfs/tmp"
}

for name in prometheus alertmanager; do
  step "building localhost/standin/$name:debian"
  binary=/usr/bin/prometheus
  [ "$name" = alertmanager ] && binary=/usr/bin/prometheus-alertmanager
  rootfs "$work/$name" "$binary" "$name"
  if [ "$name" = prometheus ]; then
    cp /usr/bin/promtool "$work/$name/rootfs/bin/promtool"
  else
    # Debian's alertmanager reads its notification templates from here.
    mkdir -p "$work/$name/rootfs/usr/share/prometheus"
    cp -r /usr/share/prometheus/alertmanager "$work/$name/rootfs/usr/share/prometheus/"
  fi
  cp "$REPO_ROOT/scripts/standins/$name.Containerfile" "$work/$name/Containerfile"
  podman build --quiet --format docker -t "localhost/standin/$name:debian" "$work/$name" >/dev/null
  info "$("$binary" --version 2>&1 | head -n1)"
  info "$(podman image inspect --format '{{.Size}}' "localhost/standin/$name:debian") bytes"
done
