#!/usr/bin/env python3
"""Renders scripts/bench/bench.sh's results as an SVG bar chart and as two
tables of ratios: the goals, in the README, and every figure of every run,
in docs/performance.md. It also prints every run's ratios to the references
with the goals marked met or not.

Usage: scripts/bench/chart.py RESULTS_JSON OUTPUT_SVG README PERFORMANCE_MD
       scripts/bench/chart.py --check RESULTS_JSON SVG README PERFORMANCE_MD

Each table replaces its file's lines between the two BENCH_MARKERS. With
--check nothing is written: it exits 1 if the SVG or a table is not what
RESULTS_JSON gives, so none can drift from the committed measurement
(scripts/ci/lint-repo.sh runs it).

Plain SVG written by hand: no plotting library, no network at render time.
Each bar is the median of the runs, each server measured alone; the label
above a pulse bar is its ratio to its reference. For CPU per request that is
the ratio measured with the two served at the same time (bare_auto for
pulse and span export, bare_hyper for PULSE_H2C=false); for the other
figures, the ratio to bare_auto alone.
"""

import json
import math
import statistics
import sys
from xml.sax.saxutils import escape

SERVERS = [
    ("bare_hyper", "bare hyper, HTTP/1 only", "#bbbbbb"),
    ("bare_auto", "bare hyper, auto::Builder", "#777777"),
    ("pulse", "pulse (defaults)", "#1f77b4"),
    ("pulse_http1", "pulse, PULSE_H2C=false", "#2ca02c"),
    ("pulse_export", "pulse, span export at 100%", "#9ecae1"),
]
GROUPS = [("http1_32", "HTTP/1.1, 32 conn."), ("http1_64", "HTTP/1.1, 64 conn."), ("h2c", "h2c, 16x10 streams")]
FIGURES = [
    ("rps", "requests per second", "{:,.0f}"),
    ("cpu_us", "CPU per request (us)", "{:.2f}"),
    ("p50_us", "latency p50 (us)", "{:,.0f}"),
    ("p99_us", "latency p99 (us)", "{:,.0f}"),
]
# CPU per request, pulse / bare_auto, at most (issue 15).
GOALS = {"http1_32": 1.10, "http1_64": 1.10, "h2c": 1.15}
# The other goals, for the report and the README's table alike.
HTTP1_ONLY_MAX = 1.10  # PULSE_H2C=false, CPU per request to bare_hyper
SCRAPES_MIN = 10_000  # GET /metrics per second on one core
IDLE_RSS_MAX_KIB = 2048
COLD_START_MAX_US = 3000
# 3.5 MiB with the PostgreSQL client compiled in (issue 40's budget).
BINARY_MAX_BYTES = 7 * 1024 * 1024 // 2
BENCH_MARKERS = ("<!-- bench table: scripts/bench/chart.py writes from here -->", "<!-- bench table: to here -->")


def value(run, group, server, figure):
    entry = run.get(f"{group}_{server}")
    return None if entry is None else entry[figure]


def median(runs, group, server, figure):
    values = [v for v in (value(r, group, server, figure) for r in runs) if v is not None]
    return statistics.median(values) if values else None


def paired(run, group, server):
    """The run's CPU ratio of SERVER to its reference, served at the same time."""
    entry = run.get("paired", {}).get(f"{group}_{server}")
    return None if entry is None else entry["ratio"]


def median_ratio(runs, group, server):
    values = [v for v in (paired(r, group, server) for r in runs) if v is not None]
    return statistics.median(values) if values else None


