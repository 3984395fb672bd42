#!/usr/bin/env python3
"""CPU per request of two servers served together: the requests alternate
between them in rounds, and each server's CPU time comes from the
scheduler's own accounting (/proc/PID/task/*/schedstat). Prints the second
server's CPU per request over the first's, the median of 5 rounds.

Usage: paired_cpu.py http1|h2c PATH PID_A PORT_A PID_B PORT_B
A round is 2 s of requests to each over HTTP/1.1, bounded to 20,000
requests; over h2c, 20,000 requests on 4 connections of 10 streams (h2load).
"""

import glob
import http.client
import statistics
import subprocess
import sys
import time


def cpu_ns(pid: str) -> int:
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        with open(path) as stat:
            total += int(stat.read().split()[0])
    return total


def http1_round(port: int, path: str, seconds: float, limit: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    sent, stop = 0, time.monotonic() + seconds
    while sent < limit and time.monotonic() < stop:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            sys.exit(f"GET {path} answered {response.status}")
        sent += 1
    connection.close()
    return sent


def h2c_round(port: int, path: str, seconds: float, limit: int) -> int:
    out = subprocess.run(
        ["h2load", "-n", str(limit), "-c", "4", "-m", "10", f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout
    for line in out.splitlines():
        if line.startswith("requests:"):
            return int(line.split()[7])  # "... N succeeded, ..."
    sys.exit("h2load printed no request count")


def main() -> None:
    protocol, path, pid_a, port_a, pid_b, port_b = sys.argv[1:7]
    send = h2c_round if protocol == "h2c" else http1_round
    ratios = []
    for _ in range(5):
        per_request = []
        for pid, port in ((pid_a, port_a), (pid_b, port_b)):
            before = cpu_ns(pid)
            sent = send(int(port), path, 2.0, 20_000)
            per_request.append((cpu_ns(pid) - before) / max(sent, 1))
        ratios.append(per_request[1] / per_request[0])
    print(f"{statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
