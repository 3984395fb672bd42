#!/usr/bin/env bash
# Static checks of monitoring/: promtool and amtool with zero warnings, the
# alert unit tests, and Grafana's files.
#
# Usage: scripts/ci/check-monitoring.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

apt_install prometheus prometheus-alertmanager
need_python_yaml

# run_clean COMMAND...: the command must succeed and print no warning.
run_clean() {
  local output
  output="$("$@" 2>&1)" || {
    printf '%s\n' "$output"
    die "$* failed"
  }
  if grep -qi 'warn' <<<"$output"; then
    printf '%s\n' "$output"
    die "$* printed a warning"
  fi
  printf '%s\n' "$output" | sed 's/^/    /'
}

step "promtool check config"
# promtool requires the credentials file to exist: a copy of the config
# beside the rules, the one path pointed at a throwaway token.
config_check="$(mktemp -d)"
cp -r monitoring/prometheus/. "$config_check/"
printf 'throwaway-token-for-promtool\n' >"$config_check/metrics_token"
sed -i "s|credentials_file: /run/secrets/metrics_token|credentials_file: $config_check/metrics_token|" \
  "$config_check/prometheus.yml"
grep -q "credentials_file: $config_check/metrics_token" "$config_check/prometheus.yml" ||
  die "prometheus.yml: the pulse job does not read /run/secrets/metrics_token"