def report(results):
    runs = results["runs"]
    lines = []
    for group, label in GROUPS:
        for run in runs:
            ratio = paired(run, group, "pulse")
            verdict = "met" if ratio <= GOALS[group] else "NOT met"
            lines.append(f"run {run['run']} {label}: CPU/request {ratio:.2f}x bare auto::Builder, "
                         f"served at the same time (goal <= {GOALS[group]:.2f}x: {verdict})")
            http1_only = paired(run, group, "pulse_http1")
            if http1_only:
                lines.append(f"run {run['run']} {label}: PULSE_H2C=false {http1_only:.2f}x bare HTTP/1 hyper")
            yardstick = paired(run, group, "counted_auto")
            to_yardstick = paired(run, group, "pulse_to_counted_auto")
            if yardstick and to_yardstick:
                lines.append(f"run {run['run']} {label}: {to_yardstick:.2f}x counters + text log "
                             f"(counted_auto, itself {yardstick:.2f}x bare auto::Builder)")
            export = paired(run, group, "pulse_export")
            if export:
                lines.append(f"run {run['run']} {label}: span export at 100% {export:.2f}x bare auto::Builder")
    for run in runs:
        metrics = run.get("metrics")
        if metrics:
            verdict = "met" if metrics["rps"] >= SCRAPES_MIN else "NOT met"
            lines.append(f"run {run['run']} GET /metrics: {metrics['rps']:,.0f} scrapes/s on one core "
                         f"(goal >= {SCRAPES_MIN:,}: {verdict})")
    idle = results["idle_rss_kib"]["pulse"]
    cold = results["cold_start_us"]["pulse"]
    size = results["binary_bytes"]["pulse"]
    lines.append(f"idle RSS {idle} KiB (goal <= {IDLE_RSS_MAX_KIB}: {'met' if idle <= IDLE_RSS_MAX_KIB else 'NOT met'}); "
                 f"cold start {cold} us (goal < {COLD_START_MAX_US}: {'met' if cold < COLD_START_MAX_US else 'NOT met'}); "
                 f"binary {size:,} bytes (goal <= {BINARY_MAX_BYTES:,}: "
                 f"{'met' if size <= BINARY_MAX_BYTES else 'NOT met'})")
    counted = results.get("instructions_per_request")
    if counted:
        lines.append(f"GET / under callgrind: pulse {counted['pulse']:,} user-space instructions per request, "
                     f"bare auto::Builder {counted['bare_auto']:,} ({counted['pulse'] / counted['bare_auto']:.2f}x)")
    loaded = results.get("rss_after_load_kib")
    if loaded:
        lines.append(f"RSS after the load: pulse {loaded['pulse']} KiB, bare auto::Builder {loaded['bare_auto']} KiB")
    threads = results.get("observe_threads")
    served = median(results["runs"], "http1_32", "pulse", "rps")
    if threads and served:
        lines.append(f"Metrics::observe, one series: {threads['one_thread_per_s']:,.0f}/s on one thread; "
                     f"two threads at once, contending for its atomics (no lock): {threads['two_threads_per_s']:,.0f}/s "
                     f"together, {threads['two_threads_per_s'] / served:,.0f}x the requests/s pulse serves on one core")
    return lines


def verdict(runs, ratios, goal):
    """`met`, `not met`, or `not met (run 2)` when only some runs missed."""
    missed = [run["run"] for run, ratio in zip(runs, ratios) if any(r > goal for r in ratio)]
    if not missed:
        return "met"
    if len(missed) == len(runs):
        return "not met"
    return f"not met (run{'s' if len(missed) > 1 else ''} {', '.join(map(str, missed))})"


