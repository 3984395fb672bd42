#!/usr/bin/env bash
# Builds the multi-arch image (linux/amd64 and linux/arm64) from the static
# binaries in dist/ with the same Containerfile, as one manifest list, and
# pushes it tagged with the version and the commit.
#
# Usage: scripts/release/publish-image.sh IMAGE VERSION REVISION
#   e.g. scripts/release/publish-image.sh ghcr.io/owner/pulse 0.1.0 ffb7030eec79
# Without REGISTRY_TOKEN it builds and inspects the manifest list but pushes
# nothing (how scripts/ci.sh runs it). In GitHub Actions it writes `image`
# and `digest` to $GITHUB_OUTPUT for signing.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"
podman_session

image="${1:?usage: scripts/release/publish-image.sh IMAGE VERSION REVISION}"
version="${2:?version}"
revision="${3:?revision}"
source_url="${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY:-pulse-dev/pulse}"
list="$image:$version"
work="$(mktemp -d)"
trap 'rm -rf "$work"; podman manifest rm "$list" >/dev/null 2>&1 || true' EXIT

podman manifest rm "$list" >/dev/null 2>&1 || true
podman manifest create "$list" >/dev/null
for arch in amd64 arm64; do
  case "$arch" in
    amd64) binary=dist/pulse-x86_64-unknown-linux-musl ;;
    arm64) binary=dist/pulse-aarch64-unknown-linux-musl ;;
  esac
  [ -f "$binary" ] || die "$binary is missing: run scripts/build/static.sh for both targets"
  mkdir -p "$work/$arch"
  cp "$binary" "$work/$arch/pulse"
  chmod +x "$work/$arch/pulse"
  step "podman build --platform linux/$arch --build-context bin=$binary --manifest $list"
  podman build --quiet --format docker --platform "linux/$arch" --build-context "bin=$work/$arch" \
    --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=$source_url" \
    --manifest "$list" . >/dev/null
done
platforms="$(podman manifest inspect "$list" | python3 -c 'import json, sys
print(" ".join(sorted(m["platform"]["os"] + "/" + m["platform"]["architecture"] for m in json.load(sys.stdin)["manifests"])))')"
[ "$platforms" = "linux/amd64 linux/arm64" ] || die "the manifest list holds '$platforms'"
info "$list: $platforms"

if [ -z "${REGISTRY_TOKEN:-}" ]; then
  info "no REGISTRY_TOKEN: built and checked, not pushed"
  exit 0
fi
step "pushing $list and $image:$revision"
podman login --username "${REGISTRY_USER:?}" --password-stdin "${image%%/*}" <<<"$REGISTRY_TOKEN"
# The same login where cosign and the provenance action look for it.
scripts/release/docker-config.sh "${image%%/*}" "$REGISTRY_USER" <<<"$REGISTRY_TOKEN"
podman manifest push --all --format v2s2 --digestfile "$work/digest" "$list" "docker://$image:$version"
podman manifest push --all --format v2s2 "$list" "docker://$image:$revision"
digest="$(cat "$work/digest")"
info "$image@$digest"
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  echo "image=$image" >>"$GITHUB_OUTPUT"
  echo "digest=$digest" >>"$GITHUB_OUTPUT"
fi
