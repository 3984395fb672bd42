#!/usr/bin/env python3
"""Checks how the upstream images are pinned, and that the stand-ins used
where no registry is reachable stand for exactly those images.

Usage: scripts/ci/check-image-pins.py   (scripts/ci/lint-repo.sh runs it)

- The Containerfile's Rust builder is pinned by tag and by digest
  (repository:tag@sha256:<64 hex>), and the tag names a Rust version.
- Every image compose.yaml names by default has a version tag, never
  `latest` (pulse's own localhost image aside).
- HAProxy in deploy/compose/replicas.yaml, and PostgreSQL in compose.yaml,
  are pinned by tag and by digest.
- Dependabot watches these files (the docker and docker-compose ecosystems
  at / and /deploy/compose), so the pins move.
- The stand-ins: the Rust stand-in is tagged with the builder's name without
  its digest, scripts/e2e/compose.sh standin replaces exactly the
  PostgreSQL and monitoring images compose.yaml reads from variables, and
  scripts/e2e/rollout.sh standin those and HAProxy's.
"""
import os
import re
import subprocess
import sys

import yaml

import compose_yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fail(message):
    print(f"FAIL  {message}", file=sys.stderr)
    sys.exit(1)


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


builder = re.search(r"^FROM .* (\S*rust:\S+) AS bin$", read("Containerfile"), re.M)
if not builder:
    fail("Containerfile: no `FROM ... rust:... AS bin` line")
pinned = re.fullmatch(r"(docker\.io/library/rust):(\d+\.\d+\.\d+)-([a-z-]+)@sha256:([0-9a-f]{64})", builder.group(1))
if not pinned:
    fail(f"Containerfile: the builder {builder.group(1)} is not pinned as repository:VERSION-VARIANT@sha256:DIGEST")
print(f"ok    builder {pinned.group(1)}:{pinned.group(2)}-{pinned.group(3)}, digest {pinned.group(4)[:12]}...")

compose = yaml.safe_load(read("compose.yaml"))
variables = {}
for name, service in compose["services"].items():
    match = re.fullmatch(r"\$\{(\w+):-([^}]+)\}", service.get("image", ""))
    if not match:
        fail(f"compose.yaml: service {name}'s image {service.get('image')!r} is not ${{VARIABLE:-default}}")
    variable, image = match.groups()
    if image.startswith("localhost/pulse"):
        continue
    tag = re.fullmatch(r"[\w./-]+:([\w.-]+)(@sha256:[0-9a-f]{64})?", image)
    if not tag or tag.group(1) == "latest":
        fail(f"compose.yaml: service {name} pulls {image}: pin a version tag")
    variables[variable] = image
print(f"ok    compose.yaml pins {len(variables)} upstream images by version: {', '.join(sorted(variables.values()))}")

replicas = compose_yaml.load(os.path.join(ROOT, "deploy/compose/replicas.yaml"))
lb = re.fullmatch(r"\$\{(HAPROXY_IMAGE):-(docker\.io/library/haproxy:\d+\.\d+\.\d+-[a-z]+@sha256:[0-9a-f]{64})\}",
                  replicas["services"]["lb"].get("image", ""))
if not lb:
    fail("deploy/compose/replicas.yaml: the lb image is not ${HAPROXY_IMAGE:-docker.io/library/haproxy:VERSION-VARIANT@sha256:DIGEST}")
print(f"ok    HAProxy {lb.group(2).split('@')[0]}, digest {lb.group(2).split(':')[-1][:12]}...")

postgres = re.fullmatch(r"\$\{(POSTGRES_IMAGE):-(docker\.io/library/postgres:\d+\.\d+-[a-z]+@sha256:[0-9a-f]{64})\}",
                        compose["services"]["postgres"].get("image", ""))
if not postgres:
    fail("compose.yaml: the postgres image is not ${POSTGRES_IMAGE:-docker.io/library/postgres:VERSION-VARIANT@sha256:DIGEST}")
print(f"ok    PostgreSQL {postgres.group(2).split('@')[0]}, digest {postgres.group(2).split(':')[-1][:12]}...")

dependabot = yaml.safe_load(read(".github/dependabot.yml"))
watched = {(u["package-ecosystem"], u.get("directory")) for u in dependabot["updates"]}
for ecosystem, directory in (("docker", "/"), ("docker-compose", "/"), ("docker-compose", "/deploy/compose")):
    if (ecosystem, directory) not in watched:
        fail(f".github/dependabot.yml: no {ecosystem} updates for {directory}")
print("ok    Dependabot watches the Containerfile (docker), compose.yaml and deploy/compose (docker-compose)")

compose_sh = read("scripts/e2e/compose.sh")
replaced = set(re.findall(r"export (\w+_IMAGE)=localhost/standin/", compose_sh))
expected = {v for v, image in variables.items() if re.search(r"/(postgres|prometheus|alertmanager):", image)}
if replaced != expected:
    fail(f"scripts/e2e/compose.sh standin replaces {sorted(replaced)}, but compose.yaml reads PostgreSQL's and the monitoring images from {sorted(expected)}")
replaced_in_rollout = set(re.findall(r"export (\w+_IMAGE)=localhost/standin/", read("scripts/e2e/rollout.sh")))
if replaced_in_rollout != expected | {"HAPROXY_IMAGE"}:
    fail(f"scripts/e2e/rollout.sh standin replaces {sorted(replaced_in_rollout)}, expected {sorted(expected | {'HAPROXY_IMAGE'})}")
# The name the Rust stand-in gets, from the same function build-standins.sh calls.
tag = subprocess.run(["bash", "-c", "source scripts/lib.sh && builder_tag"], cwd=ROOT,
                     capture_output=True, text=True, check=True).stdout.strip()
if tag != f"{pinned.group(1)}:{pinned.group(2)}-{pinned.group(3)}":
    fail(f"builder_tag gives {tag!r}, not the Containerfile's builder without its digest")
if 'builder="$(builder_tag)"' not in read("scripts/sandbox/build-standins.sh"):
    fail("scripts/sandbox/build-standins.sh does not tag the Rust stand-in with builder_tag")
print(f"ok    stand-ins: {', '.join(sorted(replaced))} in compose, and HAPROXY_IMAGE in the rollout; the Rust builder as {pinned.group(1)}:{pinned.group(2)}-{pinned.group(3)}")
