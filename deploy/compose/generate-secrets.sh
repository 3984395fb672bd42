#!/bin/sh
# The compose stack's `secrets` service: on the first start, writes each
# missing secret into the `secrets` volume, which the services mount
# read-only at /run/secrets; later starts keep what is there. So a fresh
# clone comes up with a plain `podman compose up` and commits no secret.
# Runs in the Prometheus image (busybox, or Debian in the stand-in): sh, od,
# tr, chown and chmod are all it needs.
#
#   metrics_token           pulse's PULSE_METRICS_TOKEN_FILE and Prometheus's
#                           credentials_file: owner 65532 (pulse), group
#                           65534 (Prometheus runs as nobody:nogroup), 0440
#   grafana_admin_password  Grafana's GF_SECURITY_ADMIN_PASSWORD__FILE: owner
#                           472 (grafana), 0400
#   postgres_password       PostgreSQL's POSTGRES_PASSWORD_FILE (read on its
#                           first start) and pulse's PULSE_DATABASE_PASSWORD_FILE:
#                           owner 65532 (pulse), group 999 (postgres), 0440
#
# To bring your own (decrypted with sops, rendered by an agent): use
# deploy/compose/secrets-from-files.yaml instead of this volume. To rotate
# the token: write a new one into the file; pulse and Prometheus re-read it.
set -eu
dir="${SECRETS_DIR:-/run/secrets}"
umask 077

# new NAME OWNER MODE: writes a random value into $dir/NAME, readable by
# OWNER only (with MODE), unless it exists. Mode before owner: once the file
# is not root's, changing its mode would need CAP_FOWNER too.
new() {
  if [ -s "$dir/$1" ]; then
    echo "secrets: $1 is kept from an earlier start"
    return
  fi
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$dir/$1.new"
  chmod "$3" "$dir/$1.new"
  chown "$2" "$dir/$1.new"
  mv "$dir/$1.new" "$dir/$1"
  echo "secrets: $1 generated"
}
new metrics_token 65532:65534 0440
new grafana_admin_password 472:472 0400
new postgres_password 65532:999 0440
