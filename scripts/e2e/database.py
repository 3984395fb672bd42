#!/usr/bin/env python3
"""pulse's /notes against a real PostgreSQL, from the outside, with the
release binary: what only processes can show.

  nothing-lost   writers POST notes and record every 201; meanwhile pulse
                 is killed with SIGKILL and restarted, and PostgreSQL is
                 restarted. Every acknowledged note must then be stored
                 exactly once, under the id its 201 gave.
  outage         PostgreSQL stopped: the database routes answer 503 with
                 Retry-After within the timeout, pulse stays alive and
                 ready; started again, they recover by themselves.
  three-at-once  three pulse processes started together on an empty
                 database: one applies the migrations, two find them done.

Usage: scripts/e2e/database.py BINARY
  with PG_URL (a libpq URI) and PG_DIR (for pg_ctl) in the environment, as
  scripts/lib.sh start_postgres sets them. Every load loop is bounded in
  requests and in time; all traffic goes to 127.0.0.1.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

BINARY = sys.argv[1]
PG_URL = os.environ["PG_URL"]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 1.0  # PULSE_DATABASE_TIMEOUT for these runs


def step(text):
    print(f"\n==> {text}", flush=True)


def info(text):
    print(f"    {text}", flush=True)


def fail(text):
    print(f"error: {text}", file=sys.stderr, flush=True)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_cluster(*args):
    """pg_ctl on the test cluster, through scripts/lib.sh (as the postgres
    user under root); `start` is lib.sh's pg_start, with the cluster's port."""
    command = 'source scripts/lib.sh && pg_start' if args == ("start",) else \
        'source scripts/lib.sh && pg_cluster "$@"'
    subprocess.run(["bash", "-c", command, "pg_cluster", *args], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)


def psql(url, sql):
    return subprocess.run(["psql", url, "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          check=True, capture_output=True, text=True).stdout


def database_url(name):
    base, query = PG_URL.split("?", 1)
    return f"{base.rsplit('/', 1)[0]}/{name}?{query}"


def fresh_database(name):
    psql(PG_URL, f"DROP DATABASE IF EXISTS {name}")
    psql(PG_URL, f"CREATE DATABASE {name}")
    return database_url(name)


class Pulse:
    """The binary on a fixed port, so a restart is found at the same address."""

    def __init__(self, url, port, log_name, **env):
        self.port = port
        self.log_path = f"{os.environ.get('TMPDIR', '/tmp')}/{log_name}-{os.getpid()}.log"
        self.env = {"PATH": os.environ["PATH"], "HOST": "127.0.0.1", "PORT": str(port),
                    "PULSE_DATABASE_URL": url, "PULSE_DATABASE_TIMEOUT": f"{int(TIMEOUT_S * 1000)}ms",
                    "PULSE_LOG_FORMAT": "json", "PULSE_DRAIN_DELAY": "0s", **env}
        self.process = None

    def start(self):
        log = open(self.log_path, "a")
        self.process = subprocess.Popen([BINARY], env=self.env, stdout=log, stderr=log)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=5)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log(self):
        with open(self.log_path) as f:
            return f.read()


def request(port, method, path, body=None, timeout=5.0):
    """(status, headers, body, seconds); status 0 when the connection failed."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        headers = {name.lower(): value for name, value in answer.getheaders()}
        return answer.status, headers, answer.read(), time.monotonic() - started
    except OSError:
        return 0, {}, b"", time.monotonic() - started
    finally:
        connection.close()


