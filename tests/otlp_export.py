#!/usr/bin/env python3
"""Span export, tested for real: a pulse binary exports to a local OTLP/HTTP
receiver that decodes every batch with the official OpenTelemetry protobuf
definitions (PyPI opentelemetry-proto), so a malformed field fails the test.

Usage: tests/otlp_export.py PULSE_BINARY

Each check prints one line; the first failure stops the run with exit 1.
"""

import base64
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

CHECKS = 0


def ok(message):
    global CHECKS
    CHECKS += 1
    print(f"ok    {message}", flush=True)


def fail(message):
    print(f"FAIL  {message}", file=sys.stderr, flush=True)
    print(f"otlp-export: {CHECKS} passed, 1 failed", file=sys.stderr)
    sys.exit(1)


def check(condition, message, detail=""):
    if not condition:
        fail(f"{message}{': ' + str(detail) if detail else ''}")
    ok(message)


# ---------------------------------------------------------------- receiver --

HEX_ID = {"traceId": 32, "spanId": 16, "parentSpanId": 16}


def ids_to_base64(node):
    """OTLP/JSON writes trace and span ids as hex, where the plain protobuf
    JSON mapping expects base64. Check each is lowercase hex of the right
    length, and rewrite it for json_format.Parse."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in HEX_ID and isinstance(value, str):
                if not re.fullmatch(f"[0-9a-f]{{{HEX_ID[key]}}}", value):
                    raise ValueError(f"{key} {value!r} is not {HEX_ID[key]} lowercase hex digits")
                node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            ids_to_base64(item)


class Receiver:
    """An OTLP/HTTP JSON endpoint on 127.0.0.1 that keeps every decoded span."""

    def __init__(self):
        self.spans = []  # (resource attributes dict, Span)
        self.errors = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    if self.path != "/v1/traces":
                        raise ValueError(f"POST to {self.path}, not /v1/traces")
                    if self.headers.get("Content-Type") != "application/json":
                        raise ValueError(f"Content-Type {self.headers.get('Content-Type')!r}")
                    document = json.loads(body)
                    ids_to_base64(document)
                    request = ExportTraceServiceRequest()
                    # Strict: an unknown or mistyped field raises ParseError.
                    json_format.Parse(json.dumps(document), request)
                    with receiver.lock:
                        for resource_spans in request.resource_spans:
                            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                            for scope_spans in resource_spans.scope_spans:
                                for span in scope_spans.spans:
                                    receiver.spans.append((resource, span))
                    answer, status = b"{}", 200
                except Exception as error:  # a decoding failure fails the test
                    with receiver.lock:
                        receiver.errors.append(f"{type(error).__name__}: {error}")
                    answer, status = json.dumps({"error": str(error)}).encode(), 400
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count, seconds=10):
        """The spans received once there are at least `count`, or after `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                if self.errors:
                    fail(f"the receiver could not decode a batch: {self.errors[0]}")
                if len(self.spans) >= count:
                    break
            time.sleep(0.05)
        with self.lock:
            return list(self.spans)

    def clear(self):
        with self.lock:
            self.spans.clear()


# ------------------------------------------------------------------- pulse --


class Pulse:
    """A pulse binary on 127.0.0.1 with a free port and the given settings."""

    def __init__(self, binary, **settings):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PULSE_"))}
        env.update(HOST="127.0.0.1", PORT="0", PULSE_LOG_FORMAT="json", PULSE_DRAIN_DELAY="0",
                   PULSE_FAULT_INJECTION="true", RUST_LOG="info")
        env.update(settings)
        self.process = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, cwd="/")
        self.lines = []
        self.port = None
        deadline = time.monotonic() + 10
        while self.port is None:
            line = self.process.stdout.readline()
            if not line or time.monotonic() > deadline:
                fail(f"pulse did not start: {''.join(self.lines)}")
            self.lines.append(line)
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if match:
                self.port = int(match.group(1))
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.process.stdout:
            self.lines.append(line)

    def get(self, path, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def metric(self, name, labels=""):
        _, _, body = self.get("/metrics")
        pattern = "^" + re.escape(name + ("{" + labels + "}" if labels else "")) + r" (\S+)$"
        match = re.search(pattern, body.decode(), re.MULTILINE)
        return float(match.group(1)) if match else None

    def stop(self):
        """SIGTERM, then the exit code (within 15 s)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            fail("pulse did not exit within 15 s of SIGTERM")


def traceparent_of(headers):
    value = headers.get("traceparent", "")
    match = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})", value)
    if not match:
        fail(f"response traceparent {value!r} is not a version-00 traceparent")
    return match.group(1), match.group(2), match.group(3)


def attributes(span):
    values = {}
    for attribute in span.attributes:
        kind = attribute.value.WhichOneof("value")
        values[attribute.key] = getattr(attribute.value, kind)
    return values


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ------------------------------------------------------------------ checks --


def export_checks(binary, receiver):
    print("-- spans reach a collector, decoded with opentelemetry-proto", flush=True)
    pulse = Pulse(binary, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}",
                  OTEL_SERVICE_NAME="pulse-under-test", OTEL_RESOURCE_ATTRIBUTES="deployment.environment=ci%20run",
                  OTEL_BSP_SCHEDULE_DELAY="100")
    try:
        # pragma: allowlist nextline secret (W3C's example trace and span ids)
        caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        status, headers, _ = pulse.get("/", {"traceparent": f"00-{caller_trace}-{caller_span}-01",
                                             "tracestate": "vendor=abc"})
        check(status == 200, "GET / with a sampled traceparent answers 200", status)
        trace_id, span_id, flags = traceparent_of(headers)
        check((trace_id, flags) == (caller_trace, "01"), "the response continues the caller's trace, sampled",
              headers.get("traceparent"))

        status, root_headers, _ = pulse.get("/version")
        root_trace, root_span, root_flags = traceparent_of(root_headers)
        check(root_flags == "01", "a request without traceparent starts a sampled trace (parentbased_always_on)")
        pulse.get("/nope")
        pulse.get("/status/503")

        spans = receiver.wait_for(4)
        check(len(spans) == 4, "four requests, four spans decoded", len(spans))
        by_id = {span.span_id.hex(): (resource, span) for resource, span in spans}

        resource, span = by_id.get(span_id, (None, None))
        check(span is not None, "the span of GET / has the span id pulse answered with")
        check(span.trace_id.hex() == caller_trace, "its trace id is the caller's")
        check(span.parent_span_id.hex() == caller_span, "its parent is the caller's span")
        check(span.trace_state == "vendor=abc", "it carries the caller's tracestate", span.trace_state)
        check(span.kind == Span.SPAN_KIND_SERVER and span.name == "GET /", "it is a SERVER span named 'GET /'",
              (span.kind, span.name))
        check(attributes(span) == {"http.request.method": "GET", "url.path": "/", "url.scheme": "http",
                                   "http.route": "/", "http.response.status_code": 200,
                                   "network.protocol.version": "1.1"},
              "it has the HTTP semantic-convention attributes", attributes(span))
        check(span.status.code == Status.STATUS_CODE_UNSET, "a 200 leaves the span status unset")
        check(0 < span.end_time_unix_nano - span.start_time_unix_nano < 10**9
              and abs(span.end_time_unix_nano / 1e9 - time.time()) < 60,
              "start and end are wall-clock nanoseconds, end after start")
        check(resource.get("service.name") == "pulse-under-test"
              and resource.get("deployment.environment") == "ci run",
              "the resource has OTEL_SERVICE_NAME and the decoded OTEL_RESOURCE_ATTRIBUTES", resource)

        _, root = by_id.get(root_span, (None, None))
        check(root is not None and root.trace_id.hex() == root_trace and root.parent_span_id == b"",
              "a request without traceparent exports a root span (no parent) with the answered trace id")
        check(attributes(root)["http.route"] == "/version" and root.name == "GET /version",
              "the root span names its route")

        unmatched = [s for _, s in spans if attributes(s)["url.path"] == "/nope"]
        check(unmatched and unmatched[0].name == "GET" and "http.route" not in attributes(unmatched[0])
              and attributes(unmatched[0])["http.response.status_code"] == 404,
              "an unmatched path has no http.route, and its name is the method alone")
        failed = [s for _, s in spans if attributes(s)["url.path"] == "/status/503"]
        check(failed and failed[0].status.code == Status.STATUS_CODE_ERROR
              and attributes(failed[0])["http.route"] == "/status/{code}",
              "a 5xx answer marks the span as an error, with the route template")

        log_line = next((line for line in pulse.lines if f'"span_id":"{span_id}"' in line), None)
        check(log_line is not None and f'"trace_id":"{caller_trace}"' in log_line,
              "the access log line of GET / carries the exported trace and span ids")

        receiver.clear()
        status, headers, _ = pulse.get("/", {"traceparent": f"00-{caller_trace}-{caller_span}-00"})
        check(traceparent_of(headers)[2] == "00", "an unsampled caller stays unsampled (parent-based)")
        pulse.get("/livez")  # sampled: it shows that the unsampled one really was not exported
        spans = receiver.wait_for(1)
        time.sleep(0.3)
        spans = receiver.wait_for(1)
        check([attributes(s)["url.path"] for _, s in spans] == ["/livez"],
              "the unsampled request exported nothing", [attributes(s)["url.path"] for _, s in spans])
        check(pulse.metric("pulse_spans_exported_total") == 5, "pulse_spans_exported_total counts the five spans",
              pulse.metric("pulse_spans_exported_total"))
    finally:
        code = pulse.stop()
    check(code == 0, "pulse exits 0 on SIGTERM", code)


def sampling_checks(binary, receiver):
    print("-- OTEL_TRACES_SAMPLER=traceidratio with OTEL_TRACES_SAMPLER_ARG=0.25", flush=True)
    receiver.clear()
    pulse = Pulse(binary, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}",
                  OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0.25", OTEL_BSP_SCHEDULE_DELAY="100")
    requests = 400
    try:
        flagged = set()
        for _ in range(requests):
            _, headers, _ = pulse.get("/")
            trace_id, _, flags = traceparent_of(headers)
            if flags == "01":
                flagged.add(trace_id)
        spans = receiver.wait_for(len(flagged))
        time.sleep(0.3)
        exported = {span.trace_id.hex() for _, span in receiver.wait_for(len(flagged))}
    finally:
        pulse.stop()
    # 400 draws at p = 0.25: mean 100, standard deviation 8.7; 60 to 140 is
    # more than four deviations either side.
    check(60 <= len(flagged) <= 140, f"{len(flagged)} of {requests} new traces sampled, about a quarter",
          len(flagged))
    check(exported == flagged, "exactly the traces flagged sampled in traceparent were exported",
          f"{len(exported)} exported, {len(flagged)} flagged, {len(spans)} spans")


def collector_down_checks(binary):
    print("-- the collector is down: requests are unaffected, spans are dropped and counted", flush=True)
    port = free_port()  # nothing listens there
    pulse = Pulse(binary, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}", OTEL_BSP_MAX_QUEUE_SIZE="8",
                  OTEL_BSP_MAX_EXPORT_BATCH_SIZE="4", OTEL_BSP_SCHEDULE_DELAY="50")
    try:
        slowest, statuses = 0.0, set()
        for _ in range(300):
            started = time.monotonic()
            status, _, _ = pulse.get("/")
            slowest = max(slowest, time.monotonic() - started)
            statuses.add(status)
        check(statuses == {200}, "300 requests all answered 200", statuses)
        # A request that waited on the exporter would take the connect and
        # retry time (seconds); a generous bound, not a benchmark.
        check(slowest < 1.0, f"no request waited on the exporter (slowest {slowest * 1000:.1f} ms)")
        dropped = pulse.metric("pulse_spans_dropped_total", 'reason="queue_full"')
        failures = pulse.metric("pulse_span_export_failures_total")
        check(dropped is not None and dropped > 0, f"pulse_spans_dropped_total{{reason=\"queue_full\"}} rose to {dropped}")
        check(failures is not None and failures > 0, f"pulse_span_export_failures_total rose to {failures}")
        warnings = [line for line in pulse.lines if "span export to" in line and "failed" in line]
        check(len(warnings) == 1 and '"level":"WARN"' in warnings[0], "the failure is logged once, as a warning",
              warnings)
    finally:
        code = pulse.stop()
    check(code == 0, "pulse still shuts down cleanly (exit 0) with the collector down", code)


def silent_collector_checks(binary):
    print("-- the collector accepts connections but never answers", flush=True)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # never accepted: connects succeed, requests hang
        port = silent.getsockname()[1]
        pulse = Pulse(binary, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}", OTEL_EXPORTER_OTLP_TIMEOUT="300",
                      OTEL_BSP_SCHEDULE_DELAY="50", PULSE_SHUTDOWN_TIMEOUT="1s")
        try:
            slowest = 0.0
            for _ in range(50):
                started = time.monotonic()
                status, _, _ = pulse.get("/")
                slowest = max(slowest, time.monotonic() - started)
                if status != 200:
                    fail(f"GET / answered {status}")
            check(slowest < 0.25, f"50 requests answered while export hangs (slowest {slowest * 1000:.1f} ms)")
            time.sleep(1.0)
            failures = pulse.metric("pulse_span_export_failures_total")
            check(failures and failures > 0, f"export requests time out and are counted ({failures})")
        finally:
            started = time.monotonic()
            code = pulse.stop()
        took = time.monotonic() - started
        check(code == 0 and took < 3, f"shutdown gives up on the silent collector within its timeout ({took:.1f} s)")


def shutdown_flush_checks(binary, receiver):
    print("-- shutdown flushes the queue", flush=True)
    receiver.clear()
    pulse = Pulse(binary, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}",
                  OTEL_BSP_SCHEDULE_DELAY="600000")  # no timed flush during the test
    try:
        for _ in range(3):
            pulse.get("/")
        time.sleep(0.3)
        check(receiver.wait_for(1, seconds=0) == [], "spans wait in the queue for their batch")
    finally:
        code = pulse.stop()
    spans = receiver.wait_for(3, seconds=0)
    check(code == 0 and len(spans) == 3, f"SIGTERM sent the 3 queued spans before exit ({len(spans)})")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    binary = os.path.abspath(sys.argv[1])
    if not os.access(binary, os.X_OK):
        print(f"otlp-export: {binary} is not an executable", file=sys.stderr)
        sys.exit(2)
    receiver = Receiver()
    export_checks(binary, receiver)
    sampling_checks(binary, receiver)
    collector_down_checks(binary)
    silent_collector_checks(binary)
    shutdown_flush_checks(binary, receiver)
    print(f"otlp-export: {CHECKS} passed, 0 failed")


if __name__ == "__main__":
    main()
