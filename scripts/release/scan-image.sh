#!/usr/bin/env bash
# Scans the image with Trivy and fails on any HIGH or CRITICAL finding.
#
# Usage: scripts/release/scan-image.sh [IMAGE]   (default localhost/pulse:dev)
# Trivy and its vulnerability database are downloaded from GitHub, so this
# runs in GitHub Actions; where neither can be had (this repo's offline CI)
# the scan is recorded as skipped (lib.sh's skip), which fails under GitHub
# Actions. The database is kept in $TRIVY_CACHE_DIR (default
# ~/.cache/trivy), which the workflow caches for a day.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"
podman_session

# A pinned release, verified by its SHA-256 before it runs. Not Trivy's
# install script from a branch head, and not the compromised releases: in
# March 2026 Aqua deleted the GitHub releases v0.27.0 to v0.69.1 after a
# security incident (aquasecurity/trivy discussion #10265), and v0.69.4 to
# v0.69.6 were malicious (GHSA-69fq-xp46-6x23). v0.70.0 came out on
# 2026-04-17; the checksum is its trivy_0.70.0_checksums.txt entry.
TRIVY_VERSION=0.70.0
TRIVY_TARBALL="trivy_${TRIVY_VERSION}_Linux-64bit.tar.gz"
TRIVY_SHA256=8b4376d5d6befe5c24d503f10ff136d9e0c49f9127a4279fd110b727929a5aa9

image="${1:-localhost/pulse:dev}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

installed_version() { trivy --version 2>/dev/null | sed -n 's/^Version: //p'; }
if [ "${GITHUB_ACTIONS:-}" = true ]; then
  if [ "$(installed_version)" != "$TRIVY_VERSION" ]; then
    [ "$(uname -sm)" = "Linux x86_64" ] || die "the pinned Trivy is the Linux x86_64 build; this is $(uname -sm)"
    step "installing Trivy $TRIVY_VERSION from its release, checked against SHA-256 $TRIVY_SHA256"
    curl -sSfL --retry 3 -o "$work/$TRIVY_TARBALL" \
      "https://github.com/aquasecurity/trivy/releases/download/v$TRIVY_VERSION/$TRIVY_TARBALL"
    echo "$TRIVY_SHA256  $work/$TRIVY_TARBALL" | sha256sum --check --strict --quiet ||
      die "$TRIVY_TARBALL does not match the pinned SHA-256: not installing it"
    mkdir -p "$HOME/.local/bin"
    tar -xzf "$work/$TRIVY_TARBALL" -C "$HOME/.local/bin" trivy
    export PATH="$HOME/.local/bin:$PATH"
  fi
  info "$(trivy --version | head -n1)"
elif command -v trivy >/dev/null; then
  info "the Trivy on PATH ($(installed_version)); GitHub Actions uses the pinned $TRIVY_VERSION"
else
  skip "trivy image scan" "trivy and its vulnerability database download from GitHub, which this machine cannot reach; the image job in GitHub Actions runs it"
  exit 0
fi

step "trivy image --severity HIGH,CRITICAL --exit-code 1 $image"
# Trivy reads a docker-archive tar (with manifest.json) or an OCI layout
# directory, not podman's oci-archive tar; no Docker daemon is needed.
podman save --format docker-archive -o "$work/image.tar" "$image"
trivy image --input "$work/image.tar" --severity HIGH,CRITICAL --exit-code 1
