#!/usr/bin/env python3
"""Checks what `podman-compose config` makes of compose.yaml's opt-in
`tracing` profile, read from stdin.

Usage: podman-compose config | compose-tracing-config.py off|profile|exporting
  off        no profile: no Jaeger, and pulse exports no spans
  profile    --profile tracing: Jaeger, pinned, UI on 127.0.0.1, OTLP port
             not published; pulse still exports nothing until told
  exporting  --profile tracing with PULSE_OTLP_ENDPOINT=http://jaeger:4318
"""

import re
import sys

import yaml

mode = sys.argv[1] if len(sys.argv) == 2 else ""
if mode not in ("off", "profile", "exporting"):
    sys.exit(__doc__)
services = yaml.safe_load(sys.stdin)["services"]
endpoint = services["pulse"].get("environment", {}).get("OTEL_EXPORTER_OTLP_ENDPOINT", "")

if mode == "off":
    if "jaeger" in services:
        sys.exit("jaeger runs without --profile tracing")
    if endpoint:
        sys.exit(f"pulse exports to {endpoint!r} without being asked")
    print("ok    without the profile: no Jaeger, no span export")
    sys.exit(0)

jaeger = services.get("jaeger")
if jaeger is None:
    sys.exit("--profile tracing has no jaeger service")
image = jaeger["image"]
if not re.fullmatch(r"docker\.io/jaegertracing/all-in-one:\d+\.\d+\.\d+", image):
    sys.exit(f"jaeger's image {image!r} is not pinned to a release")
if jaeger.get("environment", {}).get("COLLECTOR_OTLP_ENABLED") != "true":
    sys.exit("jaeger does not take OTLP")
ports = [str(port) for port in jaeger.get("ports", [])]
if not ports or not all(port.startswith("127.0.0.1:") for port in ports):
    sys.exit(f"jaeger publishes {ports}, not only on 127.0.0.1")
if any(port.endswith(":4318") or port.endswith(":4317") for port in ports):
    sys.exit("jaeger publishes its OTLP port; only pulse, on the compose network, sends to it")
print(f"ok    --profile tracing adds {image}, UI on {ports[0].rsplit(':', 1)[0]}")

if mode == "profile":
    if endpoint:
        sys.exit(f"pulse exports to {endpoint!r} without PULSE_OTLP_ENDPOINT")
    print("ok    pulse exports nothing until PULSE_OTLP_ENDPOINT is set")
elif endpoint != "http://jaeger:4318":
    sys.exit(f"pulse's OTEL_EXPORTER_OTLP_ENDPOINT is {endpoint!r}, not http://jaeger:4318")
else:
    print("ok    pulse exports to http://jaeger:4318")
