#!/usr/bin/env bash
# Every check and test pulse has, in the order CI runs them: the README's
# test command, and what .ci/run calls. The GitHub workflows call the same
# scripts, job by job (docs/ci-cd.md maps them).
#
# Usage: scripts/ci.sh
# It installs what is missing (apt packages, rustup targets, pip and cargo
# tools) and prints one line per stage, then a summary. The first failing
# stage stops the run.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

passed=0
declare -a timings=()
# Checks that cannot run on this machine write a line here (lib.sh's skip);
# the summary lists them and counts them.
PULSE_SKIPS_FILE="$(mktemp)"
export PULSE_SKIPS_FILE

# stage NAME COMMAND... runs one stage and records its duration. The stage
# runs in a subshell with errexit on: called as `if ! "$@"`, bash would
# ignore `set -e` inside it, and a failing command in the middle of a stage
# would not fail the stage.
stage() {
  local name="$1"
  shift
  local started=$SECONDS code
  step "[$((passed + 1))] $name"
  set +e
  (
    set -e
    "$@"
  )
  code=$?
  set -e
  if [ "$code" -ne 0 ]; then
    printf '\nci: stage "%s" failed (exit %s) after %ss\n' "$name" "$code" "$((SECONDS - started))"
    printf 'ci: %s passed, 1 failed, %s skipped\n' "$passed" "$(skipped_count)"
    exit 1
  fi
  passed=$((passed + 1))
  timings+=("$(printf '%-50s %4ss' "$name" "$((SECONDS - started))")")
}
skipped_count() { wc -l <"$PULSE_SKIPS_FILE" | tr -d ' '; }

install_prerequisites() {
  apt_install curl ca-certificates file git python3-pip python3-yaml prometheus prometheus-alertmanager \
    busybox-static qemu-user-static shellcheck debootstrap
  podman_install
  need_python_yaml
  # The static binaries' compiler and targets (lib.sh's release_cargo).
  release_cargo fetch --locked --target x86_64-unknown-linux-musl --target aarch64-unknown-linux-musl
  scripts/ci/toolchain.sh "$(rustup show active-toolchain | awk '{ print $1 }')" rustfmt clippy
}

rust_lint() {
  cargo fmt --all -- --check
  cargo clippy --locked --all-targets -- -D warnings
}

smoke_binary() {
  local work code=0
  work="$(mktemp -d)"
  start_pulse "$REPO_ROOT/dist/pulse-x86_64-unknown-linux-musl" "$work/pulse.log"
  scripts/smoke.sh "$PULSE_URL" 5 || code=$?
  stop_pulse || code=$?
  rm -rf "$work"
  return "$code"
}

image() {
  PULSE_BINARY=dist/pulse-x86_64-unknown-linux-musl scripts/build/image.sh amd64 localhost/pulse:dev
  PULSE_BINARY=dist/pulse-aarch64-unknown-linux-musl scripts/build/image.sh arm64 localhost/pulse:arm64
  scripts/e2e/image-smoke.sh localhost/pulse:dev
  scripts/release/scan-image.sh localhost/pulse:dev
}

release_dry_run() {
  scripts/release/sbom.sh
  scripts/release/checksums.sh
  scripts/release/publish-image.sh localhost/pulse-release "$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)" \
    "$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
  scripts/ci/check-docker-config.sh
}

# cargo-deny and cargo-cyclonedx take minutes to compile on a fresh machine.
# Compiling them in the background while the end-to-end tests mostly wait
# keeps the whole run well inside its time budget. The job gets a process
# group of its own (set -m), so a failed run ends it with every cargo and
# rustc under it instead of leaving them running.
tools_log="$(mktemp)"
tools_pid=""
install_cargo_tools_in_background() {
  if command -v cargo-deny >/dev/null && command -v cargo-cyclonedx >/dev/null; then
    return 0
  fi
  info "compiling cargo-deny and cargo-cyclonedx in the background (log: $tools_log)"
  set -m
  (
    set -e
    cargo_tool cargo-deny cargo-deny
    cargo_tool cargo-cyclonedx cargo-cyclonedx
  ) </dev/null >"$tools_log" 2>&1 &
  tools_pid=$!
  set +m
}
stop_background_work() {
  if [ -n "$tools_pid" ] && kill -0 "$tools_pid" 2>/dev/null; then
    info "stopping the background compile of the cargo tools"
    kill -TERM -- "-$tools_pid" 2>/dev/null || true
    wait "$tools_pid" 2>/dev/null || true
  fi
  rm -f "$PULSE_SKIPS_FILE" "$tools_log"
}
trap stop_background_work EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
wait_for_cargo_tools() {
  [ -n "${tools_pid:-}" ] || return 0
  info "waiting for the cargo tools to finish compiling"
  wait "$tools_pid" || {
    cat "$tools_log"
    die "installing cargo-deny or cargo-cyclonedx failed"
  }
  tools_pid=""
}

