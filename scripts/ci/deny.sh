#!/usr/bin/env bash
# cargo deny check: advisories, licenses, bans and sources, with deny.toml.
# Any finding fails.
#
# Usage: scripts/ci/deny.sh
# Advisories need the RustSec database. In GitHub Actions cargo-deny fetches
# the live one. Elsewhere, the offline snapshot in ../shared/rustsec-advisory-db
# is used when present (its age is printed), or PULSE_LIVE_ADVISORIES=1
# fetches the live one. Whatever is not checked against the live database is
# recorded as skipped (lib.sh's skip), with the reason.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

cargo_tool cargo-deny cargo-deny
info "$(cargo deny --version)"

step "cargo deny check licenses bans sources"
cargo deny --log-level error check licenses bans sources
info "licenses, bans and sources: no findings"

snapshot="$REPO_ROOT/../shared/rustsec-advisory-db"
if [ "${GITHUB_ACTIONS:-}" = true ] || [ "${PULSE_LIVE_ADVISORIES:-}" = 1 ]; then
  step "cargo deny check advisories (live RustSec database)"
  cargo deny --log-level error check advisories
  info "advisories: no findings"
elif [ -d "$snapshot" ]; then
  step "cargo deny check advisories (offline snapshot ../shared/rustsec-advisory-db)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # cargo-deny looks for <db-path>/advisory-db-<hash of the default URL>,
  # and reads the database's age from its git history.
  dest="$work/db/advisory-db-3157b0e258782691"
  mkdir -p "$dest"
  cp -r "$snapshot/." "$dest/"
  git -C "$dest" init -q
  git -C "$dest" add -A
  snapshot_date=2026-08-21T08:28:40+02:00
  GIT_AUTHOR_DATE=$snapshot_date GIT_COMMITTER_DATE=$snapshot_date \
    git -C "$dest" -c user.name=snapshot -c user.email=snapshot@localhost commit -qm snapshot
  # The same config with db-path set: the path belongs to this machine, not deny.toml.
  sed "s|^\[advisories\]$|[advisories]\ndb-path = \"$work/db\"|" deny.toml >"$work/deny.toml"
  cargo fetch --locked --quiet
  cargo deny --offline --log-level error --config "$work/deny.toml" check advisories
  info "advisories: no findings in the snapshot of 2026-08-21 (months old: newer advisories are not covered)"
  skip "live RustSec advisories" "checked against the offline snapshot of 2026-08-21 instead; GitHub Actions checks the live database"
else
  skip "RustSec advisories" "no network access to the database here and no snapshot at $snapshot; run PULSE_LIVE_ADVISORIES=1 scripts/ci/deny.sh where the network allows"
fi
