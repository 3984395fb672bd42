#!/bin/sh
# Grafana's entrypoint in compose.yaml: sets the admin password, then runs
# the image's own /run.sh.
#
# There is no committed password and no admin/admin. Grafana applies the
# admin password only when it creates its database, so:
# - GRAFANA_ADMIN_PASSWORD set (compose passes it as GF_SECURITY_ADMIN_PASSWORD):
#   used on the first start; later changes need a reset (below).
# - GF_SECURITY_ADMIN_PASSWORD__FILE names a readable file (compose's
#   secrets volume, filled by deploy/compose/generate-secrets.sh): Grafana
#   reads the password from it; printed once, on the first start.
# - neither, first start: a random password is generated, kept in the data
#   volume ($GF_PATHS_DATA/pulse-admin-password, mode 600) and printed once.
# - neither, later starts: the kept password is used again, and the log says
#   where it is, not what it is.
# Reset: podman compose exec grafana grafana cli admin reset-admin-password NEW
set -eu

data="${GF_PATHS_DATA:-/var/lib/grafana}"
kept="$data/pulse-admin-password"
reset_hint="reset it with: podman compose exec grafana grafana cli admin reset-admin-password NEW"

secret_file="${GF_SECURITY_ADMIN_PASSWORD__FILE:-}"
if [ -n "${GF_SECURITY_ADMIN_PASSWORD:-}" ]; then
  # The password given wins over the file.
  unset GF_SECURITY_ADMIN_PASSWORD__FILE
  if [ -f "$data/grafana.db" ]; then
    echo "pulse: GRAFANA_ADMIN_PASSWORD applies only when Grafana creates its database; this one keeps its own admin password ($reset_hint)"
  fi
elif [ -n "$secret_file" ] && [ -r "$secret_file" ]; then
  if [ -f "$data/grafana.db" ]; then
    echo "pulse: the admin password is in $secret_file (podman compose exec grafana cat $secret_file)"
  else
    echo "pulse: generated admin password: $(cat "$secret_file") (kept in $secret_file)"
  fi
elif [ -f "$kept" ]; then
  GF_SECURITY_ADMIN_PASSWORD="$(cat "$kept")"
  export GF_SECURITY_ADMIN_PASSWORD
  echo "pulse: the admin password generated on the first start is in $kept (podman compose exec grafana cat $kept)"
elif [ -f "$data/grafana.db" ]; then
  echo "pulse: this database was created with an admin password that is not kept here; $reset_hint"
else
  GF_SECURITY_ADMIN_PASSWORD="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  export GF_SECURITY_ADMIN_PASSWORD
  (umask 077 && printf '%s\n' "$GF_SECURITY_ADMIN_PASSWORD" >"$kept")
  echo "pulse: GRAFANA_ADMIN_PASSWORD is not set; generated admin password: $GF_SECURITY_ADMIN_PASSWORD (kept in $kept)"
fi
if [ -n "$secret_file" ] && [ ! -r "$secret_file" ]; then
  # Named but not there (run without compose's secrets volume): Grafana
  # would refuse to start; the branches above chose the password instead.
  unset GF_SECURITY_ADMIN_PASSWORD__FILE
fi
exec "${PULSE_GRAFANA_RUN:-/run.sh}" "$@"
