#!/usr/bin/env bash
# Checks, in seconds, that this machine can do what the later stages need,
# and names the missing package when it cannot: podman starts a container,
# containers on a compose network resolve each other by name (the dnsname
# CNI plugin on podman 4.x with CNI), `podman kube play` can build its pause
# image (catatonit), CPU and memory limits apply (rootless, they need the cpu
# controller delegated), and qemu user emulation is there for arm64.
#
# Usage: scripts/ci/preflight.sh   (scripts/ci.sh runs it after installing)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

apt_install busybox-static qemu-user-static
podman_install
image=localhost/pulse-preflight:busybox
work="$(mktemp -d)"
suffix="$$"
cleanup() {
  podman rm -f "preflight-server-$suffix" >/dev/null 2>&1 || true
  podman network rm -f "preflight-$suffix" >/dev/null 2>&1 || true
  podman pod rm -f "preflight-pod-$suffix" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step "podman builds and starts a container"
cp /bin/busybox "$work/busybox"
printf 'FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT ["/bin/busybox"]\n' >"$work/Containerfile"
podman build --quiet -t "$image" "$work" >/dev/null
podman_setup "$image" true
info "$(podman --version), network backend $(podman info --format '{{.Host.NetworkBackend}}')"

step "podman applies CPU and memory limits (compose.yaml and the kube Deployment set both)"
# podman_setup above has already failed, naming the cause, if it cannot.
info "podman runs $(podman_mode) ($(podman info --format '{{.Host.CgroupManager}} cgroup {{.Host.CgroupsVersion}}, controllers: {{.Host.CgroupControllers}}' 2>/dev/null || echo unknown))"

step "containers on a compose network resolve each other by name"
podman network create "preflight-$suffix" >/dev/null
podman run -d --name "preflight-server-$suffix" --network "preflight-$suffix" "$image" sleep 30 >/dev/null
# Only name resolution is asked of the network's DNS server; no traffic goes
# to the other container.
if ! answer="$(podman run --rm --network "preflight-$suffix" "$image" nslookup "preflight-server-$suffix" 2>&1)"; then
  printf '%s\n' "$answer"
  die "containers cannot resolve each other by name: with podman's CNI backend this needs the dnsname plugin (Debian: golang-github-containernetworking-plugin-dnsname)"
fi
info "preflight-server-$suffix resolves inside the network"

step "podman can create a pod (the pause image kube play needs)"
if ! answer="$(podman pod create --name "preflight-pod-$suffix" 2>&1)"; then
  printf '%s\n' "$answer"
  die "podman cannot build its pause image: it needs catatonit (Debian: catatonit)"
fi
info "pod created with its infra container"

step "qemu user emulation for the arm64 checks"
info "$(qemu-aarch64-static --version | head -n1)"
