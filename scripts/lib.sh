# shellcheck shell=bash
# Helpers sourced by the other scripts: progress lines, installing missing
# tools, building the static binary once, and running pulse on a free port.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MUSL_TARGET="${MUSL_TARGET:-x86_64-unknown-linux-musl}"

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# skip CHECK REASON records a check that cannot run on this machine. It is
# printed, and scripts/ci.sh lists it in its summary (through
# PULSE_SKIPS_FILE). Under GitHub Actions every check can run, so a skip
# there is a failure: nothing passes there by checking nothing.
skip() {
  if [ "${GITHUB_ACTIONS:-}" = true ]; then
    die "$1 was about to be skipped, which GitHub Actions does not allow: $2"
  fi
  printf '    SKIPPED %s: %s\n' "$1" "$2"
  if [ -n "${PULSE_SKIPS_FILE:-}" ]; then
    printf '%s: %s\n' "$1" "$2" >>"$PULSE_SKIPS_FILE"
  fi
}

# need_count NAME VALUE stops with a message naming NAME unless VALUE is a
# whole number above 0 (a script's count or seconds argument).
need_count() {
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a whole number above 0, got '$2'"
}

# apt_install PACKAGE... installs the packages that are not installed yet.
apt_install() {
  local missing=()
  local package
  for package in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" = "install ok installed" ] || missing+=("$package")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing ${missing[*]}; install them with your package manager"
  # Root in CI containers and here; passwordless sudo on GitHub's runners.
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  info "apt-get install ${missing[*]}"
  if [ -z "${PULSE_APT_UPDATED:-}" ]; then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    export PULSE_APT_UPDATED=1
  fi
  # --no-remove: a package that would displace an installed one (a runner's
  # Docker, say) makes apt stop instead of removing it.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --no-remove "${missing[@]}" >/dev/null
}

# pip_install PACKAGE... installs Python packages for the python3 on PATH.
pip_install() {
  info "pip install $*"
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  local log
  log="$(mktemp)"
  # A distribution's own python3 may refuse (PEP 668); CI machines are throwaway.
  python3 -m pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1 ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@" >"$log" 2>&1 || {
    cat "$log"
    rm -f "$log"
    die "pip install $* failed"
  }
  rm -f "$log"
}

# venv_tool NAME REQUIREMENT... installs Python tools into a virtual
# environment of their own, ~/.cache/pulse/venv/NAME, and puts its bin/ first
# on PATH: tools whose pins clash (checkov wants packaging<24, schemathesis a
# newer one) then cannot break each other.
venv_tool() {
  local name="$1" venv log
  shift
  venv="${XDG_CACHE_HOME:-$HOME/.cache}/pulse/venv/$name"
  if [ ! -x "$venv/bin/python" ]; then
    info "python3 -m venv $venv"
    python3 -m venv "$venv" 2>/dev/null || {
      apt_install python3-venv
      python3 -m venv "$venv"
    }
  fi
  export PATH="$venv/bin:$PATH"
  # The requirements last installed, so a second run installs nothing.
  [ "$(cat "$venv/.pulse-requirements" 2>/dev/null)" = "$*" ] && return 0
  info "pip install $* (in $venv)"
  log="$(mktemp)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1 || {
    cat "$log"
    rm -f "$log"
    die "pip install $* failed"
  }
  rm -f "$log"
  echo "$*" >"$venv/.pulse-requirements"
}

# need_python_yaml makes `import yaml` work for the python3 on PATH.
need_python_yaml() {
  python3 -c 'import yaml' 2>/dev/null && return 0
  pip_install pyyaml
  python3 -c 'import yaml' 2>/dev/null || die "python3 cannot import yaml"
}

# cargo_tool BINARY CRATE [VERSION] installs a cargo subcommand when missing.
cargo_tool() {
  command -v "$1" >/dev/null && return 0
  info "cargo install --locked $2${3:+@$3} (a few minutes, once per machine)"
  cargo install --quiet --locked "$2${3:+@$3}"
}

# release_toolchain prints the Rust release that the static binaries are
# built with: the one in the Containerfile's builder image, which Dependabot
# moves. static.sh, the benchmarks and `podman build` then compile with the
# same compiler, the one scripts/build/hot-functions.txt was traced with
# (another compiler inlines differently, and the list fits it less well).
release_toolchain() {
  local version
  version="$(sed -n 's|.*/rust:\([0-9.]*\)-.*|\1|p' <<<"$(builder_image)")"
  [ -n "$version" ] || die "cannot read the Rust version from the Containerfile's builder image '$(builder_image)'"
  printf '%s\n' "$version"
}