stage "install prerequisites" install_prerequisites
stage "preflight: podman, name resolution, pods, qemu" scripts/ci/preflight.sh
stage "lint: cargo fmt, clippy -D warnings" rust_lint
stage "modules: no import cycle in src/, none upward" python3 scripts/ci/check-module-graph.py src
stage "secrets: no plain secret in the repository (detect-secrets)" scripts/ci/check-leaks.sh
stage "test: cargo test --locked" cargo test --locked
# One at a time: run together, the 1000-client tests take the CPUs from the
# others' deadlines (a slowloris client once saw its cut-off at 6.1 s, not
# under 5 s). Sequential, the stage takes about 31 s instead of 18. The
# PostgreSQL tests (notes::) are ignored too; the database stage runs them.
# The ignored tests that need PostgreSQL run in the database stage, which starts it.
stage "test: the timing and load tests, one at a time (cargo test -- --ignored --test-threads=1)" \
  cargo test --locked -- --ignored --test-threads=1 --skip notes:: --skip database_tls::
install_cargo_tools_in_background
stage "fork: the README's two Add-a-route examples, verbatim, build, serve, stay in their files" scripts/ci/check-readme-route.sh
stage "build: static x86_64 musl binary" scripts/build/static.sh x86_64-unknown-linux-musl
stage "build: static aarch64 musl binary + qemu smoke" scripts/build/smoke-arm64.sh
stage "metrics: promtool check metrics" scripts/ci/check-metrics.sh
stage "smoke test against the binary" smoke_binary
stage "database: /notes on PostgreSQL 15; nothing lost under SIGKILL and a restart; outages answered 503" scripts/e2e/database.sh
stage "api: schemathesis against GET /openapi.json, /notes on PostgreSQL" scripts/e2e/api.sh schemathesis
stage "api: REDbot on every GET route, no BAD or WARN" scripts/e2e/api.sh http-lint
stage "tracing: OTLP span export, decoded by opentelemetry-proto" scripts/e2e/api.sh otlp
stage "secrets: the sops examples open; the metrics token rotated through OpenBao and bao agent, under load" scripts/e2e/secrets.sh
stage "image: build amd64+arm64, smoke, scan" image
stage "image from source: Containerfile bin stage, amd64+arm64" scripts/build/image-from-source.sh standin
stage "compose e2e: podman-compose build and up (stand-ins)" scripts/e2e/compose.sh standin
stage "rollout e2e: 3 replicas behind HAProxy, 2 rolling restarts at 200 req/s, no drain must fail" \
  scripts/e2e/rollout.sh standin localhost/pulse:dev
stage "monitoring: promtool, amtool, Grafana files" scripts/ci/check-monitoring.sh
stage "monitoring e2e (alert end to end)" scripts/e2e/monitoring.sh
stage "deploy: kustomize, schemas, checkov" scripts/ci/check-deploy.sh
stage "deploy e2e (podman kube play)" scripts/e2e/kube.sh
wait_for_cargo_tools
stage "security: cargo deny" scripts/ci/deny.sh
stage "release dry run: SBOM, checksums, manifest" release_dry_run
stage "hygiene: shellcheck, hadolint, actionlint, yamllint, zizmor, bench table" scripts/ci/lint-repo.sh

step "summary ($((SECONDS / 60)) min $((SECONDS % 60)) s)"
printf '    %s\n' "${timings[@]}"
if [ "$(skipped_count)" -gt 0 ]; then
  step "skipped here (each runs in GitHub Actions, where a skip fails the job)"
  sed 's/^/    /' "$PULSE_SKIPS_FILE"
fi
printf 'ci: %s passed, 0 failed, %s skipped\n' "$passed" "$(skipped_count)"
