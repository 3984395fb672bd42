#!/usr/bin/env bash
# Runs the rendered Kubernetes Deployment with `podman kube play` and checks
# it from the host.
#
# Usage: scripts/e2e/kube.sh
# Renders deploy/kubernetes/base with kustomize, takes its Deployment and patches
# only what a laptop needs (printed as a diff): the locally built image, no
# pull, and a hostPort on 127.0.0.1. Then it smoke-tests the pod, checks the
# security context took effect, and runs `podman kube down`, on failure too.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"
started=$SECONDS

command -v kubectl >/dev/null || die "kubectl (with kustomize) is needed to render deploy/kubernetes/base"
need_python_yaml
image=localhost/pulse:dev
scripts/build/image.sh amd64 "$image"
podman_setup "$image"

work="$(mktemp -d)"
played=""
cleanup() {
  local code=$?
  if [ -n "$played" ]; then
    if [ "$code" -ne 0 ]; then
      podman pod ps || true
      for name in $(podman ps -a --format '{{.Names}}' | grep -E '^pulse-pod.*-pulse$'); do
        podman logs --tail 20 "$name" 2>&1 || true
      done
    fi
    step "podman kube down"
    podman kube down "$played" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$code"
}
trap cleanup EXIT

step "kubectl kustomize deploy/kubernetes/base: the Deployment"
kubectl kustomize deploy/kubernetes/base >"$work/rendered.yaml"
port="$(free_port)"
python3 - "$work/rendered.yaml" "$image" "$port" >"$work/deployment.yaml" <<'PY'
import sys
import yaml

rendered, image, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
deployment = next(d for d in yaml.safe_load_all(open(rendered)) if d and d["kind"] == "Deployment")
container = deployment["spec"]["template"]["spec"]["containers"][0]
# The laptop-only patch: one replica (podman runs each replica as its own
# pod, and they cannot share a host port), the local image, never pulled,
# reachable on loopback.
deployment["spec"]["replicas"] = 1
container["image"] = image
container["imagePullPolicy"] = "Never"
for p in container["ports"]:
    if p["containerPort"] == 8080:
        p["hostPort"] = port
        p["hostIP"] = "127.0.0.1"
print(yaml.safe_dump(deployment, sort_keys=False))
PY
python3 - "$work/rendered.yaml" >"$work/original.yaml" <<'PY'
import sys
import yaml
print(yaml.safe_dump(next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Deployment"), sort_keys=False))
PY
diff -u "$work/original.yaml" "$work/deployment.yaml" | grep '^[-+] ' || true

step "podman kube play"
played="$work/deployment.yaml"
# podman without systemd complains that it cannot schedule healthchecks; the
# probes are not what this test checks, so that noise is dropped.
podman kube play "$played" >/dev/null 2>"$work/play.err" || {
  cat "$work/play.err"
  die "podman kube play failed"
}
container="$(podman ps --format '{{.Names}}' | grep -E '^pulse-pod.*-pulse$' | head -n1 || true)"
[ -n "$container" ] || die "no pulse container is running"
info "container $container, on 127.0.0.1:$port"
scripts/smoke.sh "http://127.0.0.1:$port" 30

step "the security context took effect"
check_locked_down "$container"
grep -q '^{"ts":.*"msg":"listening on' <<<"$(podman logs "$container" 2>/dev/null)" || die "the pod does not log JSON"
info "JSON logs, as the manifest's env asks"

step "the CPU limit sets how many threads serve"
# Rust's available_parallelism reads the cgroup CPU quota that the limit
# becomes, so pulse starts one worker per CPU of the limit, not of the node.
workers="$(python3 - "$played" <<'PY'
import math
import sys
import yaml

cpu = str(yaml.safe_load(open(sys.argv[1]))["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
print(math.ceil(int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)))
PY
)"
grep -q "\"msg\":\"starting pulse\".*\"worker_threads\":${workers}[,}]" <<<"$(podman logs "$container" 2>/dev/null)" ||
  die "pulse did not start $workers worker thread(s) under the manifest's CPU limit"
if [ "$(nproc)" -gt "$workers" ]; then
  info "$workers worker thread(s) under a limit of $workers CPU(s), on a $(nproc)-CPU machine"
else
  info "$workers worker thread(s); this machine has only $(nproc) CPU(s), so the limit changed nothing here"
fi

step "e2e-kube passed in $((SECONDS - started))s"
