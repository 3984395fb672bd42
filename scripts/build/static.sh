#!/usr/bin/env bash
# Builds the static release binary for a musl target, checks that it is
# static and at most 4.25 MiB, and copies it to dist/pulse-TARGET.
#
# The limit is a fence against growth, not the goal: issue 40's budget is
# 3.5 MiB with the PostgreSQL client, which TLS to PostgreSQL took the
# binary past (the sizes: docs/database.md, "What it costs"). The fence
# sits 256 KiB above the x86_64 binary's size then.
#
# Usage: scripts/build/static.sh [TARGET]   (default x86_64-unknown-linux-musl;
#                                            also aarch64-unknown-linux-musl)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

target="${1:-$MUSL_TARGET}"
max_bytes=$((4352 * 1024))
command -v file >/dev/null || apt_install file

step "cargo build --release --target $target"
binary="$(static_binary "$target")"
size=$(stat -c %s "$binary")
description="$(file -b "$binary")"
info "$description"
[[ "$description" == *"statically linked"* || "$description" == *"static-pie linked"* ]] ||
  die "$binary is not statically linked"
if [[ "$description" == *"static-pie linked"* ]]; then
  # .cargo/config.toml has the linker pack the self-relocation table as RELR:
  # 720 bytes instead of 59 KB, all of which stayed resident.
  readelf -d "$binary" | grep -q '(RELR)' ||
    die "$binary has its relocations unpacked (no RELR): is -z pack-relative-relocs still in .cargo/config.toml, and the linker GNU ld 2.38 or later?"
  info "relocations packed as RELR"
fi
info "$size bytes ($((size / 1024)) KiB; limit $((max_bytes / 1024)) KiB)"
[ "$size" -le "$max_bytes" ] || die "the static binary is over 4.25 MiB"
mkdir -p dist
cp "$binary" "dist/pulse-$target"
info "dist/pulse-$target"
