#!/usr/bin/env python3
"""Checks Grafana's provisioning and dashboards without a Grafana.

Usage: scripts/ci/check-grafana.py            check, print one line per check
       scripts/ci/check-grafana.py --exprs    print every panel query as JSON lines
                                           ({"panel": ..., "expr": ...}) for
                                           scripts/e2e/monitoring.sh to run
       scripts/ci/check-grafana.py --live URL the same checks, then a running
                                           Grafana through its HTTP API, with
                                           GRAFANA_USER and GRAFANA_PASSWORD:
                                           the login, every provisioned
                                           datasource's health, every dashboard
                                           by uid, and every panel query
                                           returning data through /api/ds/query
                                           (scripts/e2e/compose.sh upstream)

Grafana cannot be installed here, so this parses every provisioning YAML and
dashboard JSON and checks what Grafana would otherwise only report at run
time: unique uids, datasource references that resolve, the panels the
dashboard promises, and queries that only name jobs that prometheus.yml
scrapes and recording rules that exist. Exits 1 at the first problem.
"""
import base64
import glob
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MONITORING = os.path.join(ROOT, "monitoring")

# Panel titles the "pulse overview" dashboard must have, as regexes.
REQUIRED_PANELS = {
    "request rate by route and status": r"request rate by route and status",
    "error ratio": r"^error ratio",
    "latency p50, p95 and p99": r"latency p50 / p95 / p99",
    "latency by route": r"latency p95 by route",
    "requests in flight": r"requests in flight",
    "SLO error budget remaining": r"^error budget remaining",
    "SLO error burn rate": r"^error budget burn rate",
    "latency SLO budget remaining": r"^latency budget remaining",
    "latency SLO burn rate": r"^latency budget burn rate",
    "resident memory": r"resident memory",
    "CPU": r"^cpu$",
    "open fds": r"open file descriptors",
    "connection errors": r"connection errors",
    "handler panics and dropped log lines": r"handler panics and dropped log lines",
    "trace spans": r"trace spans exported / dropped",
    "instances up": r"^instances up",
    "uptime": r"^uptime",
    "restarts": r"^restarts",
    "build info": r"^build info",
    "database reachable": r"^database reachable",
    "database pool": r"^database pool connections",
    "database queries": r"^database query p99 by operation",
}

# Panels that must draw their alert or SLO thresholds.
THRESHOLD_PANELS = [r"^error ratio", r"latency p50", r"latency p95 by route", r"burn rate",
                    r"budget remaining", r"open file descriptors", r"^instances up"]

# The dashboard's variables, and the value each query is checked with: "All".
VARIABLES = {"datasource", "namespace", "instance"}


def fail(message):
    print(f"FAIL  {message}", file=sys.stderr)
    sys.exit(1)


def ok(message):
    print(f"ok    {message}")


def load_yaml(path):
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        fail(f"{path}: {e}")


def relative(path):
    return os.path.relpath(path, ROOT)


