#!/usr/bin/env bash
# Measures what each allocation workaround of src/allocation.rs saves: builds
# pulse as shipped and once per workaround with that one left out
# (`--cfg pulse_plain="NAME"`), then, for the work the workaround is about:
#   - user-space instructions per request or scrape (callgrind, through
#     scripts/bench/instructions.sh), which the machine's load does not move;
#   - the CPU time per request of both builds served at the same time,
#     pinned to one CPU, each under its own load generator
#     (scripts/bench/paired_cpu.py: two copies of one build measure
#     1.000 +- 0.005), and the minor page faults per 1,000 requests: the
#     kernel's work (`mmap`, `munmap`, page faults) that callgrind does not
#     see, and that most of these workarounds are about.
# A ratio above 1 is what the workaround saves. The rule (issue 34): one that
# saves under 1% of both goes.
#
# Usage: scripts/bench/workarounds.sh [NAME...]   (default: all of them)
# About 20 minutes for all. Writes a table to stdout and docs/workarounds.tsv.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

all=(header_maps drop_glue http2_length id_text pinned_runs page_buffer last_scrapes proc_buffer export_buffer short_copies)
names=("$@")
[ "${#names[@]}" -gt 0 ] || names=("${all[@]}")
for name in "${names[@]}"; do
  [[ " ${all[*]} " == *" $name "* ]] || die "unknown workaround '$name'; known: ${all[*]}"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs: one for the servers, one for the clients"
apt_install valgrind curl python3 nghttp2-client util-linux

# build NAME: a release musl binary without workaround NAME ("shipped": all in).
build() {
  local name="$1" dir="target/workarounds/$1"
  local config=()
  if [ "$name" != shipped ]; then
    config=(--config "target.$MUSL_TARGET.rustflags=[\"--cfg\", \"pulse_plain=\\\"$name\\\"\"]")
  fi
  info "building $name" >&2
  # The binary on its own: with an example in the same build, tokio's
  # test-util (a dev-dependency's feature) would be compiled into it.
  CARGO_TARGET_DIR="$dir" release_cargo build --locked --release --quiet --target "$MUSL_TARGET" \
    --bin pulse "${config[@]}" >&2
  CARGO_TARGET_DIR="$dir" release_cargo build --locked --release --quiet --target "$MUSL_TARGET" \
    --example otlp_sink "${config[@]}" >&2
  printf '%s\n' "$dir/$MUSL_TARGET/release"
}

# What each workaround is about: "h1" GET / over HTTP/1.1, "h2c" GET / over
# h2c, "scrape" GET /metrics, "export" GET / with every span exported.
workload() {
  case "$1" in
    header_maps) echo "h1 h2c" ;;
    drop_glue | id_text) echo h1 ;;
    http2_length | pinned_runs) echo h2c ;;
    page_buffer | last_scrapes | proc_buffer) echo scrape ;;
    export_buffer) echo export ;;
    short_copies) echo "h1 scrape" ;;
  esac
}

sink_pid=""
trap '[ -z "$sink_pid" ] || kill "$sink_pid" 2>/dev/null || true' EXIT

# count DIR WORKLOAD: instructions per request of the binary in DIR.
count() {
  local dir="$1" workload="$2"
  case "$workload" in
    h1) scripts/bench/instructions.sh "$dir/pulse" / 10000 2>/dev/null ;;
    h2c) PROTOCOL=h2c scripts/bench/instructions.sh "$dir/pulse" / 10000 2>/dev/null ;;
    scrape) scripts/bench/instructions.sh "$dir/pulse" /metrics 2000 2>/dev/null ;;
    export)
      local port
      port="$(free_port)"
      PORT="$port" "$dir/examples/otlp_sink" >/dev/null 2>&1 &
      sink_pid=$!
      wait_http "http://127.0.0.1:$port/" 10 || die "otlp_sink did not start"
      SERVER_ENV="OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$port OTEL_TRACES_SAMPLER=always_on OTEL_BSP_SCHEDULE_DELAY=100" \
        scripts/bench/instructions.sh "$dir/pulse" / 10000 2>/dev/null
      kill "$sink_pid" 2>/dev/null || true
      sink_pid=""
      ;;
  esac
}

# paired SHIPPED_DIR PLAIN_DIR WORKLOAD: CPU per request of the plain build
# over the shipped one's, both served at once on CPU 0, and the page faults
# of each per 1,000 requests.
paired() {
  local shipped="$1" plain="$2" workload="$3" ports=() pids=() dir port export_env=()
  if [ "$workload" = export ]; then
    port="$(free_port)"
    PORT="$port" taskset -c 1 "$shipped/examples/otlp_sink" >/dev/null 2>&1 &
    sink_pid=$!
    wait_http "http://127.0.0.1:$port/" 10 || die "otlp_sink did not start"
    export_env=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$port" OTEL_TRACES_SAMPLER=always_on)
  fi
  for dir in "$shipped" "$plain"; do
    port="$(free_port)"
    env HOST=127.0.0.1 PORT="$port" PULSE_LOG_FORMAT=json "${export_env[@]}" \
      taskset -c 0 "$dir/pulse" >/dev/null 2>&1 &
    pids+=($!)
    ports+=("$port")
    wait_http "http://127.0.0.1:$port/livez" 10 || die "$dir/pulse did not start"
  done
  local path=/ protocol=http1
  [ "$workload" = scrape ] && path=/metrics
  [ "$workload" = h2c ] && protocol=h2c
  taskset -c 1 python3 scripts/bench/paired_cpu.py "$protocol" "$path" "${pids[0]}" "${ports[0]}" "${pids[1]}" "${ports[1]}"
  kill "${pids[@]}" $sink_pid 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  sink_pid=""
}

step "building pulse as shipped and without each workaround"
shipped_dir="$(build shipped)"
declare -A dirs=()
for name in "${names[@]}"; do
  dirs[$name]="$(build "$name")"
done

step "measuring"
declare -A shipped_count=()
results="docs/workarounds.tsv"
printf 'workaround\tworkload\tinstructions shipped\tinstructions plain\tinstructions plain/shipped\tCPU plain/shipped, faults per 1k shipped and plain\n' >"$results"
for name in "${names[@]}"; do
  for load in $(workload "$name"); do
    [ -n "${shipped_count[$load]:-}" ] || shipped_count[$load]="$(count "$shipped_dir" "$load")"
    plain_count="$(count "${dirs[$name]}" "$load")"
    ratio="$(awk -v a="$plain_count" -v b="${shipped_count[$load]}" 'BEGIN { printf "%.4f", a / b }')"
    cpu="$(paired "$shipped_dir" "${dirs[$name]}" "$load")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$load" "${shipped_count[$load]}" "$plain_count" "$ratio" "$cpu" | tee -a "$results"
  done
done
info "written to $results"
