#!/usr/bin/env bash
# Runs the aarch64 static binary under qemu user emulation and smoke-tests it:
# the arm64 leg of the build, without arm64 hardware.
#
# Usage: scripts/build/smoke-arm64.sh [BINARY]
#   Without BINARY it builds dist/pulse-aarch64-unknown-linux-musl first.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

target=aarch64-unknown-linux-musl
apt_install qemu-user-static curl
binary="${1:-}"
if [ -z "$binary" ]; then
  scripts/build/static.sh "$target"
  binary="$REPO_ROOT/dist/pulse-$target"
fi
binary="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")"
work="$(mktemp -d)"
# No binfmt_misc here: qemu is called explicitly. The wrapper keeps
# start_pulse's "binary" a single path.
cat >"$work/pulse-arm64" <<WRAPPER
#!/bin/sh
exec qemu-aarch64-static "$binary" "\$@"
WRAPPER
chmod +x "$work/pulse-arm64"
trap 'stop_pulse || true; rm -rf "$work"' EXIT

step "pulse ($target) under qemu-aarch64-static"
info "$(qemu-aarch64-static "$binary" --version)"
start_pulse "$work/pulse-arm64" "$work/pulse.log"
scripts/smoke.sh "$PULSE_URL" 20
code=0
stop_pulse || code=$?
[ "$code" -eq 0 ] || die "the arm64 binary exited with $code on SIGTERM"
info "the arm64 binary drained and exited 0"
