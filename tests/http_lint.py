#!/usr/bin/env python3
"""REDbot, the HTTP linter, on every GET route of a live pulse: no note of
level BAD or WARN (a cache may not invent a freshness lifetime, headers are
well-formed, and so on).

Usage: tests/http_lint.py BASE_URL    (pulse with PULSE_FAULT_INJECTION=true)

The routes come from BASE_URL/openapi.json, so a new route is linted too;
a 404 is added. Each URL prints one line; any BAD or WARN note fails.
"""

import json
import subprocess
import sys
import urllib.request

EXAMPLES = {"{ms}": "1", "{code}": "503"}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    base = sys.argv[1].rstrip("/")
    with urllib.request.urlopen(f"{base}/openapi.json", timeout=10) as response:
        paths = json.load(response)["paths"]
    urls = []
    for template, item in paths.items():
        if "get" in item:
            path = template
            for parameter, example in EXAMPLES.items():
                path = path.replace(parameter, example)
            urls.append(base + path)
    urls.append(base + "/no-such-route")
    if len(urls) < 5:
        sys.exit(f"only {len(urls)} URLs from {base}/openapi.json: the check would read nothing")
    problems = 0
    for url in urls:
        har = subprocess.run(["redbot", "-o", "har", url], capture_output=True, text=True, timeout=60)
        if har.returncode != 0:
            sys.exit(f"redbot {url} failed: {har.stderr.strip()}")
        entry = json.loads(har.stdout)["log"]["entries"][0]
        status = entry["response"]["status"]
        notes = entry.get("_red_messages", [])
        if not notes:
            sys.exit(f"redbot gave no notes for {url}: the check read nothing")
        bad = [note for note in notes if note["level"] in ("bad", "warn", "BAD", "WARN")]
        if bad:
            problems += len(bad)
            for note in bad:
                print(f"FAIL  {url} ({status}): {note['level']} {note['note_id']}: {note['summary']}")
        else:
            print(f"ok    {url} ({status}): {len(notes)} notes, none BAD or WARN")
    if problems:
        sys.exit(f"http-lint: {problems} BAD or WARN notes")
    print(f"http-lint: {len(urls)} URLs, no BAD or WARN note")


if __name__ == "__main__":
    main()
