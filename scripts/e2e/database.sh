#!/usr/bin/env bash
# /notes against a real PostgreSQL 15 (Debian's, in a throwaway cluster on
# 127.0.0.1, started as the postgres user under root):
#   1. tests/api/notes.rs's PostgreSQL tests (cargo test -- --ignored):
#      CRUD over HTTP/1.1 and h2c, paging, ETags, refusals, SQL-shaped
#      text, migrations once for three, a clear stop, `pulse migrate`, a
#      rotated password, unprepared statements through PgBouncer in
#      transaction mode; and tests/api/database_tls.rs's, with TLS on in
#      the cluster: each sslmode, and the certificates pulse must refuse;
#   2. scripts/e2e/database.py with the release binary: nothing lost under
#      SIGKILL and a PostgreSQL restart, an outage answered 503 and
#      recovered from, three processes migrating at once.
#
# Usage: scripts/e2e/database.sh [BINARY]   (default dist/pulse-x86_64-unknown-linux-musl)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

binary="${1:-dist/pulse-x86_64-unknown-linux-musl}"
[ -x "$binary" ] || die "$binary is not an executable; build it with scripts/build/static.sh"
trap stop_postgres EXIT

step "PostgreSQL 15 in a throwaway cluster"
start_postgres
info "$(psql "$PG_URL" -Atc 'SELECT version()')"

enable_postgres_tls
start_pgbouncer

step "tests/api/notes.rs and database_tls.rs against it (cargo test --test api -- --ignored notes:: database_tls::)"
PULSE_TEST_DATABASE_URL="$PG_URL" PULSE_TEST_DATABASE_TLS_URL="$PG_TLS_URL" \
  PULSE_TEST_DATABASE_CA="$PG_TLS_CA" PULSE_TEST_DATABASE_OTHER_CA="$PG_OTHER_CA" \
  PULSE_TEST_DATABASE_SOCKET_DIR="$(dirname "$PG_DIR")" PULSE_TEST_DATABASE_POOLER="$PG_POOLER" \
  cargo test --locked --test api -- --ignored notes:: database_tls::

step "the release binary: kills, restarts, an outage, three at once"
python3 scripts/e2e/database.py "$binary"
