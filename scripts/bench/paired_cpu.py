#!/usr/bin/env python3
"""CPU per request of two servers served at the same time: each has a load
generator of its own (wrk for HTTP/1.1, h2load for h2c), started together,
so both servers share the CPU they are pinned to under the same conditions,
and each server's CPU time comes from the scheduler's own accounting
(/proc/PID/task/*/schedstat). Prints the second server's CPU per request
over the first's, the median of 5 rounds of 3 s, then each server's minor
page faults per 1,000 requests over all rounds (memory mapped afresh and
touched: what musl's unmapping costs).

Usage: paired_cpu.py http1|h2c PATH PID_A PORT_A PID_B PORT_B
Run it on a CPU of its own (taskset): its load generators run there.
"""

import glob
import re
import statistics
import subprocess
import sys

SECONDS = 3


def cpu_ns(pid: str) -> int:
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        with open(path) as stat:
            total += int(stat.read().split()[0])
    return total


def minor_faults(pid: str) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[7])


def load(protocol: str, port: str, path: str) -> subprocess.Popen:
    url = f"http://127.0.0.1:{port}{path}"
    if protocol == "h2c":
        # Bounded in time and in count.
        command = ["h2load", "-c", "4", "-m", "10", "-D", str(SECONDS), url]
    else:
        command = ["wrk", "-t1", "-c8", f"-d{SECONDS}s", url]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def requests_done(protocol: str, output: str) -> int:
    if protocol == "h2c":
        match = re.search(r"^requests: .* (\d+) succeeded, (\d+) failed", output, re.M)
        if not match or match.group(2) != "0":
            sys.exit(f"h2load: {output}")
        return int(match.group(1))
    if re.search(r"Non-2xx|Socket errors", output):
        sys.exit(f"wrk: {output}")
    return int(re.search(r"(\d+) requests in", output).group(1))


def main() -> None:
    protocol, path, pid_a, port_a, pid_b, port_b = sys.argv[1:7]
    servers = ((pid_a, port_a), (pid_b, port_b))
    ratios = []
    faults = {pid: [0, 0] for pid, _ in servers}
    for _ in range(5):
        before = {pid: (cpu_ns(pid), minor_faults(pid)) for pid, _ in servers}
        running = [(pid, load(protocol, port, path)) for pid, port in servers]
        per_request = []
        for pid, process in running:
            output, _ = process.communicate(timeout=SECONDS + 30)
            done = max(requests_done(protocol, output), 1)
            per_request.append((cpu_ns(pid) - before[pid][0]) / done)
            faults[pid][0] += minor_faults(pid) - before[pid][1]
            faults[pid][1] += done
        ratios.append(per_request[1] / per_request[0])
    per_thousand = [1000 * faults[pid][0] / max(faults[pid][1], 1) for pid, _ in servers]
    print(f"{statistics.median(ratios):.3f} faults/1k {per_thousand[0]:.2f} {per_thousand[1]:.2f}")


if __name__ == "__main__":
    main()
