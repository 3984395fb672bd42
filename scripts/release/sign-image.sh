#!/usr/bin/env bash
# Signs a pushed image keyless with cosign (GitHub's OIDC identity) and
# attaches the CycloneDX SBOM as a signed attestation.
#
# Usage: scripts/release/sign-image.sh IMAGE@DIGEST SBOM    (GitHub Actions only:
# keyless signing needs the workflow's id-token permission)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"

reference="${1:?usage: scripts/release/sign-image.sh IMAGE@DIGEST SBOM}"
sbom="${2:?sbom}"
[[ "$reference" == *@sha256:* ]] || die "sign by digest, not by tag: $reference"
command -v cosign >/dev/null || die "cosign is not installed"
step "cosign sign $reference"
cosign sign --yes "$reference"
step "cosign attest --type cyclonedx $reference"
cosign attest --yes --type cyclonedx --predicate "$sbom" "$reference"
