#!/usr/bin/env bash
# The rollout proof on a real Kubernetes: a kind cluster, deploy/kubernetes/base
# applied as it is, and `kubectl rollout restart` twice under the open-loop
# load of scripts/e2e/open-loop.py (200 requests/s, sent from this machine
# through a NodePort). It fails when a single request fails.
#
# Usage: scripts/e2e/kind.sh [IMAGE]   (default localhost/pulse:dev)
# Needs docker (kind's node runs in it), Go (kind is installed with `go
# install` at a pinned version, checked by the Go checksum database; the
# kind job sets up Go 1.25), kubectl and podman (the image is built with
# scripts/build/image.sh).
# GitHub Actions runs it (.github/workflows/ci.yml, job kind); this repo's
# CI machine has no registry to pull the node image from, and
# scripts/e2e/rollout.sh standin counts the skip.
#
# What is patched on the rendered base, and printed: the image (loaded into
# the node, never pulled) and the Service as a NodePort. Nothing else.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"
podman_session
started=$SECONDS

kind_version=v0.30.0
# The node image kind v0.30.0 was released with, by digest.
node_image=kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a
image="${1:-localhost/pulse:dev}"
cluster="pulse-e2e-$$"
node_port=30080

for tool in docker go kubectl podman; do
  command -v "$tool" >/dev/null || die "$tool is needed (see the usage at the top of scripts/e2e/kind.sh)"
done
need_python_yaml
podman image exists "$image" || die "no image $image: build it first (scripts/build/image.sh amd64 $image)"

step "kind $kind_version (go install sigs.k8s.io/kind@$kind_version)"
GOBIN="$(mktemp -d)"
export GOBIN
go install "sigs.k8s.io/kind@$kind_version"
kind="$GOBIN/kind"
info "$("$kind" version)"

work="$(mktemp -d)"
cleanup() {
  local code=$?
  [ -z "${load_pid:-}" ] || kill "$load_pid" 2>/dev/null || true
  if [ "$code" -ne 0 ]; then
    step "failed: the cluster's state"
    kubectl -n pulse get deployment,replicaset,pod,endpointslice,hpa,pdb -o wide 2>&1 || true
    kubectl -n pulse get events --sort-by=.lastTimestamp 2>&1 | tail -n 30 || true
  fi
  step "kind delete cluster $cluster"
  "$kind" delete cluster --name "$cluster" >/dev/null 2>&1 || true
  rm -rf "$work" "$GOBIN"
  exit "$code"
}
trap cleanup EXIT

step "kind create cluster ($node_image), NodePort $node_port on 127.0.0.1"
cat >"$work/kind.yaml" <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
    image: $node_image
    extraPortMappings:
      - containerPort: $node_port
        hostPort: $node_port
        listenAddress: 127.0.0.1
EOF
"$kind" create cluster --name "$cluster" --config "$work/kind.yaml" --wait 120s
podman save --format docker-archive -o "$work/pulse.tar" "$image" >/dev/null
"$kind" load image-archive "$work/pulse.tar" --name "$cluster"
info "$image loaded into the node"

step "kubectl apply: deploy/kubernetes/base, with the local image and a NodePort"
kubectl kustomize deploy/kubernetes/base >"$work/rendered.yaml"
python3 - "$work/rendered.yaml" "$image" "$node_port" >"$work/patched.yaml" <<'PY'
import sys
import yaml

rendered, image, node_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
objects = [o for o in yaml.safe_load_all(open(rendered)) if o]
for o in objects:
    if o["kind"] == "Deployment":
        container = o["spec"]["template"]["spec"]["containers"][0]
        container["image"] = image
        container["imagePullPolicy"] = "Never"
    if o["kind"] == "Service":
        o["spec"]["type"] = "NodePort"
        o["spec"]["ports"][0]["nodePort"] = node_port
print(yaml.safe_dump_all(objects, sort_keys=False))
PY
python3 -c 'import sys, yaml; print(yaml.safe_dump_all([o for o in yaml.safe_load_all(open(sys.argv[1])) if o], sort_keys=False))' \
  "$work/rendered.yaml" >"$work/original.yaml"
diff -u "$work/original.yaml" "$work/patched.yaml" | grep '^[-+] ' || true
kubectl apply -f "$work/patched.yaml"

step "the HPA scales to its minimum, the rollout finishes, the probes pass"
minimum="$(kubectl -n pulse get hpa pulse -o jsonpath='{.spec.minReplicas}')"
deadline=$((SECONDS + 180))
until [ "$(kubectl -n pulse get deployment pulse -o jsonpath='{.status.readyReplicas}')" = "$minimum" ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "the Deployment has not $minimum ready pods after 180s"
  sleep 2
done
kubectl -n pulse rollout status deployment/pulse --timeout=180s
info "HPA minReplicas $minimum: $minimum pods ready (readiness /readyz, liveness and startup /livez)"
for probe in startupProbe livenessProbe readinessProbe; do
  path="$(kubectl -n pulse get deployment pulse -o jsonpath="{.spec.template.spec.containers[0].$probe.httpGet.path}")"
  [ -n "$path" ] || die "the running Deployment has no $probe"
  info "$probe: GET $path"
done
restarts="$(kubectl -n pulse get pods -l app.kubernetes.io/name=pulse -o jsonpath='{range .items[*]}{.status.containerStatuses[0].restartCount}{" "}{end}')"
for count in $restarts; do [ "$count" = 0 ] || die "a pod restarted ($restarts): a probe failed"; done
info "no restarts: $restarts"

step "the PDB and the NetworkPolicy"
deadline=$((SECONDS + 60))
until [ "$(kubectl -n pulse get pdb pulse -o jsonpath='{.status.disruptionsAllowed}')" = 1 ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "the PDB allows $(kubectl -n pulse get pdb pulse -o jsonpath='{.status.disruptionsAllowed}') disruptions, expected 1"
  sleep 2
done
info "PDB: $(kubectl -n pulse get pdb pulse -o jsonpath='{.status.currentHealthy}') healthy, 1 disruption allowed"
kubectl -n pulse get networkpolicy pulse >/dev/null || die "the NetworkPolicy is not there"
wait_http "http://127.0.0.1:$node_port/readyz" 60 || die "the Service is not reachable through NodePort $node_port with the NetworkPolicy applied"
scripts/smoke.sh "http://127.0.0.1:$node_port" 30

step "two rollout restarts under an open-loop load of 200 requests/s through NodePort $node_port"
python3 scripts/e2e/open-loop.py "http://127.0.0.1:$node_port/" --rate 200 --max-seconds 600 \
  --stop-file "$work/stop" --report "$work/load.json" &
load_pid=$!
sleep 10
for round in 1 2; do
  kubectl -n pulse rollout restart deployment/pulse
  kubectl -n pulse rollout status deployment/pulse --timeout=300s
  info "rollout restart $round done: $(kubectl -n pulse get pods -l app.kubernetes.io/name=pulse --no-headers | wc -l) pods"
done
sleep 10
touch "$work/stop"
load_code=0
wait "$load_pid" || load_code=$?
load_pid=""
[ "$load_code" -eq 0 ] || die "requests failed during the rollout restarts (open-loop.py exit $load_code)"
info "no request failed"

step "e2e-kind passed in $((SECONDS - started))s"
