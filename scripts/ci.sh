#!/usr/bin/env bash
# Every check and test pulse has, in the order CI runs them. The README's
# test command, and what .ci/run calls.
#
# Usage: scripts/ci.sh
# It installs what is missing (apt packages, rustup targets) and prints one
# line per stage, then a summary. The first failing stage stops the run.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

passed=0
declare -a timings=()

# stage NAME COMMAND... runs one stage and records its duration.
stage() {
  local name="$1"
  shift
  local started=$SECONDS
  step "[$((passed + 1))] $name"
  if ! "$@"; then
    printf '\nci: stage "%s" failed after %ss\n' "$name" "$((SECONDS - started))"
    printf 'ci: %s passed, 1 failed\n' "$passed"
    exit 1
  fi
  passed=$((passed + 1))
  timings+=("$(printf '%-34s %4ss' "$name" "$((SECONDS - started))")")
}

install_prerequisites() {
  apt_install curl ca-certificates file python3-pip prometheus prometheus-alertmanager
  rust_target "$MUSL_TARGET"
  rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed | grep -q '^clippy' || rustup component add clippy
}

static_build() {
  local binary size max=$((2560 * 1024))
  binary="$(static_binary "$MUSL_TARGET")"
  size=$(stat -c %s "$binary")
  info "$binary: $size bytes ($((size / 1024)) KiB; limit $((max / 1024)) KiB)"
  file "$binary" 2>/dev/null | grep -q 'static' || ldd "$binary" 2>&1 | grep -q 'not a dynamic' ||
    die "$binary is not statically linked"
  [ "$size" -le "$max" ] || die "the static binary is over 2.5 MiB"
}

smoke_binary() {
  local work code=0
  work="$(mktemp -d)"
  start_pulse "$(static_binary "$MUSL_TARGET")" "$work/pulse.log"
  scripts/smoke.sh "$PULSE_URL" 5 || code=$?
  stop_pulse || code=$?
  rm -rf "$work"
  return "$code"
}

stage "install prerequisites" install_prerequisites
stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy -D warnings" cargo clippy --locked --all-targets -- -D warnings
stage "cargo test --locked" cargo test --locked
stage "static musl build and size" static_build
stage "promtool check metrics" scripts/check-metrics.sh
stage "smoke test against the binary" smoke_binary
stage "monitoring checks (promtool, amtool, Grafana)" scripts/check-monitoring.sh
stage "compose e2e (podman)" scripts/e2e-compose.sh
stage "monitoring e2e (alert end to end)" scripts/e2e-monitoring.sh

step "summary"
printf '    %s\n' "${timings[@]}"
printf 'ci: %s passed, 0 failed\n' "$passed"
