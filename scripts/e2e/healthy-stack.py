#!/usr/bin/env python3
"""Checks, through Prometheus's HTTP API, that a healthy stack looks healthy:
every Grafana panel query returns a number, and no alert but the Watchdog
is firing or pending. scripts/e2e/monitoring.sh (Debian's Prometheus on this
host) and scripts/e2e/compose.sh (the compose stack) run it after sending a
little normal traffic.

Usage: scripts/e2e/healthy-stack.py PROMETHEUS_URL PULSE_URL [SECONDS]
Each query is retried until SECONDS (default 60) have passed: right after
the first requests a window may hold none yet (0/0 is NaN). pulse exports
its memory limit only inside a cgroup that has one, and the database's
metrics only with PULSE_DATABASE_URL set; where its /metrics has none, those
queries must be empty too. Exits 1 at the first failure.
With PULSE_METRICS_TOKEN in the environment, pulse's /metrics is read with
it as a bearer token.
"""
import glob
import json
import math
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def get(url, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
        return response.read().decode()


def query(prometheus, expr):
    answer = json.loads(get(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    return answer["data"]["result"]


def numbers(result):
    return [float(r["value"][1]) for r in result if not math.isnan(float(r["value"][1]))]


def main():
    prometheus, pulse = sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/")
    deadline = time.monotonic() + float(sys.argv[3] if len(sys.argv) > 3 else 60)
    page = get(f"{pulse}/metrics", os.environ.get("PULSE_METRICS_TOKEN")).splitlines()
    has_limit = any(line.startswith("pulse_memory_limit_bytes ") for line in page)
    has_database = any(line.startswith("pulse_database_up ") for line in page)
    exprs = [json.loads(line) for line in subprocess.run(
        [os.path.join(ROOT, "scripts/ci/check-grafana.py"), "--exprs"],
        capture_output=True, text=True, check=True).stdout.splitlines()]
    for e in exprs:
        if not has_limit and e["expr"].startswith("pulse_memory_limit_bytes"):
            if query(prometheus, e["expr"]):
                sys.exit(f"panel {e['panel']!r}: a memory limit that pulse does not export: {e['expr']}")
            print(f"    {e['panel']}: {e['expr']} (empty, as it must be: pulse exports no memory limit here)")
            continue
        if not has_database and "pulse_database_" in e["expr"]:
            if query(prometheus, e["expr"]):
                sys.exit(f"panel {e['panel']!r}: database figures from a pulse without a database: {e['expr']}")
            print(f"    {e['panel']}: {e['expr']} (empty, as it must be: pulse has no database here)")
            continue
        while not numbers(result := query(prometheus, e["expr"])):
            if time.monotonic() > deadline:
                sys.exit(f"panel {e['panel']!r} shows no number for: {e['expr']} ({result})")
            time.sleep(2)
        print(f"    {e['panel']}: {e['expr']} = {numbers(result)[0]:g}")
    # Counted from the dashboard files themselves, so a parser that reads too
    # few queries (or none) cannot pass.
    def panels(node):
        for panel in node.get("panels", []):
            yield panel
            yield from panels(panel)
    targets = sum(len(p.get("targets", [])) for path in glob.glob(f"{ROOT}/monitoring/grafana/dashboards/*.json")
                  for p in panels(json.load(open(path))))
    if targets == 0 or len(exprs) != targets:
        sys.exit(f"{len(exprs)} queries ran, but the dashboards hold {targets} panel targets")
    print(f"    {targets} queries checked: every panel target of the dashboards")

    # The Watchdog firing shows the alerting rules have been evaluated.
    while True:
        alerts = json.loads(get(f"{prometheus}/api/v1/alerts"))["data"]["alerts"]
        names = sorted(f'{a["labels"]["alertname"]} ({a["state"]})' for a in alerts)
        if "Watchdog (firing)" in names or time.monotonic() > deadline:
            break
        time.sleep(2)
    print("    alerts:", ", ".join(names) or "none")
    if names != ["Watchdog (firing)"]:
        sys.exit("a healthy stack must raise no alert but the Watchdog")


if __name__ == "__main__":
    main()
