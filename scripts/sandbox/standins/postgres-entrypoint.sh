#!/bin/sh
# The stand-in's docker-entrypoint.sh: what the upstream postgres image's
# does for compose.yaml, in busybox sh. On the first start (an empty
# $PGDATA) it creates the cluster with POSTGRES_USER as its superuser, the
# password from POSTGRES_PASSWORD_FILE (or POSTGRES_PASSWORD), password
# logins over TCP, and the database POSTGRES_DB; then it runs the server.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
user="${POSTGRES_USER:-postgres}"
database="${POSTGRES_DB:-$user}"
if [ "${1:-postgres}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    password="$(cat "$POSTGRES_PASSWORD_FILE")"
  else
    password="${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE}"
  fi
  printf '%s\n' "$password" >/tmp/pwfile
  initdb -D "$PGDATA" -U "$user" --pwfile=/tmp/pwfile -A scram-sha-256 --no-locale -E UTF8 >/tmp/initdb.log 2>&1 ||
    { cat /tmp/initdb.log >&2; exit 1; }
  rm -f /tmp/pwfile
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  if [ "$database" != postgres ]; then
    echo "CREATE DATABASE \"$database\" OWNER \"$user\"" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  echo "docker-entrypoint.sh: initialised $PGDATA (user $user, database $database)"
fi
[ "${1:-postgres}" = postgres ] && shift
exec postgres -D "$PGDATA" "$@"
