#!/usr/bin/env bash
# The linker for x86_64 musl builds (.cargo/config.toml): cc, with rustup's
# lld in place of the system's ld, placing the functions a start and the
# first requests run next to each other at the front of the code.
#
# Why: the kernel maps a binary's code in 64 KiB windows around each page a
# process touches. Left in rustc's order, the few hundred functions a start
# and a request run are spread over nearly all of the code, and nearly all
# of it stays resident (the measurements: docs/performance.md, "Idle RSS").
#
# How: scripts/build/hot-functions.txt lists those functions by their
# demangled names, which unlike the symbols carry no per-build hash
# (regenerate it with scripts/build/hot-functions.sh). Here each is matched
# to the symbols in this link's object files, and the result is handed to
# lld as --symbol-ordering-file; C functions (musl's malloc, memcpy) are
# passed by name. A name that no longer exists is skipped; when the list
# has gone stale, scripts/build/static.sh's idle-RSS check fails.
# The order used is left beside the output, as OUTPUT.symbol-order.
#
# Usage: as a linker, called by rustc with cc's arguments.
set -euo pipefail

hot_list="$(dirname "$0")/hot-functions.txt"
fail() {
  echo "link-ordered.sh: $*" >&2
  exit 1
}
[ -r "$hot_list" ] || fail "cannot read $hot_list"
command -v nm >/dev/null || fail "nm (binutils) is needed to read the object files' symbols"

# rustup ships lld with every toolchain; gcc-ld holds the ld.lld that
# `cc -fuse-ld=lld` looks for. The rustc on PATH is the one cargo runs
# (rustup sets RUSTUP_TOOLCHAIN for its children).
host="$(rustc -vV | sed -n 's/^host: //p')"
gcc_ld="$(rustc --print sysroot)/lib/rustlib/$host/bin/gcc-ld"
[ -x "$gcc_ld/ld.lld" ] || fail "no $gcc_ld/ld.lld: this toolchain ships without rust-lld"

# rustc passes the arguments in a file (@FILE, one per line) when they are
# many. Only the object files and the output are needed from them.
arguments=()
for argument in "$@"; do
  if [[ "$argument" == @* ]]; then
    mapfile -t from_file <"${argument#@}"
    arguments+=("${from_file[@]}")
  else
    arguments+=("$argument")
  fi
done
objects=()
output=""
for ((i = 0; i < ${#arguments[@]}; i++)); do
  case "${arguments[i]}" in
  -o) output="${arguments[i + 1]}" ;;
  *.o) objects+=("${arguments[i]}") ;;
  esac
done
[ -n "$output" ] || fail "no -o OUTPUT among the arguments"

# The defined code symbols in the list's order, matched by their demangled
# names: nm lists the symbols in the same order with and without -C. A name
# shared by several instances of a generic function orders them all.
order="$output.symbol-order"
nm -p --defined-only "${objects[@]}" >"$order.mangled"
nm -p -C --defined-only "${objects[@]}" >"$order.demangled"
paste "$order.mangled" "$order.demangled" | awk -F '\t' -v list="$hot_list" '
  BEGIN {
    while ((getline name < list) > 0) {
      if (name == "" || name ~ /^#/ || name in rank) continue
      rank[name] = ++listed
      if (name ~ /^[A-Za-z_][A-Za-z0-9_]*$/) print listed, name
    }
  }
  {
    split($1, symbol, " ")
    if (symbol[2] !~ /^[tTwW]$/) next
    demangled = $2
    sub(/^[^ ]+ [^ ]+ /, "", demangled)
    if (demangled in rank) print rank[demangled], symbol[3]
  }' | sort -n -s -k1,1 | awk '!seen[$2]++ { print $2 }' >"$order"
rm -f "$order.mangled" "$order.demangled"

exec cc -fuse-ld=lld -B "$gcc_ld" "$@" \
  -Wl,--symbol-ordering-file="$order" -Wl,--no-warn-symbol-ordering
