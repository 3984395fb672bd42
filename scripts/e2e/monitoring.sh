#!/usr/bin/env bash
# End-to-end test of the monitoring files with the real Prometheus and
# Alertmanager binaries (Debian's), a real pulse and pulse's alert log.
#
# Usage: scripts/e2e/monitoring.sh [PULSE_BINARY]
# 1. start pulse as compose does by default (no fault injection), the alert
#    log, Alertmanager and Prometheus
# 2. check the pulse target is up and every rule evaluates without error
# 3. send a little normal traffic, then check that every recording rule and
#    every Grafana panel query returns data, and that no alert but the
#    Watchdog fires: a healthy service shows no empty panel and pages nobody
# 4. the Watchdog reaches the alert log's heartbeat receiver
# 5. stop pulse and wait for the page that every instance is down
#    (PulseAllInstancesDown, for: 1m) to travel Prometheus -> Alertmanager ->
#    the alert log, with its labels and absolute runbook link
# 6. Alertmanager's inhibition rules, with alerts posted to its API: a page
#    holds back the warnings under it, and only in its own namespace
# Only host-specific addresses are rewritten in copies of the shipped files;
# the rewrite is printed as a diff. Every wait is bounded; every process is
# stopped on exit.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"
started=$SECONDS

apt_install prometheus prometheus-alertmanager curl
need_python_yaml
binary="${1:-$(static_binary "$MUSL_TARGET")}"
work="$(mktemp -d)"
pids=()
cleanup() {
  local code=$?
  stop_pulse || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$code" -ne 0 ]; then
    for log in "$work"/*.log; do
      echo "--- $(basename "$log") (last lines)"
      tail -n 8 "$log"
    done
  fi
  rm -rf "$work"
  exit "$code"
}
trap cleanup EXIT

# query PROMQL prints the JSON result of an instant query.
query() { curl -s --max-time 5 "$prometheus/api/v1/query" --data-urlencode "query=$1"; }
# has_value ANSWER: at least one series with a number, not NaN (a ratio of
# no requests), which a panel would show as empty.
has_value() { python3 -c 'import json, math, sys
result = json.loads(sys.argv[1])["data"]["result"]
sys.exit(not any(not math.isnan(float(r["value"][1])) for r in result))' "$1" 2>/dev/null; }

step "starting pulse (as compose runs it: a metrics token from a file) and the alert log"
metrics_token="$(random_hex 32)"
printf '%s\n' "$metrics_token" >"$work/metrics_token"
start_pulse "$binary" "$work/pulse.log" PULSE_DRAIN_DELAY=0 PULSE_METRICS_TOKEN_FILE="$work/metrics_token"
export PULSE_METRICS_TOKEN="$metrics_token" # for healthy-stack.py's own look at /metrics
pulse_port="${PULSE_URL##*:}"
alert_log_port="$(free_port)"
PORT="$alert_log_port" HOST=127.0.0.1 PULSE_LOG_FORMAT=json "$binary" alert-log >"$work/alert-log.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$alert_log_port/livez" 10 || die "the alert log did not start"
info "pulse $PULSE_URL, alert log http://127.0.0.1:$alert_log_port"

step "copying monitoring/ and rewriting only the addresses (compose names -> 127.0.0.1 ports)"
prometheus_port="$(free_port)"
alertmanager_port="$(free_port)"
prometheus="http://127.0.0.1:$prometheus_port"
alertmanager="http://127.0.0.1:$alertmanager_port"
cp -r monitoring/prometheus "$work/prometheus"
cp -r monitoring/alertmanager "$work/alertmanager"
# The pulse job finds its replicas through the compose DNS name; here the
# one pulse is a static target.
python3 - "$work/prometheus/prometheus.yml" "127.0.0.1:$pulse_port" <<'PY'
import re, sys
path, target = sys.argv[1], sys.argv[2]
text = open(path).read()
pattern = r"    dns_sd_configs:\n      - names: \[pulse\]\n(        .*\n)+"
text, replaced = re.subn(pattern, f'    static_configs:\n      - targets: ["{target}"]\n', text)
if replaced != 1:
    sys.exit(f"expected one dns_sd_configs block for [pulse] in {path}, found {replaced}")
open(path, "w").write(text)
PY
sed -i -e "s/\"alertmanager:9093\"/\"127.0.0.1:$alertmanager_port\"/" \
  -e "s/\"localhost:9090\"/\"127.0.0.1:$prometheus_port\"/" \
  -e "s|credentials_file: /run/secrets/metrics_token|credentials_file: $work/metrics_token|" \
  "$work/prometheus/prometheus.yml"
sed -i -e "s|http://alert-log:9095/|http://127.0.0.1:$alert_log_port/|" "$work/alertmanager/alertmanager.yml"
diff -u monitoring/prometheus/prometheus.yml "$work/prometheus/prometheus.yml" | grep '^[-+] ' || true
diff -u monitoring/alertmanager/alertmanager.yml "$work/alertmanager/alertmanager.yml" | grep '^[-+] ' || true
cmp -s monitoring/prometheus/rules/pulse.yml "$work/prometheus/rules/pulse.yml" || die "the rules must not change"

step "starting Alertmanager and Prometheus"
prometheus-alertmanager --config.file="$work/alertmanager/alertmanager.yml" \
  --storage.path="$work/alertmanager-data" --web.listen-address="127.0.0.1:$alertmanager_port" \
  --cluster.listen-address= >"$work/alertmanager.log" 2>&1 &
pids+=($!)
# Without a short resend delay Prometheus holds a firing alert for a minute
# before it first tells Alertmanager.
prometheus --config.file="$work/prometheus/prometheus.yml" \
  --storage.tsdb.path="$work/prometheus-data" --web.listen-address="127.0.0.1:$prometheus_port" \
  --rules.alert.resend-delay=1s >"$work/prometheus.log" 2>&1 &
pids+=($!)
wait_http "$alertmanager/-/ready" 30 || die "Alertmanager is not ready"
wait_http "$prometheus/-/ready" 30 || die "Prometheus is not ready"
info "Prometheus $prometheus (rules: $(ls monitoring/prometheus/rules)), Alertmanager $alertmanager"

step "the pulse target is up"
wait_pulse_scraped "$prometheus" 40 || die "pulse never came up in Prometheus"
info "up{job=\"pulse\"} == 1"

step "a little normal traffic for 20 s: /, /version, /openapi.json, POST /echo, /health"
for round in $(seq 1 40); do
  curl -s -o /dev/null -o /dev/null -o /dev/null -o /dev/null --max-time 5 \
    "$PULSE_URL/" "$PULSE_URL/" "$PULSE_URL/version" "$PULSE_URL/health"
  curl -s -o /dev/null --max-time 5 -H 'Content-Type: application/json' -d '{"round":'"$round"'}' "$PULSE_URL/echo"
  [ $((round % 10)) -eq 0 ] && curl -s -o /dev/null --max-time 5 "$PULSE_URL/openapi.json"
  [ $((round % 10)) -eq 0 ] && info "$((round * 5)) requests sent"
  sleep 0.5
done

step "every recording rule yields a value"
deadline=$((SECONDS + 120))
mapfile -t recorded < <(awk '$1 == "-" && $2 == "record:" { print $3 }' monitoring/prometheus/rules/*.yml | sort -u)
[ "${#recorded[@]}" -gt 0 ] || die "no recording rules found"
for rule in "${recorded[@]}"; do
  until has_value "$(query "$rule")"; do
    [ "$SECONDS" -lt "$deadline" ] || die "recording rule $rule has no value: $(query "$rule")"
    sleep 2
  done
  info "$rule = $(query "$rule" | grep -o '"value":\[[^]]*\]' | head -n1)"
done
# Right after the first requests a window may hold none yet (0/0 is NaN):
# each ratio must settle at 0 within the deadline.
for ratio in namespace_job:http_requests_errors:ratio_rate5m namespace_job:http_requests_slow:ratio_rate5m; do
  until value="$(query "$ratio" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["result"][0]["value"][1])')" &&
    [ "$value" = 0 ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "$ratio is ${value:-empty} on a healthy service, expected 0"
    sleep 2
  done
done
info "the error and slow ratios of the healthy service are 0, not empty"
rules="$(curl -s "$prometheus/api/v1/rules")"
if grep -q '"health":"err"' <<<"$rules"; then
  die "a rule fails to evaluate: $(grep -o '"lastError":"[^"]\+"' <<<"$rules" | head -n3)"
fi
info "every rule and alert evaluates without error"

step "every Grafana panel query returns a number (variables at All); no alert but the Watchdog"
python3 scripts/e2e/healthy-stack.py "$prometheus" "$PULSE_URL" 60 || die "the healthy stack does not look healthy"

step "the Watchdog reaches the alert log's heartbeat receiver"
deadline=$((SECONDS + 60))
until grep '"alertname":"Watchdog"' "$work/alert-log.log" | grep -q '"path":"/heartbeat"'; do
  [ "$SECONDS" -lt "$deadline" ] || die "the Watchdog never reached /heartbeat"
  sleep 1
done
info "$(grep '"alertname":"Watchdog"' "$work/alert-log.log" | head -n1)"

step "stopping pulse: PulseAllInstancesDown must page through Alertmanager (for: 1m)"
stop_pulse || true
alert_started=$SECONDS
deadline=$((SECONDS + 180))
until grep -q '"alertname":"PulseAllInstancesDown"' "$work/alert-log.log"; do
  [ "$SECONDS" -lt "$deadline" ] || die "PulseAllInstancesDown never reached the alert log"
  if [ $(((SECONDS - alert_started) % 15)) -eq 0 ]; then
    state="$(curl -s "$prometheus/api/v1/alerts" | python3 -c 'import json, sys
states = [a["state"] for a in json.load(sys.stdin)["data"]["alerts"] if a["labels"]["alertname"] == "PulseAllInstancesDown"]
print(", ".join(states) or "not yet")')"
    info "$((SECONDS - alert_started))s: PulseAllInstancesDown in Prometheus: $state"
  fi
  sleep 1
done
line="$(grep '"alertname":"PulseAllInstancesDown"' "$work/alert-log.log" | head -n1)"
for expected in '"status":"firing"' '"severity":"critical"' '"receiver":"page"' '"path":"/page"' \
  '"runbook_url":"https://github.com/pulse-dev/pulse/blob/main/docs/runbooks.md#pulseallinstancesdown"'; do
  grep -qF "$expected" <<<"$line" || die "the alert lacks $expected: $line"
done
info "received after $((SECONDS - alert_started))s: $line"

step "inhibition: a page holds back the warnings under it, in its own namespace only"
# Posted straight to Alertmanager, in a namespace of their own; the API
# reports each alert as suppressed, and by which alert.
post_alerts() {
  curl -s --fail --max-time 5 -H 'Content-Type: application/json' -d "$1" "$alertmanager/api/v2/alerts" >/dev/null
}
post_alerts '[
  {"labels": {"alertname": "PulseAllInstancesDown", "severity": "critical", "job": "pulse", "namespace": "e2e-a"}},
  {"labels": {"alertname": "PulseDown", "severity": "warning", "job": "pulse", "namespace": "e2e-a", "instance": "10.9.0.1:8080"}},
  {"labels": {"alertname": "PulseDown", "severity": "warning", "job": "pulse", "namespace": "e2e-b", "instance": "10.9.1.1:8080"}},
  {"labels": {"alertname": "PulseErrorBudgetBurn", "severity": "critical", "job": "pulse", "namespace": "e2e-a"}},
  {"labels": {"alertname": "PulseErrorBudgetBurn", "severity": "warning", "job": "pulse", "namespace": "e2e-a"}},
  {"labels": {"alertname": "PulseHighErrorRate", "severity": "warning", "job": "pulse", "namespace": "e2e-a"}},
  {"labels": {"alertname": "PulseHighErrorRate", "severity": "warning", "job": "pulse", "namespace": "e2e-b"}}
]' || die "Alertmanager refused the test alerts"
expected_states='PulseAllInstancesDown critical e2e-a active
PulseDown warning e2e-a suppressed
PulseDown warning e2e-b active
PulseErrorBudgetBurn critical e2e-a active
PulseErrorBudgetBurn warning e2e-a suppressed
PulseHighErrorRate warning e2e-a suppressed
PulseHighErrorRate warning e2e-b active'
deadline=$((SECONDS + 30))
until states="$(curl -s --max-time 5 "$alertmanager/api/v2/alerts" | python3 -c 'import json, sys
rows = ["%s %s %s %s" % (a["labels"]["alertname"], a["labels"]["severity"], a["labels"]["namespace"], a["status"]["state"])
        for a in json.load(sys.stdin) if a["labels"].get("namespace", "").startswith("e2e-")]
print("\n".join(sorted(rows)))')" && [ "$states" = "$expected_states" ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "inhibition: expected
$expected_states
got
$states"
  sleep 1
done
while IFS= read -r state; do info "$state"; done <<<"$states"

step "e2e-monitoring passed in $((SECONDS - started))s"
