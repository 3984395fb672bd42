#!/usr/bin/env bash
# Scans the image with Trivy and fails on any HIGH or CRITICAL finding.
#
# Usage: scripts/release/scan-image.sh [IMAGE]   (default localhost/pulse:dev)
# Trivy and its vulnerability database are downloaded from GitHub, so this
# runs in GitHub Actions; where neither can be had (this repo's offline CI)
# the scan is recorded as skipped (lib.sh's skip), which fails under GitHub
# Actions.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

image="${1:-localhost/pulse:dev}"
if ! command -v trivy >/dev/null; then
  if [ "${GITHUB_ACTIONS:-}" = true ]; then
    info "installing trivy"
    curl -sfL https://raw.githubusercontent.com/aquasecurity/trivy/main/contrib/install.sh |
      sudo sh -s -- -b /usr/local/bin v0.67.2
  else
    skip "trivy image scan" "trivy and its vulnerability database download from GitHub, which this machine cannot reach; the image job in GitHub Actions runs it"
    exit 0
  fi
fi

step "trivy image --severity HIGH,CRITICAL --exit-code 1 $image"
archive="$(mktemp -d)/image.tar"
# Trivy reads the image from an archive, so no Docker daemon is needed.
podman save --format oci-archive -o "$archive" "$image"
trivy image --input "$archive" --severity HIGH,CRITICAL --exit-code 1
