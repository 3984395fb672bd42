#!/usr/bin/env python3
"""Reads the report of `wrk --latency` and prints it as one JSON object:
requests, requests/s, mean, p50 and p99 latency in microseconds, and, given the server's
CPU nanoseconds and minor page faults over the run, both per request.

Usage: wrk_json.py WRK_REPORT [CPU_NS [FAULTS]]
Exits 1, with the report, when wrk saw a non-2xx answer or a socket error:
a benchmark of failing requests measures nothing.
"""
import json
import re
import sys


def micros(value):
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]


def main():
    text = open(sys.argv[1]).read()
    if re.search(r"Non-2xx|Socket errors", text):
        sys.exit(f"wrk saw errors:\n{text}")
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    result = {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "mean_us": micros(re.search(r"^\s+Latency\s+(\S+)", text, re.M).group(1)),
        "p50_us": micros(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1)),
        "p99_us": micros(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1)),
    }
    if len(sys.argv) > 2:
        result["cpu_us"] = int(sys.argv[2]) / 1000 / requests
    if len(sys.argv) > 3:
        result["faults_per_request"] = int(sys.argv[3]) / requests
    print(json.dumps(result))


if __name__ == "__main__":
    main()
