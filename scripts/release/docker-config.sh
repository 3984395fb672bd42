#!/usr/bin/env bash
# Writes a registry login into Docker's config file, for the tools that read
# only that file: actions/attest-build-provenance (push-to-registry, through
# @sigstore/oci, reads ~/.docker/config.json) and cosign (go-containerregistry's
# default keychain prefers it). `podman login` writes its own auth.json
# ($XDG_RUNTIME_DIR/containers/auth.json), which neither reads.
#
# Usage: scripts/release/docker-config.sh REGISTRY USER <<<"$TOKEN"
# The token comes on stdin, never on the command line. The file is
# ${DOCKER_CONFIG:-~/.docker}/config.json, mode 600; other registries' entries
# in it are kept. Prints the path it wrote, never the token.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"

registry="${1:?usage: scripts/release/docker-config.sh REGISTRY USER <<<TOKEN}"
user="${2:?usage: scripts/release/docker-config.sh REGISTRY USER <<<TOKEN}"
[[ "$registry" =~ ^[A-Za-z0-9.-]+(:[0-9]+)?$ ]] || die "REGISTRY must be a host name, got '$registry'"
IFS= read -r token || true
[ -n "$token" ] || die "no token on stdin"
directory="${DOCKER_CONFIG:-$HOME/.docker}"
mkdir -p "$directory"
umask 077
REGISTRY="$registry" USER_NAME="$user" TOKEN="$token" python3 - "$directory/config.json" <<'PY'
import base64, json, os, sys
path = sys.argv[1]
try:
    with open(path) as f:
        config = json.load(f)
except FileNotFoundError:
    config = {}
auth = base64.b64encode(f'{os.environ["USER_NAME"]}:{os.environ["TOKEN"]}'.encode()).decode()
config.setdefault("auths", {})[os.environ["REGISTRY"]] = {"auth": auth}
with open(path + ".new", "w") as f:
    json.dump(config, f, indent=2)
os.replace(path + ".new", path)
PY
chmod 600 "$directory/config.json"
info "wrote the login for $registry to $directory/config.json"
