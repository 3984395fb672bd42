#!/usr/bin/env bash
# Builds local stand-ins for upstream images, for machines without a
# container registry (this repo's CI sandbox). A fork whose machines can pull
# images can delete this script and scripts/sandbox/standins/.
#
# Usage: scripts/sandbox/build-standins.sh [prometheus] [alertmanager] [haproxy] [postgres] [rust]
#        (default: prometheus alertmanager)
#
# prometheus, alertmanager, haproxy, postgres: Debian's binaries in scratch, tagged
#   localhost/standin/NAME:debian (clearly not the upstream images). The
#   binaries link glibc only, so each image is the binary, libc.so.6, the
#   dynamic loader and a static busybox (sh and wget, as upstream).
# rust: the builder the Containerfile's `bin` stage names, built from a
#   debootstrap'ed Debian 12 and rustup, and tagged with that upstream name
#   without its digest (builder_tag); stand-in builds use a copy of the
#   Containerfile without the digest (standin_containerfile). It is built once per
#   machine; PULSE_REBUILD_STANDINS=1 builds it again.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"

names=("$@")
[ "${#names[@]}" -gt 0 ] || names=(prometheus alertmanager)
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

# postgres_rootfs DIR: what the server binary alone lacks: the tools the
# entrypoint and the healthcheck run and their libraries, the share files
# initdb reads, time zones, the user it runs as, and its socket directory.
postgres_rootfs() {
  local dir="$1" bin=/usr/lib/postgresql/15/bin tool library
  mkdir -p "$dir/rootfs$bin" "$dir/rootfs/usr/share/postgresql" "$dir/rootfs/usr/share/zoneinfo" \
    "$dir/rootfs/var/run/postgresql"
  for tool in postgres initdb pg_ctl pg_isready psql; do
    cp "$bin/$tool" "$dir/rootfs$bin/$tool"
    for library in $(ldd "$bin/$tool" | grep -o '/[^ ]*'); do
      mkdir -p "$dir/rootfs$(dirname "$library")"
      cp -L "$library" "$dir/rootfs$library"
    done
  done
  # Debian's server finds its libraries and extensions here; not the LLVM
  # JIT (libLLVM alone is 100 MB), which it does without.
  cp -r /usr/lib/postgresql/15/lib "$dir/rootfs/usr/lib/postgresql/15/"
  rm -rf "$dir/rootfs/usr/lib/postgresql/15/lib/llvmjit"* "$dir/rootfs/usr/lib/postgresql/15/lib/bitcode"
  cp -r /usr/share/postgresql/15 "$dir/rootfs/usr/share/postgresql/"
  cp -r /usr/share/zoneinfo/UTC /usr/share/zoneinfo/Etc "$dir/rootfs/usr/share/zoneinfo/"
  printf 'root:x:0:0::/:/bin/sh\npostgres:x:999:999::/var/lib/postgresql:/bin/sh\n' >"$dir/rootfs/etc/passwd"
  printf 'root:x:0:\npostgres:x:999:\n' >"$dir/rootfs/etc/group"
  cp "$REPO_ROOT/scripts/sandbox/standins/postgres-entrypoint.sh" "$dir/rootfs/bin/docker-entrypoint.sh"
  chmod 755 "$dir/rootfs/bin/docker-entrypoint.sh"
  chmod 3777 "$dir/rootfs/var/run/postgresql"
}

debian_standin() {
  local name="$1" package binary
  case "$name" in
    prometheus) package=prometheus binary=/usr/bin/prometheus ;;
    alertmanager) package=prometheus-alertmanager binary=/usr/bin/prometheus-alertmanager ;;
    haproxy) package=haproxy binary=/usr/sbin/haproxy ;;
    postgres) package=postgresql-15 binary=/usr/lib/postgresql/15/bin/postgres ;;
  esac
  apt_install podman busybox-static "$package"
  step "building localhost/standin/$name:debian"
  rootfs "$work/$name" "$binary" "$name"
  case "$name" in
    prometheus) cp /usr/bin/promtool "$work/$name/rootfs/bin/promtool" ;;
    alertmanager)
      # Debian's alertmanager reads its notification templates from here.
      mkdir -p "$work/$name/rootfs/usr/share/prometheus"
      cp -r /usr/share/prometheus/alertmanager "$work/$name/rootfs/usr/share/prometheus/"
      ;;
    haproxy) mkdir -p "$work/$name/rootfs/usr/local/etc/haproxy" ;;
    postgres) postgres_rootfs "$work/$name" ;;
  esac
  cp "$REPO_ROOT/scripts/sandbox/standins/$name.Containerfile" "$work/$name/Containerfile"
  podman build --quiet --format docker -t "localhost/standin/$name:debian" "$work/$name" >/dev/null
  info "$("$binary" --version 2>&1 | head -n1)"
  info "$(podman image inspect --format '{{.Size}}' "localhost/standin/$name:debian") bytes"
}

rust_standin() {
  local builder version root="$work/debian"
  builder="$(builder_tag)"
  version="$(release_toolchain)"
  if podman image exists "$builder" && [ -z "${PULSE_REBUILD_STANDINS:-}" ]; then
    info "$builder: present ($(podman image inspect --format '{{index .Labels "org.opencontainers.image.title"}}' "$builder"))"
    return 0
  fi
  apt_install podman debootstrap ca-certificates
  step "debootstrap --variant=minbase bookworm (the stand-in's base, about a minute)"
  debootstrap --variant=minbase --include=ca-certificates,curl,gcc,libc6-dev \
    bookworm "$root" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 || {
    tail -n 20 "$work/debootstrap.log"
    die "debootstrap failed"
  }
  # THIS BUILD MACHINE ONLY: its outbound TLS is trusted only through the
  # host's CA bundle, which a fresh Debian root lacks, so rustup, the crates.io
  # index and crate downloads inside the `bin` stage would fail with
  # "self-signed certificate in certificate chain". The stand-in carries the
  # host's bundle; the Containerfile and the upstream image need nothing.
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
  tar -C "$root" -c . | podman import --quiet - localhost/standin/debian:bookworm >/dev/null
  info "localhost/standin/debian:bookworm imported"
  step "building the stand-in $builder (rustup, Rust $version)"
  mkdir -p "$work/rust"
  podman build --quiet --format docker --build-arg "RUST_VERSION=$version" \
    -f "$REPO_ROOT/scripts/sandbox/standins/rust.Containerfile" -t "$builder" "$work/rust" >/dev/null
  # podman_setup: this machine's containers.conf where podman's defaults
  # cannot start a container (build-standins.sh runs before any other script
  # has set it).
  podman_setup "$builder" rustc --version
  info "$(podman run --rm "$builder" rustc --version)"
}

for name in "${names[@]}"; do
  case "$name" in
    prometheus | alertmanager | haproxy | postgres) debian_standin "$name" ;;
    rust) rust_standin ;;
    *) die "unknown stand-in '$name': use prometheus, alertmanager, haproxy, postgres or rust" ;;
  esac
done