def panels_of(dashboard):
    """Every panel, including those nested in rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def main():
    exprs_only = "--exprs" in sys.argv[1:]
    say = (lambda _: None) if exprs_only else ok
    dashboards = []

    # Datasources: unique names and uids.
    datasources = {}
    for path in sorted(glob.glob(f"{MONITORING}/grafana/provisioning/datasources/*.yml")):
        config = load_yaml(path)
        if config.get("apiVersion") != 1:
            fail(f"{relative(path)}: apiVersion must be 1")
        for source in config.get("datasources", []):
            uid = source.get("uid")
            if not uid:
                fail(f"{relative(path)}: datasource {source.get('name')!r} has no fixed uid")
            if uid in datasources:
                fail(f"{relative(path)}: datasource uid {uid!r} is not unique")
            datasources[uid] = source
    if not datasources:
        fail("no datasource is provisioned")
    say(f"{len(datasources)} datasource(s), uids unique: {', '.join(sorted(datasources))}")

    # The datasource URL must name a compose service on its container port.
    compose = load_yaml(os.path.join(ROOT, "compose.yaml"))
    services = compose.get("services", {})
    for uid, source in datasources.items():
        match = re.match(r"https?://([^:/]+):(\d+)", source.get("url", ""))
        if not match or match.group(1) not in services:
            fail(f"datasource {uid}: url {source.get('url')!r} is not a compose service")
    say("datasource URLs name compose services")

    # Dashboard providers: their path is where compose mounts the dashboards.
    grafana_mounts = {}
    for volume in services.get("grafana", {}).get("volumes", []):
        source, target = volume.split(":")[:2]
        grafana_mounts[target] = os.path.normpath(os.path.join(ROOT, source))
    providers = []
    for path in sorted(glob.glob(f"{MONITORING}/grafana/provisioning/dashboards/*.yml")):
        config = load_yaml(path)
        if config.get("apiVersion") != 1:
            fail(f"{relative(path)}: apiVersion must be 1")
        for provider in config.get("providers", []):
            target = provider.get("options", {}).get("path")
            if target not in grafana_mounts:
                fail(f"{relative(path)}: provider path {target!r} is not mounted by compose.yaml")
            providers.append(grafana_mounts[target])
    if not providers:
        fail("no dashboard provider is provisioned")
    say(f"{len(providers)} dashboard provider(s), each path mounted by compose.yaml")

    # What Prometheus produces: job names and recorded series.
    prometheus = load_yaml(f"{MONITORING}/prometheus/prometheus.yml")
    jobs = {job["job_name"] for job in prometheus.get("scrape_configs", [])}
    recorded = set()
    for path in glob.glob(f"{MONITORING}/prometheus/rules/*.yml"):
        for group in load_yaml(path).get("groups", []):
            recorded.update(rule["record"] for rule in group["rules"] if "record" in rule)

    dashboard_uids = set()
    found_overview = False
    exprs = []
    for directory in sorted(set(providers)):
        files = sorted(glob.glob(f"{directory}/*.json"))
        if not files:
            fail(f"{relative(directory)} holds no dashboard")
        for path in files:
            try:
                with open(path) as f:
                    dashboard = json.load(f)
            except (OSError, json.JSONDecodeError) as e:
                fail(f"{relative(path)}: {e}")
            uid = dashboard.get("uid")
            if not uid or uid in dashboard_uids:
                fail(f"{relative(path)}: dashboard uid {uid!r} is missing or not unique")
            dashboard_uids.add(uid)
            dashboards.append({"uid": uid, "title": dashboard.get("title")})
            variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
            if dashboard.get("title") == "pulse overview" and not VARIABLES <= set(variables):
                fail(f"{relative(path)}: variables {sorted(VARIABLES - set(variables))} are missing")
            default_source = variables.get("datasource", {}).get("current", {}).get("value")

            def resolve(uid, default_source=default_source):
                return default_source if uid == "${datasource}" else uid

            def all_values(expr, variables=variables):
                """The query as Grafana runs it with every variable at its default."""
                for name, variable in variables.items():
                    value = variable.get("allValue", ".*") if variable.get("includeAll") else variable.get("current", {}).get("value", "")
                    expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
                return expr

            if "datasource" in variables and default_source not in datasources:
                fail(f"{relative(path)}: the datasource variable defaults to {default_source!r}, not a provisioned uid")
            panel_ids = set()
            for panel in panels_of(dashboard):
                title = panel.get("title", "")
                if panel.get("id") in panel_ids:
                    fail(f"{relative(path)}: panel id {panel.get('id')} is not unique")
                panel_ids.add(panel.get("id"))
                if panel.get("type") == "row":
                    continue
                for ref in [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]:
                    if not isinstance(ref, dict) or resolve(ref.get("uid")) not in datasources:
                        fail(f"{relative(path)}: panel {title!r} references datasource {ref!r}, not a provisioned uid")
                if not panel.get("targets"):
                    fail(f"{relative(path)}: panel {title!r} has no query")
                for target in panel["targets"]:
                    expr = target.get("expr", "")
                    for job in re.findall(r'job="([^"]*)"', expr):
                        if job not in jobs:
                            fail(f"panel {title!r}: job {job!r} is not a job of prometheus.yml ({sorted(jobs)})")
                    if re.search(r'instance=~?"(?!\$instance")', expr):
                        fail(f"panel {title!r}: a hard-coded instance exists only on one machine: {expr}")
                    if dashboard.get("title") == "pulse overview" and re.search(r'job="pulse"', expr) \
                            and 'namespace=~"$namespace"' not in expr:
                        fail(f"panel {title!r}: a query on job pulse without the namespace variable: {expr}")
                    for name in re.findall(r"\b[a-z_]+:[a-z_0-9]+:[a-z_0-9]+\b", expr):
                        if name not in recorded:
                            fail(f"panel {title!r}: {name} is not a recording rule")
                    if not expr.strip():
                        fail(f"panel {title!r}: a target has no expr")
                    exprs.append({"dashboard": dashboard.get("title"), "panel": title, "expr": all_values(expr),
                                  "datasource": {**target["datasource"], "uid": resolve(target["datasource"]["uid"])}})
                if any(re.search(p, title.lower()) for p in THRESHOLD_PANELS):
                    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
                    if len(steps) < 2:
                        fail(f"{relative(path)}: panel {title!r} draws no threshold")
                    if panel["type"] == "timeseries" and "line" not in panel["fieldConfig"]["defaults"].get(
                            "custom", {}).get("thresholdsStyle", {}).get("mode", ""):
                        fail(f"{relative(path)}: panel {title!r} has thresholds but does not draw them")
            if dashboard.get("title") == "pulse overview":
                found_overview = True
                titles = [p.get("title", "").lower() for p in panels_of(dashboard)]
                for what, pattern in REQUIRED_PANELS.items():
                    if not any(re.search(pattern, t) for t in titles):
                        fail(f"'pulse overview' has no panel for {what}")
                uses_rules = sum(1 for e in exprs if re.search(r"\w+:\w+:\w+", e["expr"]))
                say(f"'pulse overview': {len(panel_ids)} panels, all {len(REQUIRED_PANELS)} required ones, {uses_rules} queries on recording rules")
                say(f"'pulse overview': variables {', '.join(sorted(VARIABLES))}; thresholds drawn on every SLO and limit panel")
    if not found_overview:
        fail("no dashboard titled 'pulse overview'")
    if not exprs:
        fail("no panel query was read: the dashboards hold no targets")
    say(f"{len(dashboard_uids)} dashboard(s): uids unique, every datasource reference resolves")
    say(f"{len(exprs)} queries name only jobs from prometheus.yml and existing recording rules")

    if exprs_only:
        for expr in exprs:
            print(json.dumps(expr))
    if "--live" in sys.argv[1:]:
        url = sys.argv[sys.argv.index("--live") + 1].rstrip("/")
        live(url, sorted(datasources), dashboards, exprs)


def live(url, datasource_uids, dashboards, exprs, deadline_seconds=180):
    """Checks a running Grafana: login, datasources, dashboards, every query."""
    user, password = os.environ.get("GRAFANA_USER", "admin"), os.environ.get("GRAFANA_PASSWORD", "")
    if not password:
        fail("--live needs GRAFANA_PASSWORD")
    authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def call(path, body=None):
        request = urllib.request.Request(
            url + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": authorization, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as e:
            return 0, str(e)

    # Grafana answers /api/health before provisioning has finished, and rate
    # windows need a few scrapes: every check is retried until one deadline.
    deadline = time.monotonic() + deadline_seconds

    def until(what, check):
        while True:
            status, body = check()
            if status is True:
                return body
            if time.monotonic() > deadline:
                fail(f"{what}: {status} {body}")
            time.sleep(3)

    def login():
        status, body = call("/api/user")
        return (status == 200 and isinstance(body, dict) and body.get("login") == user) or status, body

    until(f"Grafana at {url}: login as {user}", login)
    ok(f"Grafana at {url}: logged in as {user}")
    for uid in datasource_uids:
        def health(uid=uid):
            status, body = call(f"/api/datasources/uid/{uid}/health")
            return (status == 200 and isinstance(body, dict) and body.get("status") == "OK") or status, body
        body = until(f"datasource {uid}: health check", health)
        ok(f"datasource {uid}: {body.get('message', 'OK')}")
    for dashboard in dashboards:
        def served(dashboard=dashboard):
            status, body = call(f"/api/dashboards/uid/{dashboard['uid']}")
            title = body.get("dashboard", {}).get("title") if isinstance(body, dict) else None
            return (status == 200 and title == dashboard["title"]) or status, body
        until(f"dashboard uid {dashboard['uid']} ({dashboard['title']!r})", served)
        ok(f"dashboard {dashboard['title']!r} found by uid {dashboard['uid']}")

    # The queries go through Grafana's datasource proxy, as the panels' do.
    answered = 0
    for expr in exprs:
        query = {
            "from": "now-15m",
            "to": "now",
            "queries": [{"refId": "A", "datasource": expr["datasource"], "expr": expr["expr"],
                         "range": True, "intervalMs": 10000, "maxDataPoints": 100}],
        }
        while True:
            status, body = call("/api/ds/query", query)
            result = body.get("results", {}).get("A", {}) if isinstance(body, dict) else {}
            points = sum(len(frame.get("data", {}).get("values", [[]])[0] or [])
                         for frame in result.get("frames", []) if frame.get("data", {}).get("values"))
            if status == 200 and not result.get("error") and points > 0:
                break
            if time.monotonic() > deadline:
                fail(f"panel {expr['panel']!r}: no data through /api/ds/query for {expr['expr']}: {status} {body}")
            time.sleep(3)
        answered += 1
        ok(f"panel {expr['panel']!r}: {points} points for {expr['expr']}")
    if answered != len(exprs) or answered == 0:
        fail(f"{answered} of {len(exprs)} panel queries answered")
    ok(f"all {answered} panel queries return data through Grafana")


if __name__ == "__main__":
    main()