def wait_ready(port, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if request(port, "GET", "/readyz", timeout=1)[0] == 200:
            return
        time.sleep(0.1)
    fail(f"pulse on port {port} was not ready within {seconds} s")


def nothing_lost():
    step("nothing lost: 4 writers; pulse SIGKILLed and restarted; PostgreSQL restarted")
    url = fresh_database("pulse_durability")
    pulse = Pulse(url, free_port(), "pulse-durability")
    pulse.start()
    wait_ready(pulse.port)
    acknowledged = {}  # text -> id from the 201
    outcomes = {}
    lock = threading.Lock()
    stop = threading.Event()
    max_requests = 20000

    def writer(number):
        sequence = 0
        while not stop.is_set() and sequence < max_requests // 4:
            text = f"writer {number} note {sequence}"
            sequence += 1
            status, _, body, _ = request(pulse.port, "POST", "/notes", json.dumps({"text": text}), timeout=3)
            with lock:
                outcomes[status] = outcomes.get(status, 0) + 1
                if status == 201:
                    acknowledged[text] = json.loads(body)["id"]
            # A client's pace, and a back-off after a failure rather than a
            # tight retry loop.
            time.sleep(0.002 if status == 201 else 0.02)

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in writers:
        thread.start()
    time.sleep(2)
    info(f"{len(acknowledged)} acknowledged; SIGKILL to pulse")
    pulse.kill()
    pulse.start()
    wait_ready(pulse.port)
    info(f"pulse restarted and ready; {len(acknowledged)} acknowledged")
    time.sleep(2)
    info("restarting PostgreSQL (pg_ctl restart -m fast)")
    pg_cluster("restart", "-m", "fast", "-w", "-t", "30")
    time.sleep(3)
    stop.set()
    for thread in writers:
        thread.join(timeout=10)
    pulse.stop()

    stored = {}
    for line in psql(url, "SELECT id, text FROM notes").splitlines():
        id_text, text = line.split("|", 1)
        stored.setdefault(text, []).append(int(id_text))
    lost = [text for text in acknowledged if text not in stored]
    duplicated = [text for text, ids in stored.items() if len(ids) > 1]
    wrong_id = [text for text, id_ in acknowledged.items() if stored.get(text) and stored[text][0] != id_]
    unacknowledged = len(stored) - len(set(stored) & set(acknowledged))
    info(f"answers: {dict(sorted(outcomes.items()))} (0 = connection refused or reset)")
    info(f"acknowledged {len(acknowledged)}, stored {sum(len(ids) for ids in stored.values())}, "
         f"stored without a 201 (in flight at the kill or the restart) {unacknowledged}")
    if len(acknowledged) < 100:
        fail(f"only {len(acknowledged)} notes acknowledged: the load never ran")
    if outcomes.get(0, 0) + outcomes.get(503, 0) == 0:
        fail("no write failed: neither the kill nor the restart was felt")
    if lost or duplicated or wrong_id:
        fail(f"lost {lost[:5]} ({len(lost)}), duplicated {duplicated[:5]} ({len(duplicated)}), "
             f"under another id {wrong_id[:5]} ({len(wrong_id)})")
    info("every acknowledged note is stored exactly once, under its id")


def outage():
    step(f"outage: PostgreSQL stopped; 503 within the {TIMEOUT_S:.0f} s timeout, then recovery")
    url = fresh_database("pulse_outage")
    pulse = Pulse(url, free_port(), "pulse-outage")
    pulse.start()
    wait_ready(pulse.port)
    status, _, body, _ = request(pulse.port, "POST", "/notes", json.dumps({"text": "before"}))
    if status != 201:
        fail(f"POST before the outage: {status} {body!r}")
    pg_cluster("stop", "-m", "fast", "-w")
    slowest = 0.0
    for _ in range(10):
        for method, path, body in [("GET", "/notes/1", None), ("POST", "/notes", json.dumps({"text": "during"})),
                                   ("GET", "/notes", None)]:
            status, headers, answer, seconds = request(pulse.port, method, path, body)
            slowest = max(slowest, seconds)
            if status != 503 or headers.get("retry-after") != "1":
                fail(f"{method} {path} with the database down: {status} {headers} {answer!r}")
    info(f"30 requests: all 503 with Retry-After: 1; the slowest took {slowest * 1000:.0f} ms")
    if slowest > TIMEOUT_S + 0.5:
        fail(f"a 503 took {slowest:.2f} s, over the {TIMEOUT_S} s timeout")
    for path in ["/livez", "/readyz"]:
        status = request(pulse.port, "GET", path)[0]
        if status != 200:
            fail(f"{path} with the database down: {status} (pulse must stay alive and ready)")
    health = json.loads(request(pulse.port, "GET", "/health")[2])
    if health.get("checks", {}).get("database") != "down":
        fail(f"/health with the database down: {health}")
    info("/livez and /readyz 200, /health says the database is down")
    if pulse.process.poll() is not None:
        fail("pulse exited during the outage")
    pg_cluster("start")
    wait_created(pulse.port, "after the stop")
    info("PostgreSQL back: POST /notes answers 201 again, without a restart of pulse")

    # A database that accepts connections and then never answers (a hung
    # host, a network partition): only pulse's own timeout ends the wait.
    frozen = postgres_processes()
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        slowest = 0.0
        for _ in range(3):
            status, headers, answer, seconds = request(pulse.port, "GET", "/notes/1", timeout=10)
            slowest = max(slowest, seconds)
            if status != 503:
                fail(f"GET /notes/1 with PostgreSQL frozen: {status} {answer!r}")
        info(f"PostgreSQL frozen (SIGSTOP): 503 each time, the slowest after {slowest * 1000:.0f} ms")
        if slowest > TIMEOUT_S + 0.5:
            fail(f"a 503 took {slowest:.2f} s, over the {TIMEOUT_S} s timeout")
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    wait_created(pulse.port, "after the freeze")
    info("PostgreSQL thawed: 201 again")
    pulse.stop()
    if "database: unreachable" not in pulse.log():
        fail("the outage left no warning in pulse's log")


def postgres_processes():
    """The postmaster and every process it started."""
    with open(os.path.join(os.environ["PG_DIR"], "postmaster.pid")) as f:
        postmaster = int(f.readline())
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout
    return [postmaster, *map(int, children.split())]


def wait_created(port, when):
    deadline = time.monotonic() + 15
    while True:
        status = request(port, "POST", "/notes", json.dumps({"text": when}))[0]
        if status == 201:
            return
        if time.monotonic() > deadline:
            fail(f"no 201 within 15 s {when} (last {status})")
        time.sleep(0.2)


def three_at_once():
    step("three pulse processes started together on an empty database")
    url = fresh_database("pulse_three")
    replicas = [Pulse(url, free_port(), f"pulse-three-{n}") for n in range(3)]
    for replica in replicas:
        replica.start()
    for replica in replicas:
        wait_ready(replica.port)
    for replica in replicas:
        replica.stop()
    logs = [replica.log() for replica in replicas]
    applied = sum("applied migrations" in log for log in logs)
    current = sum("schema up to date" in log for log in logs)
    versions = psql(url, "SELECT version FROM pulse_schema_migrations ORDER BY version").split()
    info(f"applied by {applied}, found up to date by {current}; versions recorded {versions}")
    if (applied, current) != (1, 2):
        fail("each migration must be applied by exactly one of the three")


nothing_lost()
outage()
three_at_once()
