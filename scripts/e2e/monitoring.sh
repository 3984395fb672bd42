#!/usr/bin/env bash
# End-to-end test of the monitoring files with the real Prometheus and
# Alertmanager binaries (Debian's), a real pulse and pulse's alert log.
#
# Usage: scripts/e2e/monitoring.sh [PULSE_BINARY]
# 1. start pulse (fault injection on), the alert log, Alertmanager, Prometheus
# 2. check the pulse target is up and every rule evaluates without error
# 3. send mixed traffic (some /status/500, some /delay), then check every
#    recording rule and every Grafana panel query returns data
# 4. stop pulse and wait for the shipped PulseDown alert (for: 1m) to travel
#    Prometheus -> Alertmanager -> the alert log, with its labels
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
has_data() { grep -q '"result":\[{' <<<"$1"; }

step "starting pulse (fault injection on) and the alert log"
start_pulse "$binary" "$work/pulse.log" PULSE_FAULT_INJECTION=true PULSE_DRAIN_DELAY=0
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
sed -i -e "s/\"pulse:8080\"/\"127.0.0.1:$pulse_port\"/" \
  -e "s/\"alertmanager:9093\"/\"127.0.0.1:$alertmanager_port\"/" \
  -e "s/\"localhost:9090\"/\"127.0.0.1:$prometheus_port\"/" "$work/prometheus/prometheus.yml"
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

step "mixed traffic for 20 s: /, /health, /status/500, /status/404, /delay/250"
for round in $(seq 1 40); do
  curl -s -o /dev/null -o /dev/null -o /dev/null -o /dev/null -o /dev/null -o /dev/null --max-time 5 \
    "$PULSE_URL/" "$PULSE_URL/" "$PULSE_URL/health" "$PULSE_URL/status/500" "$PULSE_URL/status/404" "$PULSE_URL/delay/250"
  [ $((round % 10)) -eq 0 ] && info "$((round * 6)) requests sent"
  sleep 0.25
done

step "every recording rule yields a value"
deadline=$((SECONDS + 90))
mapfile -t recorded < <(awk '$1 == "-" && $2 == "record:" { print $3 }' monitoring/prometheus/rules/*.yml)
[ "${#recorded[@]}" -gt 0 ] || die "no recording rules found"
for rule in "${recorded[@]}"; do
  until has_data "$(query "$rule")"; do
    [ "$SECONDS" -lt "$deadline" ] || die "recording rule $rule has no value: $(query "$rule")"
    sleep 2
  done
  info "$rule = $(query "$rule" | grep -o '"value":\[[^]]*\]' | head -n1)"
done
rules="$(curl -s "$prometheus/api/v1/rules")"
if grep -q '"health":"err"' <<<"$rules"; then
  die "a rule fails to evaluate: $(grep -o '"lastError":"[^"]\+"' <<<"$rules" | head -n3)"
fi
info "every rule and alert evaluates without error"

step "every Grafana panel query returns data"
panels=0
while IFS= read -r line; do
  panel="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["panel"])' "$line")"
  expr="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["expr"])' "$line")"
  answer="$(query "$expr")"
  has_data "$answer" || die "panel '$panel' returns no data for: $expr ($answer)"
  panels=$((panels + 1))
  info "$panel: $expr"
done < <(scripts/ci/check-grafana.py --exprs)
# Counted from the dashboard files themselves, so a parser that reads too
# few queries (or none) cannot pass.
targets="$(python3 -c 'import glob, json, sys
def panels(p):
    for panel in p.get("panels", []):
        yield panel
        yield from panels(panel)
print(sum(len(panel.get("targets", [])) for path in glob.glob(sys.argv[1])
          for panel in panels(json.load(open(path)))))' 'monitoring/grafana/dashboards/*.json')"
[ "$targets" -gt 0 ] || die "the dashboards hold no panel targets"
[ "$panels" -eq "$targets" ] || die "$panels queries ran, but the dashboards hold $targets panel targets"
info "$panels queries returned data: every one of the dashboards' $targets panel targets"

step "stopping pulse: PulseDown must reach the alert log through Alertmanager (for: 1m)"
stop_pulse || true
alert_started=$SECONDS
deadline=$((SECONDS + 180))
until grep -q '"alertname":"PulseDown"' "$work/alert-log.log"; do
  [ "$SECONDS" -lt "$deadline" ] || die "PulseDown never reached the alert log"
  if [ $(((SECONDS - alert_started) % 15)) -eq 0 ]; then
    state="$(curl -s "$prometheus/api/v1/alerts" | python3 -c 'import json, sys
states = [a["state"] for a in json.load(sys.stdin)["data"]["alerts"] if a["labels"]["alertname"] == "PulseDown"]
print(", ".join(states) or "not yet")')"
    info "$((SECONDS - alert_started))s: PulseDown in Prometheus: $state"
  fi
  sleep 1
done
line="$(grep '"alertname":"PulseDown"' "$work/alert-log.log" | head -n1)"
for expected in '"status":"firing"' '"severity":"critical"' '"receiver":"page"' '"path":"/page"' \
  "\"instance\":\"127.0.0.1:$pulse_port\"" '"runbook_url":"docs/runbooks.md#pulsedown"'; do
  grep -qF "$expected" <<<"$line" || die "the alert lacks $expected: $line"
done
info "received after $((SECONDS - alert_started))s: $line"

step "e2e-monitoring passed in $((SECONDS - started))s"