run_clean promtool check config "$config_check/prometheus.yml"
rm -rf "$config_check"
step "promtool check rules"
run_clean promtool check rules monitoring/prometheus/rules/*.yml
step "promtool test rules (every alert fires and stays silent where it should)"
run_clean promtool test rules monitoring/prometheus/tests/*.yml
alerts_defined="$(awk '$1 == "-" && $2 == "alert:" { print $3 }' monitoring/prometheus/rules/*.yml | sort -u)"
for alert in $alerts_defined; do
  grep -q "alertname: $alert\$" monitoring/prometheus/tests/*.yml || die "alert $alert has no promtool test"
done
info "every alert has a test: $(echo "$alerts_defined" | tr '\n' ' ')"
for alert in $alerts_defined; do
  anchor="$(tr '[:upper:]' '[:lower:]' <<<"$alert")"
  grep -q "^## $alert\$" docs/runbooks.md || die "docs/runbooks.md has no section for $alert (#$anchor)"
done
info "every alert has a runbook section"
# Absolute links, all on one base (scripts/set-runbook-url.sh sets it), each
# to its own alert's section.
bases="$(grep -hE '^ +runbook_url: ' monitoring/prometheus/rules/*.yml | sed -E 's/^ *runbook_url: //; s/#.*//' | sort -u)"
[ "$(wc -l <<<"$bases")" -eq 1 ] || die "runbook_url links use more than one base: $(tr '\n' ' ' <<<"$bases")"
[[ "$bases" =~ ^https?://[^/]+/.*runbooks\.md$ ]] || die "runbook_url base '$bases' is not an absolute URL of docs/runbooks.md"
python3 - <<'PY'
import glob, sys, yaml
for path in glob.glob("monitoring/prometheus/rules/*.yml"):
    for group in yaml.safe_load(open(path))["groups"]:
        for rule in group["rules"]:
            if "alert" in rule and not rule["annotations"]["runbook_url"].endswith("#" + rule["alert"].lower()):
                sys.exit(f"{path}: {rule['alert']}'s runbook_url points elsewhere: {rule['annotations']['runbook_url']}")
PY
info "every runbook_url is absolute, on one base ($bases), to its own section"
step "amtool check-config"
run_clean amtool check-config monitoring/alertmanager/alertmanager.yml
# route_of LABEL=VALUE...: the receiver Alertmanager picks for those labels.
route_of() { amtool config routes test --config.file=monitoring/alertmanager/alertmanager.yml "$@" 2>/dev/null; }
for case in "PulseTest critical page" "PulseTest warning ticket" "Watchdog none heartbeat"; do
  read -r alertname severity receiver <<<"$case"
  routed="$(route_of alertname="$alertname" severity="$severity" job=pulse instance=pulse:8080)"
  [ "$routed" = "$receiver" ] || die "$alertname (severity=$severity) routes to '$routed', expected $receiver"
  info "$alertname (severity=$severity) routes to $receiver"
done

step "Grafana provisioning and dashboards"
python3 scripts/ci/check-grafana.py

step "Grafana's entrypoint: the admin password, generated once and kept"
# The upstream image's /bin/sh is busybox's; the real /run.sh is replaced by
# one that prints the password Grafana would be started with.
apt_install busybox-static
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat >"$work/run.sh" <<'RUN'
#!/bin/sh
echo "run.sh started with password=${GF_SECURITY_ADMIN_PASSWORD:-} file=${GF_SECURITY_ADMIN_PASSWORD__FILE:-}"
RUN
chmod +x "$work/run.sh"
entrypoint() {
  env -i PATH=/usr/bin:/bin GF_PATHS_DATA="$work/data" PULSE_GRAFANA_RUN="$work/run.sh" "$@" \
    busybox sh monitoring/grafana/entrypoint.sh
}
mkdir -p "$work/data"
first="$(entrypoint)"
password="$(sed -n 's/^run.sh started with password=\([^ ]*\) .*/\1/p' <<<"$first")"
[ "${#password}" -eq 36 ] || die "the first start did not generate a 36-character password: $first"
grep -qF "generated admin password: $password" <<<"$first" || die "the first start did not print the password: $first"
[ "$(stat -c %a "$work/data/pulse-admin-password")" = 600 ] || die "the kept password is not mode 600"
info "first start: a new password, printed once, kept with mode 600"
touch "$work/data/grafana.db" # what Grafana creates on its first start
second="$(entrypoint)"
grep -qxF "run.sh started with password=$password file=" <<<"$second" || die "a restart changed the password: $second"
! grep -qF "$password" <<<"$(grep -v '^run.sh' <<<"$second")" || die "a restart printed the password again: $second"
info "restart: the same password, and the log says where it is, not what it is"
rm "$work/data/pulse-admin-password"
grep -q 'reset-admin-password' <<<"$(entrypoint)" || die "a database without a kept password gives no reset hint"
info "a database created otherwise: the log says how to reset the password"
grep -qxF "run.sh started with password=chosen-by-user file=" <<<"$(entrypoint GF_SECURITY_ADMIN_PASSWORD=chosen-by-user \
  GF_SECURITY_ADMIN_PASSWORD__FILE="$work/secret")" || die "GRAFANA_ADMIN_PASSWORD is not passed on, or the file is too"
info "GRAFANA_ADMIN_PASSWORD is used as given, and wins over the secrets file"
# compose's secrets volume: the file generate-secrets.sh wrote.
rm -rf "$work/data" && mkdir -p "$work/data"
printf '%s' "from-the-secrets-volume" >"$work/secret"
first="$(entrypoint GF_SECURITY_ADMIN_PASSWORD__FILE="$work/secret")"
grep -qxF "run.sh started with password= file=$work/secret" <<<"$first" || die "Grafana is not given the secrets file: $first"
grep -qF "generated admin password: from-the-secrets-volume (kept in $work/secret)" <<<"$first" ||
  die "the first start with the secrets file did not print the password: $first"
touch "$work/data/grafana.db"
second="$(entrypoint GF_SECURITY_ADMIN_PASSWORD__FILE="$work/secret")"
! grep -q "from-the-secrets-volume" <<<"$second" || die "a restart printed the password again: $second"
info "GF_SECURITY_ADMIN_PASSWORD__FILE: Grafana reads the file; printed on the first start only"
rm -rf "$work/data" && mkdir -p "$work/data"
without_file="$(entrypoint GF_SECURITY_ADMIN_PASSWORD__FILE="$work/no-such-file")"
grep -q "run.sh started with password=[0-9a-f]\{36\} file=\$" <<<"$without_file" ||
  die "without the secrets file, Grafana is not given a generated password and no file: $without_file"
info "a named but missing secrets file: the password is generated as before, and Grafana is not pointed at the file"

step "Prometheus in compose keeps every window the rules and the dashboard query"
python3 - <<'PY'
import glob
import json
import re
import sys

import yaml

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
seconds = lambda text: sum(int(n) * UNITS[u] for n, u in re.findall(r"(\d+)([smhdwy])", text))
command = yaml.safe_load(open("compose.yaml"))["services"]["prometheus"]["command"]
flags = dict(arg.split("=", 1) for arg in command if "=" in arg)
retention = flags.get("--storage.tsdb.retention.time")
if not retention or "--storage.tsdb.retention.size" not in flags:
    sys.exit("compose.yaml: Prometheus needs both --storage.tsdb.retention.time and --storage.tsdb.retention.size")
queries = []
for path in glob.glob("monitoring/prometheus/rules/*.yml"):
    for group in yaml.safe_load(open(path))["groups"]:
        queries += [(path, rule.get("record") or rule.get("alert"), rule["expr"]) for rule in group["rules"]]
def panels(node):
    for panel in node.get("panels", []):
        yield panel
        yield from panels(panel)
for path in glob.glob("monitoring/grafana/dashboards/*.json"):
    for panel in panels(json.load(open(path))):
        queries += [(path, panel.get("title"), t.get("expr", "")) for t in panel.get("targets", [])]
windows = [(seconds(w), w, where, name) for where, name, expr in queries for w in re.findall(r"\[(\d+[smhdwy])\]", expr)]
if not windows:
    sys.exit("no range window found in the rules or the dashboards: the check read nothing")
longest = max(windows)
if longest[0] > seconds(retention):
    sys.exit(f"{longest[2]}: {longest[3]!r} queries [{longest[1]}], but compose keeps only {retention}")
print(f"    retention {retention} (bounded by {flags['--storage.tsdb.retention.size']}) covers the longest window, [{longest[1]}] in {longest[3]!r}")
PY

step "rule groups that read a day or more of data are evaluated less often"
python3 - <<'PY'
import glob, re, sys, yaml
slow = 0
for path in glob.glob("monitoring/prometheus/rules/*.yml"):
    for group in yaml.safe_load(open(path))["groups"]:
        windows = re.findall(r"\[(\d+)([dwy])[]:]", " ".join(rule["expr"] for rule in group["rules"]))
        if windows:
            slow += 1
            if group.get("interval") not in ("1m", "2m"):
                sys.exit(f"{path}: group {group['name']} reads [{''.join(windows[0])}] windows every evaluation; give it interval: 1m")
            print(f"    {group['name']}: interval {group['interval']} for its {len(windows)} windows of a day or more")
if not slow:
    sys.exit("no rule group reads a window of a day or more: the check read nothing")
PY

step "an alert fires when the pulse target is absent, not only when it is down"
grep -Eq '^ *(expr: +)?absent(_over_time)?\(up\{job="pulse"\}' monitoring/prometheus/rules/*.yml ||
  die "no alert on absent(up{job=\"pulse\"}): with no target at all, up == 0 never fires"
info "PulseAbsent: absent(up{job=\"pulse\"}) (promtool tests above cover firing and silence)"
