#!/usr/bin/env bash
# Installs a Rust toolchain with rustup and makes it the default, with
# optional components. CI calls this instead of a toolchain action, so the
# same command works on any machine with rustup.
#
# Usage: scripts/toolchain.sh TOOLCHAIN [COMPONENT...]   e.g. stable clippy, 1.85
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

toolchain="${1:?usage: scripts/toolchain.sh TOOLCHAIN [COMPONENT...]}"
shift
step "rustup toolchain install $toolchain $*"
components=()
for component in "$@"; do components+=(--component "$component"); done
rustup toolchain install "$toolchain" --profile minimal --no-self-update "${components[@]}"
rustup default "$toolchain"
info "$(rustc --version)"
