#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a while, growing its corpus.
#
# Usage: scripts/bench/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 30 s, all)
# Needs a nightly toolchain and cargo-fuzz (installed when missing). A crash
# stops the run; libFuzzer saves the input under fuzz/artifacts/TARGET/.
# Copy it to fuzz/regressions/TARGET/ so `cargo test` replays it forever.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT/fuzz"

seconds="${1:-30}"
shift || true
[[ "$seconds" =~ ^[0-9]+$ ]] || die "SECONDS_PER_TARGET must be a whole number, got '$seconds'"
grep -q '^nightly' <<<"$(rustup toolchain list)" || die "cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly"
cargo_tool cargo-fuzz cargo-fuzz
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi

step "building ${#targets[@]} fuzz targets (nightly, address sanitizer)"
cargo +nightly fuzz build --release 2>&1 | tail -n 1
for target in "${targets[@]}"; do
  step "fuzzing $target for ${seconds}s"
  mkdir -p "corpus/$target"
  log="$(mktemp)"
  if ! cargo +nightly fuzz run --release "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    die "$target crashed: see fuzz/artifacts/$target/"
  fi
  runs="$(awk '/stat::number_of_executed_units/ { print $2 }' "$log")"
  info "$target: ${runs:-?} executions, no crash, corpus $(find "corpus/$target" -type f | wc -l) inputs"
  rm -f "$log"
done
