#!/usr/bin/env bash
# Writes a CycloneDX SBOM of pulse's dependencies to dist/pulse.cdx.json with
# cargo-cyclonedx, and checks it lists the crates pulse is built on.
#
# Usage: scripts/release/sbom.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

cargo_tool cargo-cyclonedx cargo-cyclonedx
step "cargo cyclonedx (JSON, normal dependencies of the musl target)"
cargo cyclonedx --format json --spec-version 1.5 --no-build-deps --target "$MUSL_TARGET" --override-filename pulse.cdx >/dev/null
mkdir -p dist
mv pulse.cdx.json dist/pulse.cdx.json
python3 - dist/pulse.cdx.json <<'PY'
import json, sys
sbom = json.load(open(sys.argv[1]))
assert sbom.get("bomFormat") == "CycloneDX", "not a CycloneDX document"
names = {c.get("name") for c in sbom.get("components", [])}
missing = {"hyper", "hyper-util", "tokio", "prometheus", "serde_json"} - names
assert not missing, f"the SBOM lacks {sorted(missing)}"
assert sbom["metadata"]["component"]["name"] == "pulse"
print(f"    dist/pulse.cdx.json: CycloneDX {sbom.get('specVersion')}, {len(names)} components, including hyper and tokio")
PY