def table(results):
    """docs/performance.md's table: every run's ratios, goals marked as measured."""
    runs = results["runs"]

    def row(figure, cells, goal=""):
        return "|" + "|".join(f" {cell} " if cell else " " for cell in [figure, *cells, goal]) + "|"

    def ratios(keys, digits):
        cells, values = [], []
        for run in runs:
            found = [run["paired"][key]["ratio"] for key in keys]
            values.append(found)
            cells.append(" / ".join(f"{ratio:.{digits}f}x" for ratio in found))
        return cells, values

    def once(text):
        return [text] + [""] * (len(runs) - 1)

    lines = [f"Measured on {results['date']} ({results['machine']}), {len(runs)} runs of one invocation",
             "(ratios to three decimals where the goal is decided by them):", "",
             row("figure", [f"run {run['run']}" for run in runs], "goal"),
             "|" + "---|" * (len(runs) + 2)]
    for group, label, digits in [("http1_32", "HTTP/1.1, 32 conn.", 3), ("http1_64", "HTTP/1.1, 64 conn.", 3),
                                 ("h2c", "h2c", 2)]:
        cells, values = ratios([f"{group}_pulse"], digits)
        lines.append(row(f"CPU per request, {label}, to `bare_auto`", cells,
                         f"at most {GOALS[group]:.2f}x: {verdict(runs, values, GOALS[group])}"))
    if all("h2c_rate_pulse" in run["paired"] for run in runs):
        cells, _ = ratios(["h2c_rate_pulse"], 2)
        # Both served their clients' rate in full when their request counts agree.
        behind = [run["run"] for run in runs
                  if any(abs(a - b) > 0.02 * max(a, b) for a, b in run["paired"]["h2c_rate_pulse"]["requests"])]
        lines.append(row("the same, both held to one request rate (`h2load --rps`)", cells,
                         "(the goal's figure is the row above)" + (
                             f"; a server fell behind the rate in run {', '.join(map(str, behind))}" if behind else "")))
    cells, _ = ratios(["h2c_headers_pulse"], 2)
    lines.append(row("the same, saturated, with a browser's request headers", cells,
                     "(the goal's figure is the first h2c row)"))
    lines.append(row("page faults per h2c request, pulse / `bare_auto` (each alone)",
                     [f"{run['h2c_pulse']['faults_per_request']:.2f} / {run['h2c_bare_auto']['faults_per_request']:.2f}"
                      for run in runs]))
    cells, _ = ratios(["http1_32_bare_auto", "http1_64_bare_auto"], 2)
    lines.append(row("protocol detection: `bare_auto` to `bare_hyper`, 32 / 64 conn.", cells))
    # The goal's yardstick, counted_auto, against bare_auto and pulse against
    # it: rows only for invocations that measured them.
    for groups, digits, yardstick_label, against_label, note in [
        (["http1_32", "http1_64"], 3,
         "the goal's yardstick: `counted_auto` (counters, text access log) to `bare_auto`, 32 / 64 conn.",
         "pulse to `counted_auto`, HTTP/1.1, 32 / 64 conn.", "(what the goal's 1.10x assumes)"),
        (["h2c", "h2c_rate"], 2,
         "the yardstick over h2c: `counted_auto` to `bare_auto`, saturated / one rate",
         "pulse to `counted_auto`, h2c, saturated / one rate", ""),
    ]:
        yardstick = [f"{group}_counted_auto" for group in groups]
        against_yardstick = [f"{group}_pulse_to_counted_auto" for group in groups]
        if all(key in run["paired"] for run in runs for key in yardstick + against_yardstick):
            cells, _ = ratios(yardstick, digits)
            lines.append(row(yardstick_label, cells, note))
            cells, _ = ratios(against_yardstick, digits)
            lines.append(row(against_label, cells))
    cells, values = ratios(["http1_32_pulse_http1", "http1_64_pulse_http1"], 3)
    lines.append(row("`PULSE_H2C=false`, HTTP/1.1, 32 / 64 conn., to `bare_hyper`", cells,
                     f"within {HTTP1_ONLY_MAX:.2f}x: {verdict(runs, values, HTTP1_ONLY_MAX)}"))
    cells, _ = ratios(["http1_32_pulse_export", "h2c_pulse_export"], 2)
    lines.append(row("span export on (100%), HTTP/1.1 c=32 / h2c, to `bare_auto`", cells))
    instructions = results["instructions_per_request"]
    lines.append(row("user-space instructions per `GET /`, callgrind, pulse / `bare_auto`",
                     once(f"{instructions['pulse']:,} / {instructions['bare_auto']:,}")))
    scrapes = [run["metrics"]["rps"] for run in runs]
    lines.append(row("`GET /metrics` scrapes per second, one core (wrk, 8 conn.)", [f"{v:,.0f}" for v in scrapes],
                     f"at least {SCRAPES_MIN:,}: {'met' if min(scrapes) >= SCRAPES_MIN else 'not met'}"))
    idle, cold, size = (results["idle_rss_kib"]["pulse"], results["cold_start_us"]["pulse"],
                        results["binary_bytes"]["pulse"])
    lines.append(row("idle RSS (after one request)", once(f"{idle:,} KiB"),
                     f"at most {IDLE_RSS_MAX_KIB:,} KiB: {'met' if idle <= IDLE_RSS_MAX_KIB else 'not met'}"))
    lines.append(row("cold start, exec to first 200 on `/livez` (median of 20)", once(f"{cold / 1000:.1f} ms"),
                     f"under {COLD_START_MAX_US / 1000:.0f} ms: {'met' if cold < COLD_START_MAX_US else 'not met'}"))
    lines.append(row("binary", once(f"{size:,} bytes"),
                     f"at most {BINARY_MAX_BYTES / 2**20:.1f} MiB: {'met' if size <= BINARY_MAX_BYTES else 'not met'}"))
    return "\n".join(lines) + "\n"


