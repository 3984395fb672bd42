#!/usr/bin/env bash
# Regenerates scripts/build/hot-functions.txt, the functions that
# scripts/build/link-ordered.sh places together at the front of the code:
# those that a start and the first requests run, traced with callgrind in a
# release build that keeps its symbols. Run it after a change that renames
# or adds much of what runs on every request (static.sh's idle-RSS check
# fails when the list has gone stale).
#
# The functions are listed in the order of the workloads below, so that
# what an HTTP/1 process on one CPU with the JSON log runs comes first, then
# what the probes, the text log, h2c and a second CPU add; within a
# workload, by instructions spent, most first. Names are demangled: the
# symbols carry a hash that changes from build to build.
#
# Usage: scripts/build/hot-functions.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

apt_install valgrind curl python3 util-linux
# A target directory of its own: keeping the symbols is a profile change,
# which would otherwise rebuild the release tree from scratch twice.
target_dir="target/hot-functions"
step "release build with symbols ($target_dir), Rust $(release_toolchain) as static.sh builds"
CARGO_PROFILE_RELEASE_STRIP=false release_cargo build --locked --release --target "$MUSL_TARGET" \
  --bin pulse --target-dir "$target_dir"
binary="$REPO_ROOT/$target_dir/$MUSL_TARGET/release/pulse"

work="$(mktemp -d)"
server_pid=""
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# trace NAME CPUS LOG_FORMAT CURL_OPTIONS PATH...: one start under callgrind
# on CPUS, the first GET / (as bench.sh measures idle RSS after), then
# PATHs, then SIGTERM; the profile goes to $work/NAME. On one CPU pulse runs
# tokio's current-thread scheduler, on more the multi-threaded one.
trace() {
  local name="$1" cpus="$2" log_format="$3" curl_options="$4" port path
  shift 4
  port="$(free_port)"
  env PORT="$port" HOST=127.0.0.1 PULSE_LOG_FORMAT="$log_format" PULSE_DRAIN_DELAY=0 \
    taskset -c "$cpus" valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/$name" "$binary" \
    >/dev/null 2>"$work/$name.log" &
  server_pid=$!
  wait_http "http://127.0.0.1:$port/" 60 || die "pulse did not start under valgrind (see $work/$name.log)"
  for path in "$@"; do
    # shellcheck disable=SC2086 # the options are words
    curl -s -o /dev/null $curl_options "http://127.0.0.1:$port$path" || die "GET $path failed"
  done
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=""
  info "$name: traced"
}

probes=(/livez /readyz /health /metrics /no-such-route /)
step "tracing five workloads under callgrind"
trace http1_json 0 json "" /
trace probes 0 json "" "${probes[@]}"
trace text_log 0 text "" "${probes[@]}"
trace h2c 0 json "--http2-prior-knowledge" / /metrics /livez
trace two_cpus 0,1 json "" "${probes[@]}"

python3 - "$binary" "$work" scripts/build/hot-functions.txt "$(RUSTUP_TOOLCHAIN="$(release_toolchain)" rustc --version)" <<'PY'
import collections, os, re, subprocess, sys

binary, work, out, rustc = sys.argv[1:]

def self_costs(path):
    """Instructions spent in each function of BINARY itself (self cost)."""
    tables = {"ob": {}, "fn": {}}
    def name(kind, text):
        match = re.match(r"\((\d+)\)(?: (.*))?$", text)
        if not match:
            return text
        if match.group(2) is not None:
            tables[kind][match.group(1)] = match.group(2)
        return tables[kind][match.group(1)]
    costs = collections.Counter()
    ob = fn = fn_ob = None
    after_calls = False
    for line in open(path):
        line = line.rstrip("\n")
        key, _, value = line.partition("=")
        if key in ("ob", "cob"):
            resolved = name("ob", value)
            if key == "ob":
                ob = resolved
        elif key in ("fn", "cfn"):
            resolved = name("fn", value)
            if key == "fn":
                fn, fn_ob = resolved, ob
        elif key == "calls":
            after_calls = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            if after_calls:  # the inclusive cost of a call, not this function's own
                after_calls = False
                continue
            fields = line.split()
            if fn and len(fields) > 1 and os.path.basename(fn_ob or "") == os.path.basename(binary):
                costs[fn] += int(fields[1])
    return costs

def demangled_names():
    """Each symbol of BINARY with its demangled name, as link-ordered.sh sees them."""
    def nm(*options):
        return subprocess.run(["nm", "-p", "--defined-only", *options, binary],
                              check=True, capture_output=True, text=True).stdout.splitlines()
    names = {}
    for mangled, demangled in zip(nm(), nm("-C")):
        fields = mangled.split(" ")
        if len(fields) == 3 and fields[1] in "tTwW":
            names[fields[2]] = demangled.split(" ", 2)[2]
            # callgrind names a function whose symbol has no size (musl's
            # memcpy and memset, written in assembly) by its address.
            names.setdefault("0x%016x" % int(fields[0], 16), names[fields[2]])
    return names

demangled = demangled_names()
listed, counts = [], []
seen = set()
for workload in ("http1_json", "probes", "text_log", "h2c", "two_cpus"):
    costs = self_costs(os.path.join(work, workload))
    # callgrind names a recursive call's level NAME'2. An address that is
    # no symbol's (.init, .fini) cannot be placed.
    symbols = (re.sub(r"'\d+$", "", s) for s, c in costs.most_common() if c > 0)
    new = [demangled.get(s, s) for s in symbols]
    new = [s for s in new if not s.startswith("0x")]
    new = [s for s in dict.fromkeys(new) if s not in seen]
    seen.update(new)
    listed += new
    counts.append(f"{workload} {len(new)}")
    print(f"    {workload}: {len(costs)} functions run, {len(new)} new", file=sys.stderr)
with open(out, "w") as f:
    f.write("# The functions scripts/build/link-ordered.sh places first: generated by\n")
    f.write("# scripts/build/hot-functions.sh with " + rustc + "\n")
    f.write("# (per workload, new functions: " + ", ".join(counts) + ").\n")
    f.write("".join(s + "\n" for s in listed))
print(f"    {out}: {len(listed)} functions", file=sys.stderr)
PY
