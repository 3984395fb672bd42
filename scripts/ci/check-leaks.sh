#!/usr/bin/env bash
# Fails when a file of the repository holds what looks like a plain secret:
# detect-secrets (Yelp, from PyPI, pinned) over every tracked and untracked
# file that git does not ignore, with its default plugins (private keys,
# cloud and service tokens, high-entropy strings, `password = ...` and the
# like) and one of ours for age private keys (scripts/ci/leak_rules/), which
# the defaults miss. A finding that is not a secret (a test value, a metric label) is
# marked where it stands with `pragma: allowlist secret` and a reason, so
# every exception is visible in review. The report names the file, the line
# and the kind; never the value.
#
# First, a negative control: a planted private key and token must be found,
# or the scanner is not scanning.
#
# Usage: scripts/ci/check-leaks.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

venv_tool detect-secrets "detect-secrets==1.5.0"
apt_install age
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# findings FILE...: one "file:line: kind" per finding.
findings() {
  detect-secrets scan --plugin "$REPO_ROOT/scripts/ci/leak_rules/age_key.py" "$@" | python3 -c '
import json, sys
for path, found in sorted(json.load(sys.stdin)["results"].items()):
    for finding in found:
        line, kind = finding["line_number"], finding["type"]
        print(f"{path}:{line}: {kind}")
'
}

step "negative control: planted secrets are found"
# Assembled at run time, so that this script holds no secret itself.
{
  printf -- '-----BEGIN %s PRIVATE KEY-----\n' RSA
  printf 'MIIEow%s\n' "$(random_hex 48)"
  printf -- '-----END %s PRIVATE KEY-----\n' RSA
  printf 'aws_access_key_id = AKIA%s\n' "$(random_hex 8 | tr 'a-f' 'A-F')"
  age-keygen 2>/dev/null | grep -v '^#'
} >"$work/planted.txt"
planted="$(cd "$work" && findings planted.txt)"
for kind in 'Private Key' 'AWS Access Key' 'age Secret Key'; do
  grep -q "$kind" <<<"$planted" || die "detect-secrets missed the planted $kind: ${planted:-nothing found}"
done
info "found: $(cut -d' ' -f2- <<<"$planted" | sort -u | paste -sd, -)"

step "sops files: every value encrypted"
# Their ciphertext is high-entropy by design, so detect-secrets would flag
# every line; instead, each must hold sops metadata and no value in clear.
need_python_yaml
mapfile -t sops_files < <(git ls-files -co --exclude-standard '?*.sops.yaml')
python3 - "${sops_files[@]}" <<'PY'
import sys
import yaml

def leaves(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, path + (str(key),))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from leaves(value, path + (str(index),))
    else:
        yield path, node

for name in sys.argv[1:]:
    document = yaml.safe_load(open(name))
    if not isinstance(document, dict) or "mac" not in document.get("sops", {}):
        sys.exit(f"{name}: no sops metadata: not encrypted with sops")
    clear = [".".join(path) for path, value in leaves({k: v for k, v in document.items() if k != "sops"})
             if not (isinstance(value, str) and value.startswith("ENC[AES256_GCM,"))]
    if clear:
        sys.exit(f"{name}: values in clear: {clear}")
    print(f"    {name}: {sum(1 for _ in leaves(document)) - sum(1 for _ in leaves(document['sops']))} values, all encrypted")
PY

step "detect-secrets $(detect-secrets --version) over the repository"
mapfile -t files < <(git ls-files -co --exclude-standard ':!?*.sops.yaml')
found="$(findings "${files[@]}")"
if [ -n "$found" ]; then
  printf '%s\n' "$found" | sed 's/^/    /'
  die "possible secrets in the repository (above); if one is not a secret, mark its line with \`pragma: allowlist secret\` and say why"
fi
info "${#files[@]} files, no finding"
