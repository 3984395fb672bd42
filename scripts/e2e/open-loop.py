#!/usr/bin/env python3
"""An open-loop load generator that records the outcome of every request.

Usage: open-loop.py URL [--rate N] [--timeout S] [--max-seconds S]
                        [--stop-file PATH] [--report PATH]

It sends GET URL at a fixed rate (default 200/s), each request on a new
connection, whether or not earlier ones have answered: a stalled server
shows up as timeouts, not as a slower sender (no coordinated omission).
It runs until --stop-file exists, SIGTERM or SIGINT, or --max-seconds,
then waits for the requests in flight and prints the counts.

A request succeeds only with a 2xx status and a body as long as its
Content-Length, within --timeout (default 2 s). Anything else is a failure,
by kind: the status (e.g. 502), reset, refused, timeout, empty (closed before
a status line), short (body cut off), or the OS error.

Exit status: 0 if every request succeeded, 1 if any failed, 2 on bad usage
or when this generator fell behind its own schedule by more than a second
(the rate was then not what was asked, and the run proves nothing).
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import urllib.parse
from collections import Counter

MAX_IN_FLIGHT = 2000


async def one_request(host, port, target, timeout):
    """Returns "ok" or the kind of failure."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        body = await asyncio.wait_for(reader.read(), timeout)
        if not 200 <= status < 300:
            return str(status)
        if length is not None and len(body) != length:
            return "short"
        return "ok"
    except asyncio.TimeoutError:
        return "timeout"
    except asyncio.IncompleteReadError as error:
        return "empty" if not error.partial else "short"
    except ConnectionResetError:
        return "reset"
    except ConnectionRefusedError:
        return "refused"
    except OSError as error:
        return f"oserror-{error.errno}"
    except (ValueError, IndexError):
        return "malformed"
    finally:
        if writer is not None:
            writer.close()


async def run(args):
    url = urllib.parse.urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        print(f"open-loop: {args.url!r} is not an http:// URL", file=sys.stderr)
        return 2
    host, port = url.hostname, url.port or 80
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    outcomes = Counter()
    failures = []  # (seconds since start, kind), the first few
    in_flight = set()
    started = time.monotonic()
    max_lag = 0.0
    next_progress = 10.0

    async def send(sent_at):
        kind = await one_request(host, port, target, args.timeout)
        outcomes[kind] += 1
        if kind != "ok" and len(failures) < 20:
            failures.append((sent_at, kind))

    sent = 0
    while not stop.is_set():
        elapsed = time.monotonic() - started
        if elapsed >= args.max_seconds or (args.stop_file and os.path.exists(args.stop_file)):
            break
        due = sent / args.rate
        if due > elapsed:
            await asyncio.sleep(due - elapsed)
            continue
        max_lag = max(max_lag, elapsed - due)
        sent += 1
        if len(in_flight) >= MAX_IN_FLIGHT:
            outcomes["not-sent (too many in flight)"] += 1
            continue
        task = asyncio.create_task(send(round(elapsed, 3)))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        if elapsed >= next_progress:
            failed = sum(n for kind, n in outcomes.items() if kind != "ok")
            print(f"    open-loop: {elapsed:5.0f}s {sent} sent, {outcomes['ok']} ok, {failed} failed, "
                  f"{len(in_flight)} in flight", flush=True)
            next_progress += 10.0
    if in_flight:
        await asyncio.wait(in_flight)

    seconds = time.monotonic() - started
    failed = sum(n for kind, n in outcomes.items() if kind != "ok")
    report = {
        "url": args.url,
        "rate": args.rate,
        "seconds": round(seconds, 1),
        "sent": sent,
        "ok": outcomes["ok"],
        "failed": failed,
        "by_kind": dict(outcomes),
        "first_failures": failures,
        "max_lag_seconds": round(max_lag, 3),
    }
    if args.report:
        with open(args.report, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)
    print(f"    open-loop: {sent} requests in {seconds:.1f}s at {args.rate}/s: "
          f"{outcomes['ok']} ok, {failed} failed {dict(outcomes)}")
    for at, kind in failures:
        print(f"    open-loop: failure at {at:.3f}s: {kind}")
    if max_lag > 1.0:
        print(f"open-loop: the generator fell {max_lag:.1f}s behind its schedule; "
              "the rate was not what was asked", file=sys.stderr)
        return 2
    return 0 if failed == 0 and sent > 0 else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument("--timeout", type=float, default=2.0, help="per request, in seconds (default 2)")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop after this long (default 600)")
    parser.add_argument("--stop-file", help="stop once this file exists")
    parser.add_argument("--report", help="write the counts here as JSON")
    args = parser.parse_args()
    if args.rate <= 0 or args.timeout <= 0 or args.max_seconds <= 0:
        parser.error("--rate, --timeout and --max-seconds must be positive")
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