def goals_table(results):
    """The README's table: each goal, the range of its runs, and the verdict."""
    runs = results["runs"]

    def spread(values, digits, unit="x"):
        low, high = (f"{v:,.{digits}f}" for v in (min(values), max(values)))
        return f"{low}{unit}" if low == high else f"{low} to {high}{unit}"

    lines = [f"{results['date']}, {len(runs)} runs; every figure of every run is in",
             "[docs/performance.md](docs/performance.md#the-last-invocation).", "",
             "| figure | measured | goal |", "|---|---|---|"]
    for group, label, digits in [("http1_32", "HTTP/1.1, 32 conn.", 3), ("http1_64", "HTTP/1.1, 64 conn.", 3),
                                 ("h2c", "h2c", 2)]:
        values = [run["paired"][f"{group}_pulse"]["ratio"] for run in runs]
        lines.append(f"| CPU per request, {label}, to `bare_auto` | {spread(values, digits)} | "
                     f"at most {GOALS[group]:.2f}x: {verdict(runs, [[v] for v in values], GOALS[group])} |")
    values = [[run["paired"][f"{g}_pulse_http1"]["ratio"] for g in ("http1_32", "http1_64")] for run in runs]
    lines.append(f"| `PULSE_H2C=false`, HTTP/1.1, to `bare_hyper` | {spread([v for r in values for v in r], 3)} | "
                 f"within {HTTP1_ONLY_MAX:.2f}x: {verdict(runs, values, HTTP1_ONLY_MAX)} |")
    scrapes = [run["metrics"]["rps"] for run in runs]
    lines.append(f"| `GET /metrics` scrapes per second, one core | {spread(scrapes, 0, '')} | "
                 f"at least {SCRAPES_MIN:,}: {'met' if min(scrapes) >= SCRAPES_MIN else 'not met'} |")
    idle, cold, size = (results["idle_rss_kib"]["pulse"], results["cold_start_us"]["pulse"],
                        results["binary_bytes"]["pulse"])
    lines.append(f"| idle RSS | {idle:,} KiB | at most {IDLE_RSS_MAX_KIB:,} KiB: "
                 f"{'met' if idle <= IDLE_RSS_MAX_KIB else 'not met'} |")
    lines.append(f"| cold start, exec to first 200 | {cold / 1000:.1f} ms | under {COLD_START_MAX_US / 1000:.0f} ms: "
                 f"{'met' if cold < COLD_START_MAX_US else 'not met'} |")
    lines.append(f"| binary | {size:,} bytes | at most {BINARY_MAX_BYTES / 2**20:.1f} MiB: "
                 f"{'met' if size <= BINARY_MAX_BYTES else 'not met'} |")
    return "\n".join(lines) + "\n"


def with_table(text, path, table_text):
    """TEXT with the lines between the markers replaced by TABLE_TEXT."""
    begin, end = BENCH_MARKERS
    head, found, rest = text.partition(begin + "\n")
    _, found_end, tail = rest.partition(end)
    if not found or not found_end:
        sys.exit(f"{path} lacks the markers '{begin}' and '{end}'")
    return head + begin + "\n" + table_text + end + tail


def nice_step(peak):
    """A round step for about five axis ticks up to PEAK: 1, 2 or 5 times a power of ten."""
    raw = peak / 5
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def goal_level(runs, group):
    """Where the CPU goal of GROUP is drawn: pulse's bar over its ratio measured in
    pairs (the reference as the pairs saw it), times the goal. pulse's bar is
    below the line exactly when its paired ratio meets the goal; the
    reference measured alone may sit a little off that level."""
    return median(runs, group, "pulse", "cpu_us") / median_ratio(runs, group, "pulse") * GOALS[group]


