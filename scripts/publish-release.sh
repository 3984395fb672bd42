#!/usr/bin/env bash
# Creates the GitHub release for a tag with every asset in dist/.
# Usage: scripts/publish-release.sh TAG    (GitHub Actions: needs GH_TOKEN)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

tag="${1:?usage: scripts/publish-release.sh TAG}"
[ -f dist/SHA256SUMS ] || die "run scripts/checksums.sh first"
[ -n "${GH_TOKEN:-}" ] || die "GH_TOKEN is not set: releases are published from GitHub Actions"
step "gh release create $tag"
gh release create "$tag" dist/* --title "pulse $tag" --generate-notes --verify-tag
