#!/usr/bin/env bash
# Follows the README's "Add a route" steps the way a fork would: copies the
# repository, writes the README's handler into src/routes/hello.rs, declares
# the module, adds the README's row to the route table, builds, and checks
# what the README says follows from the row: the answer, the 405 with its
# Allow header, Cache-Control, the OpenAPI entry and the metrics label.
# Fails when the example no longer compiles or no longer does what it says.
#
# Usage: scripts/ci/check-readme-route.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

apt_install curl
work="$(mktemp -d)"
cleanup() {
  stop_pulse || true
  rm -rf "$work"
}
trap cleanup EXIT

step "copying the tracked files to a scratch fork"
fork="$work/fork"
mkdir -p "$fork"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$fork"

step "applying the README's steps 1 and 2 (src/routes/hello.rs, mod hello;, the row)"
python3 - README.md "$fork/src/routes" <<'PY'
import re, sys
readme, routes = open(sys.argv[1]).read(), sys.argv[2]
section = re.search(r"^### Add a route\n(.*?)^#", readme, re.S | re.M)
if not section:
    sys.exit("README.md has no '### Add a route' section")
blocks = [re.sub(r"^   ", "", block, flags=re.M)
          for block in re.findall(r"```rust\n(.*?)^\s*```", section.group(1), re.S | re.M)]
if len(blocks) != 2:
    sys.exit(f"expected 2 rust blocks in 'Add a route' (the handler, the row), found {len(blocks)}")
handler, row = blocks[0], blocks[1].strip()
open(f"{routes}/hello.rs", "w").write(handler)
table = open(f"{routes}/mod.rs").read()
table, declared = re.subn(r"^mod echo;$", "mod echo;\nmod hello;", table, count=1, flags=re.M)
table, added = re.subn(r"(^route_table! \{\n(?:.*\n)*?)(^\}$)", lambda m: f"{m.group(1)}    {row}\n{m.group(2)}",
                       table, count=1, flags=re.M)
if not (declared and added):
    sys.exit("src/routes/mod.rs no longer has 'mod echo;' and 'route_table! {': update this script")
open(f"{routes}/mod.rs", "w").write(table)
print(f"    row: {row}")
PY

step "building the fork (debug, its own target directory)"
CARGO_TARGET_DIR="$REPO_ROOT/target/readme-route" cargo build --locked --quiet \
  --manifest-path "$fork/Cargo.toml" --bin pulse
start_pulse "$REPO_ROOT/target/readme-route/debug/pulse" "$work/pulse.log" PULSE_LOG_FORMAT=json

step "what the README says follows from the row"
# expect WHAT ACTUAL WANTED: one checked claim.
expect() {
  [ "$2" = "$3" ] || die "$1: got '$2', expected '$3'"
  info "$1: $2"
}
expect "GET /hello/world" "$(curl -s "$PULSE_URL/hello/world")" '{"hello":"world"}'
expect "its Cache-Control" "$(curl -s -o /dev/null -w '%header{cache-control}' "$PULSE_URL/hello/world")" "no-store"
expect "POST is a 405 with Allow" \
  "$(curl -s -X POST -o /dev/null -w '%{http_code} %header{allow}' "$PULSE_URL/hello/world")" "405 GET, HEAD"
openapi="$(curl -s "$PULSE_URL/openapi.json")"
expect "OpenAPI entry" \
  "$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["paths"]["/hello/{name}"]["get"]["summary"])' "$openapi")" \
  "Greets by name"
expect "metrics label" \
  "$(curl -s "$PULSE_URL/metrics" | grep -c '^http_requests_total{.*route="/hello/{name}".*status="200"')" 1
stop_pulse || die "the fork did not stop cleanly"