def svg(results):
    runs = results["runs"]
    # Four panels in a 2 x 2 grid, each with a value axis of its own.
    panel_w, panel_h, axis_w, top, left = 600, 300, 64, 70, 20
    bar_w, bar_gap, group_gap = 18, 4, 44
    width = left + 2 * panel_w
    summary = [line for line in report(results) if not line.startswith("run ")]
    legend_y = top + 2 * panel_h + 10
    height = legend_y + 40 + 16 * (len(summary) + 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="15" font-weight="bold">pulse against bare hyper, '
           f'median of {len(runs)} runs ({escape(results["date"])})</text>',
           f'<text x="{left}" y="42" fill="#444">{escape(results["machine"])}. Above a pulse bar: its ratio '
           f'to bare hyper auto::Builder (CPU: served at the same time). Dashed: the CPU goals, placed from those ratios.</text>']
    for index, (figure, title, number) in enumerate(FIGURES):
        x0 = left + (index % 2) * panel_w
        y0 = top + (index // 2) * panel_h
        plot_top, base_y = y0 + 50, y0 + panel_h - 50
        out.append(f'<text x="{x0 + axis_w}" y="{y0 + 16}" font-weight="bold" font-size="13">{escape(title)}</text>')
        values = [median(runs, g, s, figure) for g, _ in GROUPS for s, _, _ in SERVERS]
        goal_values = [goal_level(runs, g) for g, _ in GROUPS] if figure == "cpu_us" else []
        peak = max([v for v in values if v is not None] + goal_values)
        step = nice_step(peak)
        axis_max = step * math.ceil(peak / step)
        scale = (base_y - plot_top) / axis_max
        # The value axis: gridlines and their numbers.
        tick = 0.0
        while tick <= axis_max + step / 2:
            y = base_y - tick * scale
            out.append(f'<line x1="{x0 + axis_w}" y1="{y:.1f}" x2="{x0 + panel_w - 30}" y2="{y:.1f}" '
                       f'stroke="{"#333" if tick == 0 else "#e4e4e4"}"/>')
            out.append(f'<text x="{x0 + axis_w - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#444">'
                       f'{number.format(tick)}</text>')
            tick += step
        gx = x0 + axis_w + 24
        for group, label in GROUPS:
            reference = median(runs, group, "bare_auto", figure)
            bx = gx
            for server, _, colour in SERVERS:
                v = median(runs, group, server, figure)
                if v is None:
                    continue
                h = v * scale
                out.append(f'<rect x="{bx}" y="{base_y - h:.1f}" width="{bar_w}" height="{h:.1f}" fill="{colour}">'
                           f'<title>{escape(server)}: {number.format(v)}</title></rect>')
                # CPU: the ratio measured in pairs; the rest: to bare_auto alone.
                ratio = median_ratio(runs, group, server) if figure == "cpu_us" else None
                if ratio is None and reference:
                    ratio = v / reference
                if server.startswith("pulse") and ratio:
                    # Upright along the bar, so that neighbours' labels cannot collide.
                    lx, ly = bx + bar_w / 2 + 4, base_y - h - 4
                    out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="10" '
                               f'transform="rotate(-90 {lx:.1f} {ly:.1f})">{ratio:.2f}x</text>')
                bx += bar_w + bar_gap
            if figure == "cpu_us":
                goal_y = base_y - goal_level(runs, group) * scale
                out.append(f'<line x1="{gx - 4}" y1="{goal_y:.1f}" x2="{bx}" y2="{goal_y:.1f}" stroke="#d62728" '
                           f'stroke-width="1.5" stroke-dasharray="5,3"/>')
                out.append(f'<text x="{bx + 2}" y="{goal_y + 4:.1f}" font-size="10" fill="#d62728">'
                           f'{GOALS[group]:.2f}x</text>')
            out.append(f'<text x="{(gx + bx - bar_gap) / 2}" y="{base_y + 18}" text-anchor="middle">'
                       f'{escape(label)}</text>')
            gx = bx + group_gap
    for index, (_, name, colour) in enumerate(SERVERS):
        lx = left + axis_w + index * 230
        out.append(f'<rect x="{lx}" y="{legend_y}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{lx + 18}" y="{legend_y + 10}">{escape(name)}</text>')
    for index, line in enumerate(summary):
        out.append(f'<text x="{left}" y="{legend_y + 38 + 16 * index}" fill="#444">{escape(line)}</text>')
    goals = "; ".join(f"{label} CPU <= {GOALS[g]:.2f}x" for g, label in GROUPS)
    out.append(f'<text x="{left}" y="{legend_y + 38 + 16 * len(summary)}" fill="#444">'
               f'goals (pulse / bare auto::Builder): {escape(goals)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    check = sys.argv[1:2] == ["--check"]
    args = sys.argv[2:] if check else sys.argv[1:]
    if len(args) != 4:
        sys.exit(__doc__)
    results_path, svg_path, readme_path, performance_path = args
    results = json.load(open(results_path))
    if not results.get("runs"):
        sys.exit(f"{results_path} has no runs")
    readme, performance = open(readme_path).read(), open(performance_path).read()
    wanted = [(svg_path, svg(results)),
              (readme_path, with_table(readme, readme_path, goals_table(results))),
              (performance_path, with_table(performance, performance_path, table(results)))]
    if check:
        stale = [path for path, want in wanted if open(path).read() != want]
        if stale:
            sys.exit(f"not what {results_path} gives: {', '.join(stale)}; "
                     f"run: scripts/bench/chart.py {' '.join(args)}")
        print(f"    {svg_path}, the goals in {readme_path} and the full table in {performance_path} "
              f"are what {results_path} gives")
        return
    for path, want in wanted:
        open(path, "w").write(want)
    for line in report(results):
        print(f"    {line}")
    print(f"    chart: {svg_path}; tables: {readme_path}, {performance_path}")


if __name__ == "__main__":
    main()
