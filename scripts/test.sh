#!/usr/bin/env bash
# The Rust test suite: unit tests and the integration tests in tests/api.
# Usage: scripts/test.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

step "cargo test --locked"
cargo test --locked