# release_cargo ARGS... runs cargo with release_toolchain, installing it
# (rustup's minimal profile) and any `--target` it lacks. Progress goes to
# stderr.
release_cargo() {
  local toolchain previous="" argument
  toolchain="$(release_toolchain)"
  if ! rustc "+$toolchain" --version >/dev/null 2>&1; then
    info "rustup toolchain install $toolchain (the Rust of the Containerfile's builder image)" >&2
    rustup toolchain install "$toolchain" --profile minimal --no-self-update >&2
  fi
  for argument in "$@"; do
    if [ "$previous" = --target ] &&
      ! grep -qx "$argument" <<<"$(rustup target list --installed --toolchain "$toolchain")"; then
      rustup target add --toolchain "$toolchain" "$argument" >&2
    fi
    previous="$argument"
  done
  RUSTUP_TOOLCHAIN="$toolchain" cargo "$@"
}

# static_binary [TRIPLE] builds the release binary for a musl target with
# release_toolchain (once per run of cargo; it is a no-op when up to date)
# and prints its path.
static_binary() {
  local target="${1:-$MUSL_TARGET}"
  # ring (rustls) cross-compiles its C for aarch64 with clang (.cargo/config.toml).
  if [[ "$target" == aarch64-* ]] && ! command -v clang >/dev/null; then apt_install clang >&2; fi
  (cd "$REPO_ROOT" && release_cargo build --locked --release --target "$target" >&2)
  printf '%s\n' "$REPO_ROOT/target/$target/release/pulse"
}

# start_pulse BINARY LOGFILE [NAME=VALUE...] starts pulse on a free port of
# 127.0.0.1 and sets PULSE_PID and PULSE_URL. It waits at most 10 s.
start_pulse() {
  local binary="$1" logfile="$2"
  shift 2
  env HOST=127.0.0.1 PORT=0 "$@" "$binary" >"$logfile" 2>&1 &
  PULSE_PID=$!
  local address="" tries=0
  while [ -z "$address" ]; do
    tries=$((tries + 1))
    if [ "$tries" -gt 200 ] || ! kill -0 "$PULSE_PID" 2>/dev/null; then
      cat "$logfile" >&2
      kill -KILL "$PULSE_PID" 2>/dev/null || true
      die "pulse did not start listening"
    fi
    sleep 0.05
    address="$(grep -o 'listening on http://[^ "]*' "$logfile" | head -n1 | sed 's|listening on http://||' || true)"
  done
  PULSE_URL="http://$address"
  export PULSE_PID PULSE_URL
}

# stop_pulse sends SIGTERM and waits for the exit code, which it returns.
stop_pulse() {
  [ -n "${PULSE_PID:-}" ] || return 0
  kill -TERM "$PULSE_PID" 2>/dev/null || true
  local code=0
  wait "$PULSE_PID" || code=$?
  PULSE_PID=""
  return "$code"
}

# wait_for_socket PATH SECONDS waits until PATH is a socket, or stops.
wait_for_socket() {
  local waited=0
  until [ -S "$1" ]; do
    [ "$waited" -lt "$2" ] || die "no socket at $1 after $2 s"
    sleep 1
    waited=$((waited + 1))
  done
}

