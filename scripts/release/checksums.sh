#!/usr/bin/env bash
# Writes dist/SHA256SUMS for every release asset in dist/ and verifies it.
# Usage: scripts/release/checksums.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT/dist"

mapfile -t assets < <(find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | sort)
[ "${#assets[@]}" -gt 0 ] || die "dist/ holds no release assets"
step "sha256sum ${assets[*]}"
sha256sum "${assets[@]}" >SHA256SUMS
sha256sum --check --quiet SHA256SUMS
sed 's/^/    /' SHA256SUMS
