#!/usr/bin/env bash
# Dry run of the release's registry login for cosign and attest-build-provenance:
# scripts/release/docker-config.sh must write the Docker config file those
# tools read (auths.<registry>.auth = base64 of user:token, mode 600), keep
# the entries already there, and never print the token.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

step "the release's Docker config login, dry run (what cosign and attest read)"
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
mkdir -p "$home/.docker"
echo '{"auths": {"other.example": {"auth": "b3RoZXI6a2VlcA=="}}, "credsStore": ""}' >"$home/.docker/config.json"
token="dry-run-token-$RANDOM$RANDOM"
output="$(HOME="$home" DOCKER_CONFIG='' scripts/release/docker-config.sh ghcr.io octocat <<<"$token" 2>&1)"
! grep -qF "$token" <<<"$output" || die "the script printed the token"
[ "$(stat -c %a "$home/.docker/config.json")" = 600 ] || die "config.json is not mode 600"
python3 - "$home/.docker/config.json" "$token" <<'PY'
import base64, json, sys
config = json.load(open(sys.argv[1]))
auths = config["auths"]
if base64.b64decode(auths["ghcr.io"]["auth"]).decode() != "octocat:" + sys.argv[2]:
    sys.exit("auths.ghcr.io.auth is not base64(user:token)")
if auths.get("other.example", {}).get("auth") != "b3RoZXI6a2VlcA==":
    sys.exit("an existing login was lost")
PY
info "$home/.docker/config.json: auths.ghcr.io = base64(octocat:token), mode 600, other logins kept, token not printed"
HOME="$home" scripts/release/docker-config.sh ghcr.io octocat </dev/null >/dev/null 2>&1 && die "an empty token was accepted"
HOME="$home" scripts/release/docker-config.sh 'ghcr.io/x y' octocat <<<"$token" >/dev/null 2>&1 && die "a bad registry name was accepted"
info "an empty token and a bad registry name are refused"
