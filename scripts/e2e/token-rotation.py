#!/usr/bin/env python3
"""Watches a metrics-token rotation from the scraper's side.

Usage: token-rotation.py METRICS_URL TOKEN_FILE OLD_TOKEN NEW_TOKEN
                         --rotated-file PATH --max-seconds S
                         --accept-within S --grace S

Three loops, all against METRICS_URL, until --max-seconds:
- the scraper: every 100 ms it reads TOKEN_FILE, as Prometheus reads its
  credentials_file on each scrape, and scrapes with whatever it holds. Any
  answer but 200 is a failure.
- the new-token prober: from the moment --rotated-file exists (the test
  wrote the new token into the secrets manager then), NEW_TOKEN every 50 ms
  until the first 200: pulse must accept it within --accept-within seconds.
- the old-token prober: OLD_TOKEN every 50 ms; from the new token's first
  200 it must keep working for --grace seconds less 0.5 and stop (401) by
  --grace seconds plus 1.5.

Prints what it saw, one line each; exits 0 when all three held, 1 if not.
"""

import argparse
import os
import sys
import time
import urllib.error
import urllib.request


def status(url, token):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as answer:
            answer.read()
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError as error:
        return f"error: {error}"


def main():
    parser = argparse.ArgumentParser()
    for name in ("url", "token_file", "old", "new"):
        parser.add_argument(name)
    parser.add_argument("--rotated-file", required=True)
    parser.add_argument("--max-seconds", type=float, required=True)
    parser.add_argument("--accept-within", type=float, required=True)
    parser.add_argument("--grace", type=float, required=True)
    args = parser.parse_args()

    start = time.monotonic()
    scrapes, scrape_failures = 0, []
    rotated_at = accepted_at = old_refused_at = None
    old_failures = []
    next_scrape = start
    while time.monotonic() - start < args.max_seconds:
        now = time.monotonic()
        if now >= next_scrape:
            next_scrape = now + 0.1
            with open(args.token_file) as file:
                token = file.read().strip()
            got = status(args.url, token)
            scrapes += 1
            if got != 200:
                scrape_failures.append((round(now - start, 2), got))
        if rotated_at is None and os.path.exists(args.rotated_file):
            rotated_at = time.monotonic()
        if rotated_at is not None and accepted_at is None:
            if status(args.url, args.new) == 200:
                accepted_at = time.monotonic()
        if old_refused_at is None:
            got = status(args.url, args.old)
            if got == 401 and accepted_at is not None:
                old_refused_at = time.monotonic()
            elif got != 200:
                old_failures.append((round(time.monotonic() - start, 2), got))
        if old_refused_at is not None and accepted_at is not None and now - old_refused_at > 1:
            break
        time.sleep(0.05)

    ok = True
    print(f"scraper: {scrapes} scrapes with the token file, {len(scrape_failures)} not 200 {scrape_failures[:5]}")
    ok &= scrapes > 0 and not scrape_failures
    if rotated_at is None or accepted_at is None:
        print("new token: never accepted")
        return 1
    took = accepted_at - rotated_at
    print(f"new token: accepted {took:.2f} s after the rotation (at most {args.accept_within} s)")
    ok &= took <= args.accept_within
    print(f"old token before its end: {len(old_failures)} answers not 200 {old_failures[:5]}")
    ok &= not old_failures
    if old_refused_at is None:
        print("old token: still accepted at the end")
        return 1
    lasted = old_refused_at - accepted_at
    low, high = args.grace - 0.5, args.grace + 1.5
    print(f"old token: refused {lasted:.2f} s after the new one was accepted (grace {args.grace} s: {low} to {high})")
    ok &= low <= lasted <= high
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