# podman_session gives rootless podman a systemd user manager to put its
# containers under, so that it can set the CPU and memory limits
# compose.yaml and the kube Deployment declare; without one podman falls
# back to cgroupfs and can set no limit at all. Call it before a script's
# first podman command (lint-repo.sh checks): it sets XDG_RUNTIME_DIR,
# under which rootless podman keeps its run state.
# - GitHub's runners run every job as the user `runner` from a system
#   service, with no user session (actions/runner#1134,
#   actions/runner-images#3536). There, and only there, it starts the
#   user's manager with `loginctl enable-linger` (passwordless sudo), and
#   delegates the cpu controller to it where systemd does not by default
#   (it does from systemd 252 on: Delegate=pids memory cpu).
# - Elsewhere it changes nothing on the machine; where a manager is
#   running, it points podman at it. podman_setup names the fix when limits
#   still cannot be set.
podman_session() {
  [ "$(id -u)" -ne 0 ] || return 0
  local uid user run controllers
  uid="$(id -u)"
  user="$(id -un)"
  run="/run/user/$uid"
  if [ ! -S "$run/bus" ] && [ "${GITHUB_ACTIONS:-}" = true ]; then
    step "starting a systemd user manager for $user (loginctl enable-linger), so rootless podman can set cgroup limits"
    sudo loginctl enable-linger "$user"
    sudo systemctl start "user@$uid.service"
    wait_for_socket "$run/bus" 30
    controllers="/sys/fs/cgroup/user.slice/user-$uid.slice/user@$uid.service/cgroup.controllers"
    if ! grep -qw cpu "$controllers" 2>/dev/null; then
      info "delegating the cpu controller to user@$uid.service (it has: $(cat "$controllers" 2>/dev/null || echo none))"
      sudo mkdir -p /etc/systemd/system/user@.service.d
      printf '[Service]\nDelegate=pids memory cpu\n' | sudo tee /etc/systemd/system/user@.service.d/pulse-delegate.conf >/dev/null
      sudo systemctl daemon-reload
      sudo systemctl restart "user@$uid.service"
      wait_for_socket "$run/bus" 30
    fi
  fi
  if [ -S "$run/bus" ]; then
    export XDG_RUNTIME_DIR="$run" DBUS_SESSION_BUS_ADDRESS="unix:path=$run/bus"
  fi
}

# podman_install installs podman, podman-compose and what podman needs to
# run compose.yaml and `podman kube play`:
# - the dnsname CNI plugin where podman's network backend is CNI (podman 4.3
#   on Debian 12): without it containers cannot resolve each other by name;
#   netavark (newer podman, GitHub's runners) resolves names itself;
# - catatonit, the pause process of the infra container kube play creates.
podman_install() {
  podman_session
  local packages=(podman slirp4netns uidmap catatonit)
  # An OCI runtime only when none is on PATH. On GitHub's runners runc comes
  # from Docker's containerd.io, which Conflicts/Replaces the distribution's
  # runc: asking apt for runc there would remove containerd.io and Docker.
  command -v runc >/dev/null || command -v crun >/dev/null || packages+=(runc)
  apt_install "${packages[@]}"
  if [ "$(podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null)" = cni ]; then
    apt_install golang-github-containernetworking-plugin-dnsname
  fi
  if ! podman-compose version 2>/dev/null | grep -Eq 'podman-compose version 1\.([1-9]|[1-9][0-9])'; then
    # Debian's podman-compose 1.0.3 mangles CMD healthchecks and leaves networks behind.
    pip_install 'podman-compose>=1.1'
  fi
}

# podman_setup TEST_IMAGE [ARG...] installs podman (podman_install) and uses
# this build machine's containers.conf only where `podman run TEST_IMAGE ARG...`
# (default ARG: --version) fails with podman's defaults (this repo's CI
# machines: no crun, low ulimits).
podman_setup() {
  local image="$1"
  shift
  [ "$#" -gt 0 ] || set -- --version
  podman_install
  if [ -z "${CONTAINERS_CONF:-}" ] && ! podman run --rm "$image" "$@" >/dev/null 2>&1; then
    export CONTAINERS_CONF="$REPO_ROOT/scripts/sandbox/podman/containers.conf"
    info "containers do not start with podman's defaults here; using $CONTAINERS_CONF"
    podman run --rm "$image" "$@" >/dev/null || die "podman cannot start a container, even with $CONTAINERS_CONF"
  fi
  # compose.yaml's deploy.resources.limits and the kube Deployment's limits.
  # Rootless podman can set a CPU limit only where the cgroup v2 cpu
  # controller is delegated to the user: systemd does so by default from
  # version 252 on, but only inside a user session (user@UID.service);
  # without one podman falls back to cgroupfs and can set no limit at all.
  local answer
  if ! answer="$(podman run --rm --cpus 0.5 --memory 64m "$image" "$@" 2>&1 >/dev/null)"; then
    printf '%s\n' "$answer" >&2
    die "podman ($(podman_mode)) cannot apply --cpus and --memory, which compose.yaml and the kube Deployment set. Rootless, the cpu controller must be delegated: run in a systemd user session (loginctl enable-linger \$USER), or as root"
  fi
}

# podman_mode prints whether podman runs rootful or rootless, and as whom.
podman_mode() {
  if [ "$(id -u)" -eq 0 ]; then echo "rootful, as root"; else echo "rootless, as $(id -un)"; fi
}

