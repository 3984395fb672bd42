#!/usr/bin/env python3
"""Waits for a trace to appear in Jaeger's query API and checks pulse's span.

Usage: jaeger-trace.py JAEGER_URL TRACE_ID PARENT_SPAN_ID WAIT_SECONDS

pulse sends spans in batches (every 5 s by default), so the trace is polled
for up to WAIT_SECONDS. The span must come from service `pulse`, be named
`GET /version` and be a child of PARENT_SPAN_ID.
"""

import json
import sys
import time
import urllib.error
import urllib.request

if len(sys.argv) != 5:
    sys.exit(__doc__)
url, trace_id, parent_id, wait = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3], int(sys.argv[4])
deadline = time.monotonic() + wait
last = "no answer"
while True:
    try:
        with urllib.request.urlopen(f"{url}/api/traces/{trace_id}", timeout=5) as response:
            traces = json.load(response).get("data") or []
        if traces:
            break
        last = "an empty trace list"
    except urllib.error.HTTPError as error:
        last = f"HTTP {error.code}"  # 404 until the trace arrives
    except (urllib.error.URLError, OSError) as error:
        last = str(error)
    if time.monotonic() > deadline:
        sys.exit(f"trace {trace_id} did not appear in Jaeger within {wait}s (last: {last})")
    time.sleep(1)

trace = traces[0]
spans = trace["spans"]
if len(spans) != 1:
    sys.exit(f"expected pulse's one span, got {len(spans)}")
span = spans[0]
service = trace["processes"][span["processID"]]["serviceName"]
tags = {tag["key"]: tag["value"] for tag in span.get("tags", [])}
parents = [ref["spanID"] for ref in span.get("references", []) if ref.get("refType") == "CHILD_OF"]
problems = []
if service != "pulse":
    problems.append(f"service {service!r}, not pulse")
if span["operationName"] != "GET /version":
    problems.append(f"operation {span['operationName']!r}, not 'GET /version'")
if parents != [parent_id]:
    problems.append(f"parents {parents}, not [{parent_id}]")
if tags.get("http.route") != "/version" or str(tags.get("http.response.status_code")) != "200":
    problems.append(f"tags {tags}")
if problems:
    sys.exit("Jaeger has the trace, but " + "; ".join(problems))
print(f"ok    Jaeger has trace {trace_id}: service pulse, span 'GET /version', child of {parent_id}")
