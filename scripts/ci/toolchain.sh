#!/usr/bin/env bash
# Makes a Rust toolchain, with optional components, the default. CI calls
# this instead of a toolchain action, so the same command works on any
# machine with rustup. A toolchain that is already installed is used as it
# is, never silently updated.
#
# Usage: scripts/ci/toolchain.sh TOOLCHAIN [COMPONENT...]   e.g. stable clippy, 1.85
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"

toolchain="${1:?usage: scripts/ci/toolchain.sh TOOLCHAIN [COMPONENT...]}"
shift
if rustc "+$toolchain" --version >/dev/null 2>&1; then
  step "rust toolchain $toolchain (installed)"
  [ "$#" -eq 0 ] || rustup component add --toolchain "$toolchain" "$@"
else
  step "rustup toolchain install $toolchain $*"
  components=()
  for component in "$@"; do components+=(--component "$component"); done
  rustup toolchain install "$toolchain" --profile minimal --no-self-update "${components[@]}"
fi
rustup default "$toolchain"
info "$(rustc --version)"