# cpu_ns PID: CPU time the process's threads have used, in nanoseconds, from
# the scheduler's own accounting (/proc/PID/task/*/schedstat). utime and
# stime in /proc/PID/stat count 10 ms ticks: half a percent of a 4 s
# measurement in which each of two servers gets half the core.
cpu_ns() { cat "/proc/$1"/task/*/schedstat | awk '{ sum += $1 } END { printf "%.0f\n", sum }'; }

# random_hex BYTES prints BYTES random bytes as lowercase hex, with no
# newline: throwaway tokens and trace ids for the tests.
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# free_port prints a TCP port that is free on 127.0.0.1 right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# PostgreSQL for the database tests, in a throwaway cluster: the
# distribution's own (15 on Debian 12, 16 on Ubuntu 24.04).
pg_bin() {
  local newest
  newest="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -n1)"
  [ -n "$newest" ] || die "no PostgreSQL server under /usr/lib/postgresql"
  printf '/usr/lib/postgresql/%s/bin\n' "$newest"
}

# as_postgres COMMAND... runs COMMAND as the user PostgreSQL runs as: the
# `postgres` user under root (PostgreSQL refuses to run as root), else the
# caller (GitHub's runner user).
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_postgres starts a cluster in a new temporary directory on a free
# port of 127.0.0.1, with a role `pulse` (LOGIN CREATEDB, a random password)
# owning a database `pulse`. Sets PG_DIR, PG_PORT, PG_PASSWORD and PG_URL (a
# libpq URI for PULSE_DATABASE_URL). pg_cluster ARGS... runs pg_ctl on it;
# stop_postgres stops it and removes it.
start_postgres() {
  apt_install postgresql
  PG_BIN="$(pg_bin)"
  local dir
  dir="$(mktemp -d)"
  # mktemp's 0700 would keep the postgres user out.
  chmod 755 "$dir"
  [ "$(id -u)" -ne 0 ] || chown postgres "$dir"
  PG_DIR="$dir/data"
  PG_PORT="$(free_port)"
  PG_PASSWORD="$(random_hex 16)"
  info "initdb $PG_DIR; PostgreSQL on 127.0.0.1:$PG_PORT"
  as_postgres "$PG_BIN/initdb" -D "$PG_DIR" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  # Passwords over TCP (scram-sha-256), the way pulse logs in anywhere else.
  printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"$PG_DIR/pg_hba.conf"
  export PG_BIN PG_DIR PG_PORT
  pg_start
  as_postgres "$PG_BIN/psql" -q -h "$dir" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE pulse LOGIN CREATEDB CREATEROLE PASSWORD '$PG_PASSWORD'" \
    -c "CREATE DATABASE pulse OWNER pulse" >/dev/null
  PG_URL="postgres://pulse:$PG_PASSWORD@127.0.0.1:$PG_PORT/pulse?sslmode=disable"
  export PG_DIR PG_PORT PG_PASSWORD PG_URL
}

pg_cluster() { as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR" "$@"; }

# enable_postgres_tls turns TLS on in the cluster start_postgres made. A CA
# of its own signs the server's certificate, for the name `localhost` only
# (so verify-full against 127.0.0.1 must fail), and a role `pulse_tls`,
# owning a database `pulse_tls`, may log in over TLS only. Sets PG_TLS_URL
# (a URL for pulse_tls on 127.0.0.1 with its password and no sslmode),
# PG_TLS_CA (that CA, PEM) and PG_OTHER_CA (a CA that signed nothing here).
enable_postgres_tls() {
  command -v openssl >/dev/null || apt_install openssl
  local tls password
  tls="$(dirname "$PG_DIR")/tls"
  mkdir -p "$tls"
  info "TLS: a test CA, a server certificate for localhost, a role pulse_tls that may log in over TLS only"
  # P-256 keys: quick to make, and what managed databases commonly use.
  local key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${key[@]}" -days 2 -subj "/CN=pulse test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -x509 "${key[@]}" -days 2 -subj "/CN=another test CA" \
    -keyout "$tls/other-ca.key" -out "$tls/other-ca.pem" 2>/dev/null
  openssl req "${key[@]}" -subj "/CN=localhost" -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  printf '%s\n' 'basicConstraints=CA:FALSE' 'keyUsage=critical,digitalSignature' \
    'extendedKeyUsage=serverAuth' 'subjectAltName=DNS:localhost' >"$tls/server.ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
    -set_serial "0x$(random_hex 8)" -days 2 -extfile "$tls/server.ext" -out "$tls/server.pem" 2>/dev/null
  # PostgreSQL refuses a key that others may read.
  chmod 600 "$tls/server.key"
  [ "$(id -u)" -ne 0 ] || chown postgres "$tls/server.key"
  printf "ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\n" "$tls/server.pem" "$tls/server.key" \
    >>"$PG_DIR/postgresql.conf"
  # The first line that matches decides: pulse_tls over TLS, never without,
  # ahead of start_postgres's own rules, which stay as they are.
  printf '%s\n' 'hostssl all pulse_tls 127.0.0.1/32 scram-sha-256' \
    'hostnossl all pulse_tls 127.0.0.1/32 reject' | cat - "$PG_DIR/pg_hba.conf" >"$tls/pg_hba.conf"
  cp "$tls/pg_hba.conf" "$PG_DIR/pg_hba.conf"
  pg_cluster stop -m fast >/dev/null
  pg_start
  password="$(random_hex 16)"
  as_postgres "$PG_BIN/psql" -q -h "$(dirname "$PG_DIR")" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE pulse_tls LOGIN PASSWORD '$password'" \
    -c "CREATE DATABASE pulse_tls OWNER pulse_tls" >/dev/null
  PG_TLS_URL="postgres://pulse_tls:$password@127.0.0.1:$PG_PORT/pulse_tls"
  PG_TLS_CA="$tls/ca.pem"
  PG_OTHER_CA="$tls/other-ca.pem"
  export PG_TLS_URL PG_TLS_CA PG_OTHER_CA
}

# pg_start starts the cluster again after a stop, on its port and socket.
pg_start() {
  local dir
  dir="$(dirname "$PG_DIR")"
  pg_cluster start -w -t 30 -l "$dir/postgres.log" \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $dir -c fsync=off" >/dev/null ||
    { cat "$dir/postgres.log" >&2; die "PostgreSQL did not start"; }
}

# start_pgbouncer puts PgBouncer (Debian's) in front of start_postgres's
# cluster in transaction mode, the mode of the poolers managed databases
# offer, with two server connections per database shared by all its
# clients. Sets PG_POOLER, its HOST:PORT: any database of the cluster, as
# the pulse role with its password. stop_postgres stops it too.
start_pgbouncer() {
  apt_install pgbouncer
  local dir
  dir="$(dirname "$PG_DIR")"
  PG_POOLER="127.0.0.1:$(free_port)"
  info "PgBouncer in transaction mode on $PG_POOLER"
  printf '"pulse" "%s"\n' "$PG_PASSWORD" >"$dir/pgbouncer-users.txt"
  printf '%s\n' '[databases]' "* = host=127.0.0.1 port=$PG_PORT" '[pgbouncer]' \
    "listen_addr = 127.0.0.1" "listen_port = ${PG_POOLER#*:}" "unix_socket_dir =" \
    "auth_type = scram-sha-256" "auth_file = $dir/pgbouncer-users.txt" \
    "pool_mode = transaction" "default_pool_size = 2" \
    "logfile = $dir/pgbouncer.log" "pidfile = $dir/pgbouncer.pid" >"$dir/pgbouncer.ini"
  # PgBouncer refuses to run as root, and reads its files as its own user.
  chmod 600 "$dir/pgbouncer-users.txt"
  [ "$(id -u)" -ne 0 ] || chown postgres "$dir/pgbouncer-users.txt" "$dir/pgbouncer.ini"
  as_postgres pgbouncer -d "$dir/pgbouncer.ini" ||
    { cat "$dir/pgbouncer.log" >&2 2>/dev/null; die "PgBouncer did not start"; }
  export PG_POOLER
}

stop_postgres() {
  [ -n "${PG_DIR:-}" ] || return 0
  local pooler_pid
  pooler_pid="$(dirname "$PG_DIR")/pgbouncer.pid"
  [ ! -f "$pooler_pid" ] || kill "$(cat "$pooler_pid")" 2>/dev/null || true
  pg_cluster stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$(dirname "$PG_DIR")"
  PG_DIR=""
}

# post_note URL TEXT posts {"text": TEXT} to URL/notes and prints the new
# note's path, from the answer's Location; dies without one.
post_note() {
  local headers location
  headers="$(mktemp)"
  curl -s -D "$headers" -o /dev/null -H 'Content-Type: application/json' \
    -d "$(python3 -c 'import json, sys; print(json.dumps({"text": sys.argv[1]}))' "$2")" "$1/notes"
  location="$(awk 'tolower($1) == "location:" { print $2 }' "$headers" | tr -d '\r')"
  local status
  status="$(head -n1 "$headers")"
  rm -f "$headers"
  [[ "$location" == /notes/* ]] || die "POST $1/notes: no Location ($status)"
  printf '%s\n' "$location"
}

# note_text URL PATH prints the text of the note that GET URL PATH answers.
note_text() {
  curl -s "$1$2" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("text"))'
}

# wait_http URL SECONDS waits until URL answers 200.
wait_http() {
  local url="$1" deadline=$((SECONDS + $2))
  until [ "$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$url" 2>/dev/null)" = 200 ]; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.25
  done
}

# wait_pulse_scraped PROMETHEUS_URL SECONDS waits until Prometheus reports
# the pulse target up (`up{job="pulse"} == 1` has a result).
wait_pulse_scraped() {
  local deadline=$((SECONDS + $2)) answer
  until answer="$(curl -s --max-time 5 "$1/api/v1/query" --data-urlencode 'query=up{job="pulse"} == 1')" &&
    grep -q '"result":\[{' <<<"$answer"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 1
  done
}

# haproxy_servers STATS_URL prints one line per server of the `pulse` backend
# of deploy/haproxy/haproxy.cfg: its status (UP, DOWN, MAINT...) and its
# address (the CSV has it with `stats show-legends`). Fails when the stats
# page does not answer.
haproxy_servers() {
  local csv
  csv="$(curl -sf --max-time 2 "$1/stats;csv")" || return 1
  python3 -c '
import csv, sys
rows = csv.reader(sys.stdin)
header = next(rows)
status, addr = header.index("status"), header.index("addr")
for row in rows:
    if row[0] == "pulse" and row[1] not in ("FRONTEND", "BACKEND"):
        print(row[status], row[addr])' <<<"$csv"
}

# check_locked_down CONTAINER checks, from /proc of its running process, that
# it runs as uid 65532 with no capabilities, no privilege escalation and a
# read-only root filesystem: what the runtime did, not what was asked.
check_locked_down() {
  local pid status uid caps nnp root_options
  pid="$(podman inspect --format '{{.State.Pid}}' "$1")"
  status="/proc/$pid/status"
  # The uid as the container sees it: rootless podman maps it to another
  # uid on the host, so /proc's view from outside would differ.
  uid="$(podman top "$1" user 2>/dev/null | awk 'NR == 2 { print $1 }')"
  [ "$uid" = 65532 ] || die "$1 runs as uid $uid, expected 65532"
  info "uid 65532 (podman top)"
  caps="$(awk '/^CapEff:/ { print $2 }' "$status")"
  [ "$caps" = 0000000000000000 ] || die "$1 has effective capabilities $caps"
  info "no effective capabilities"
  nnp="$(awk '/^NoNewPrivs:/ { print $2 }' "$status")"
  [ "$nnp" = 1 ] || die "$1 may gain privileges (NoNewPrivs is $nnp)"
  info "no privilege escalation (no-new-privileges)"
  root_options="$(awk '$5 == "/" { print $6 }' "/proc/$pid/mountinfo" | head -n1)"
  [[ "$root_options" == ro* ]] || die "$1 has its root filesystem mounted '$root_options', expected read-only"
  info "read-only root filesystem ($root_options)"
}

# builder_image prints the Rust image the Containerfile's `bin` stage builds
# in, as it names it: repository:tag@sha256:digest.
builder_image() {
  sed -n 's/^FROM .* \([^ ]*rust:[^ ]*\) AS bin$/\1/p' "$REPO_ROOT/Containerfile"
}

# builder_tag prints builder_image without its digest: the name a local
# stand-in takes (a stand-in cannot have the upstream digest).
builder_tag() {
  local image
  image="$(builder_image)"
  echo "${image%@sha256:*}"
}

# standin_containerfile DIR writes to DIR/Containerfile the Containerfile with
# the builder's digest taken out, so that a build uses the local stand-in
# tagged builder_tag, and prints the one line it changed.
standin_containerfile() {
  sed "s|$(builder_image)|$(builder_tag)|" "$REPO_ROOT/Containerfile" >"$1/Containerfile"
  { diff "$REPO_ROOT/Containerfile" "$1/Containerfile" || true; } | sed -n 's/^> /    stand-in build: /p'
}
