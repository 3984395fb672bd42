#!/usr/bin/env bash
# Validates deploy/ offline: kustomize renders, strict schema validation of
# the core objects, what can be validated of the CRDs, checkov with zero
# failed checks, and the generated PrometheusRule in sync with its source.
#
# Usage: scripts/ci/check-deploy.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

kubernetes_version=1.32.0
command -v kubectl >/dev/null || die "kubectl with kustomize is needed (kubectl 1.32 or newer)"
command -v promtool >/dev/null || apt_install prometheus
need_python_yaml
command -v kubernetes-validate >/dev/null || pip_install kubernetes-validate
command -v checkov >/dev/null || pip_install checkov
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

step "kubectl kustomize: the base and the prometheus-operator overlay"
kubectl kustomize deploy/kubernetes/base >"$work/base.yaml"
kubectl kustomize deploy/kubernetes/overlays/prometheus-operator >"$work/operator.yaml"
info "base: $(grep -c '^kind:' "$work/base.yaml") objects; with the component: $(grep -c '^kind:' "$work/operator.yaml")"

step "strict schema validation of the core objects (Kubernetes $kubernetes_version, offline)"
# Split the rendered objects: core kinds are validated strictly; the CRDs
# (ServiceMonitor, PrometheusRule) have no bundled schema and are checked below.
python3 - "$work/operator.yaml" "$work" <<'PY'
import sys
import yaml

objects = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o]
core = [o for o in objects if "monitoring.coreos.com" not in o["apiVersion"]]
crds = [o for o in objects if "monitoring.coreos.com" in o["apiVersion"]]
yaml.safe_dump_all(core, open(f"{sys.argv[2]}/core.yaml", "w"), sort_keys=False)
yaml.safe_dump_all(crds, open(f"{sys.argv[2]}/crds.yaml", "w"), sort_keys=False)
PY
kubernetes-validate --strict --quiet -k "$kubernetes_version" "$work/core.yaml"
info "$(grep -c '^kind:' "$work/core.yaml") objects pass (Namespace, ServiceAccount, Service, Deployment, PDB, HPA, NetworkPolicy)"

step "the CRDs: what can be validated"
python3 - "$work/crds.yaml" "$work/core.yaml" "$work/rules.yml" <<'PY'
import sys
import yaml

crds = {o["kind"]: o for o in yaml.safe_load_all(open(sys.argv[1])) if o}
core = {o["kind"]: o for o in yaml.safe_load_all(open(sys.argv[2])) if o}
monitor, rule, service = crds["ServiceMonitor"], crds["PrometheusRule"], core["Service"]
assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and rule["apiVersion"] == "monitoring.coreos.com/v1"
selector = monitor["spec"]["selector"]["matchLabels"]
assert all(service["metadata"]["labels"].get(k) == v for k, v in selector.items()), "the ServiceMonitor selects no Service"
ports = {p["name"] for p in service["spec"]["ports"]}
for endpoint in monitor["spec"]["endpoints"]:
    assert endpoint["port"] in ports, f"ServiceMonitor port {endpoint['port']} is not a Service port"
    assert endpoint["path"] == "/metrics"
assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
print("    ServiceMonitor: selects the pulse Service, scrapes its named port at /metrics")
# The selecting label is set in one place, the overlay's patch; a Prometheus
# that selects by it (kube-prometheus-stack: its release label) silently
# ignores objects without it.
overlay = yaml.safe_load(open("deploy/kubernetes/overlays/prometheus-operator/kustomization.yaml"))
selecting = {}
for patch in overlay.get("patches", []):
    if patch.get("target", {}).get("group") == "monitoring.coreos.com":
        selecting.update(yaml.safe_load(patch["patch"]).get("metadata", {}).get("labels", {}))
assert selecting, "deploy/kubernetes/overlays/prometheus-operator sets no selecting label on the monitoring.coreos.com objects"
for kind in ("ServiceMonitor", "PrometheusRule"):
    labels = crds[kind]["metadata"].get("labels", {})
    for name, value in selecting.items():
        assert labels.get(name) == value, f"the rendered {kind} lacks the selecting label {name}={value}"
print(f"    ServiceMonitor and PrometheusRule carry the selecting label {selecting}")
yaml.safe_dump({"groups": rule["spec"]["groups"]}, open(sys.argv[3], "w"), sort_keys=False)
PY
promtool check rules "$work/rules.yml" | sed 's/^/    /'
info "PrometheusRule: its groups pass promtool check rules"
scripts/ci/gen-prometheusrule.sh --check

step "the metrics-token overlay: the Secret reaches pulse as a volume, and Prometheus scrapes with it"
# Its token file is never committed: render with a throwaway one.
token_file=deploy/kubernetes/overlays/metrics-token/metrics-token
created_token=""
if [ ! -e "$token_file" ]; then
  random_hex 32 >"$token_file"
  created_token="$token_file"
fi
rendered_ok=0
kubectl kustomize deploy/kubernetes/overlays/metrics-token >"$work/token.yaml" || rendered_ok=$?
[ -z "$created_token" ] || rm -f "$created_token"
[ "$rendered_ok" = 0 ] || die "kubectl kustomize deploy/kubernetes/overlays/metrics-token failed"
python3 - "$work/token.yaml" "$work/token-core.yaml" <<'PY'
import sys
import yaml

objects = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o]
by_kind = {o["kind"]: o for o in objects}
secret, deployment, monitor = by_kind["Secret"], by_kind["Deployment"], by_kind["ServiceMonitor"]
name = secret["metadata"]["name"]
assert name == "pulse-secrets", f"the generated Secret is {name}: a hash suffix would restart pods on every rotation"
assert "metrics-token" in secret["data"]
pod = deployment["spec"]["template"]["spec"]
volumes = {v["name"]: v for v in pod.get("volumes", []) if v.get("secret", {}).get("secretName") == name}
assert volumes, "no volume of the Deployment holds the Secret"
container = pod["containers"][0]
env = {e["name"]: e for e in container.get("env", [])}
refs = [e["name"] for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
assert not refs, f"secrets in the environment never rotate: {refs}"
mounts = [m for m in container.get("volumeMounts", []) if m["name"] in volumes]
assert mounts, "the Secret's volume is not mounted"
for mount in mounts:
    assert "subPath" not in mount, "a subPath mount of a Secret is never updated"
    assert mount.get("readOnly"), "the Secret's mount is not read-only"
path = env["PULSE_METRICS_TOKEN_FILE"]["value"]
assert any(path == f"{m['mountPath']}/metrics-token" for m in mounts), f"PULSE_METRICS_TOKEN_FILE={path} is not the mounted key"
assert pod["securityContext"].get("fsGroup") == container["securityContext"]["runAsGroup"], "pulse's group cannot read the 0440 files"
authorization = monitor["spec"]["endpoints"][0]["authorization"]
assert authorization == {"type": "Bearer", "credentials": {"name": name, "key": "metrics-token"}}, authorization
print(f"    Secret {name} (no hash suffix) mounted read-only at {mounts[0]['mountPath']}, no subPath, no env;")
print(f"    PULSE_METRICS_TOKEN_FILE={path}; the ServiceMonitor scrapes with the same key")
core = [o for o in objects if "monitoring.coreos.com" not in o["apiVersion"]]
yaml.safe_dump_all(core, open(sys.argv[2], "w"), sort_keys=False)
PY
kubernetes-validate --strict --quiet -k "$kubernetes_version" "$work/token-core.yaml"
info "its core objects pass strict schema validation"

step "the database overlay: URL and password reach pulse as a mounted Secret; egress to PostgreSQL"
# Its files are never committed: render with throwaway ones.
overlay=deploy/kubernetes/overlays/database
created=()
for key in url password; do
  if [ ! -e "$overlay/$key" ]; then
    case "$key" in
      url) echo 'postgres://pulse@postgres.example:5432/pulse?sslmode=disable' >"$overlay/$key" ;;
      password) random_hex 24 >"$overlay/$key" ;;
    esac
    created+=("$overlay/$key")
  fi
done
rendered_ok=0
kubectl kustomize "$overlay" >"$work/database.yaml" || rendered_ok=$?
[ "${#created[@]}" -eq 0 ] || rm -f "${created[@]}"
[ "$rendered_ok" = 0 ] || die "kubectl kustomize $overlay failed"
python3 - "$work/database.yaml" <<'PY'
import sys
import yaml

objects = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o]
by_kind = {o["kind"]: o for o in objects}
secret, deployment, policy = by_kind["Secret"], by_kind["Deployment"], by_kind["NetworkPolicy"]
name = secret["metadata"]["name"]
assert name == "pulse-database", f"the generated Secret is {name}: a hash suffix would restart pods on every rotation"
assert set(secret["data"]) == {"url", "password"}, sorted(secret["data"])
pod = deployment["spec"]["template"]["spec"]
volumes = {v["name"] for v in pod.get("volumes", []) if v.get("secret", {}).get("secretName") == name}
container = pod["containers"][0]
mounts = [m for m in container.get("volumeMounts", []) if m["name"] in volumes]
assert mounts and all(m.get("readOnly") and "subPath" not in m for m in mounts), mounts
env = {e["name"]: e.get("value") for e in container.get("env", [])}
for variable, key in [("PULSE_DATABASE_URL_FILE", "url"), ("PULSE_DATABASE_PASSWORD_FILE", "password")]:
    assert env.get(variable) == f"{mounts[0]['mountPath']}/{key}", f"{variable}={env.get(variable)}"
assert "PULSE_DATABASE_URL" not in env and "PULSE_DATABASE_PASSWORD" not in env, "a secret in the environment never rotates"
assert pod["securityContext"].get("fsGroup") == container["securityContext"]["runAsGroup"], "pulse's group cannot read the 0440 files"
ports = sorted({p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])})
assert ports == [53, 5432], f"egress opens {ports}, expected DNS and PostgreSQL only"
print(f"    Secret {name} (url, password) mounted read-only at {mounts[0]['mountPath']}, no env values;")
print(f"    egress to ports {ports} only")
PY
kubernetes-validate --strict --quiet -k "$kubernetes_version" "$work/database.yaml"
info "its objects pass strict schema validation"

step "deploy/knative: only fields a default Knative install accepts"
kubectl kustomize deploy/knative >"$work/knative.yaml"
python3 scripts/ci/check-knative.py "$work/knative.yaml"
python3 - "$work/knative.yaml" <<'PY'
import sys
import yaml

objects = {o["kind"]: o for o in yaml.safe_load_all(open(sys.argv[1])) if o}
service = objects["Service"]
namespace = service["metadata"]["namespace"]
account = service["spec"]["template"]["spec"]["serviceAccountName"]
assert objects.get("Namespace", {}).get("metadata", {}).get("name") == namespace, f"kubectl apply -k deploy/knative does not create namespace {namespace}"
sa = objects.get("ServiceAccount", {}).get("metadata", {})
assert (sa.get("name"), sa.get("namespace")) == (account, namespace), f"kubectl apply -k deploy/knative does not create ServiceAccount {namespace}/{account}"
print(f"    kubectl apply -k deploy/knative creates namespace {namespace} and ServiceAccount {account} with the Service")
PY

step "deploy/knative: the pod spec, strictly"
# Knative's RevisionSpec is a PodSpec plus containerConcurrency and
# timeoutSeconds, and lets probes omit the port. Validate the PodSpec part
# strictly as a Pod; the Knative-only fields are checked by hand below.
python3 - "$work/knative.yaml" "$work/knative-pod.yaml" <<'PY'
import copy
import sys
import yaml

service = next(o for o in yaml.safe_load_all(open(sys.argv[1])) if o and o["kind"] == "Service")
assert service["apiVersion"] == "serving.knative.dev/v1" and service["kind"] == "Service"
template = service["spec"]["template"]
annotations = template["metadata"]["annotations"]
assert annotations["autoscaling.knative.dev/min-scale"] == "0", "scale to zero"
assert int(annotations["autoscaling.knative.dev/max-scale"]) >= 1
spec = copy.deepcopy(template["spec"])
concurrency = spec.pop("containerConcurrency")
timeout = spec.pop("timeoutSeconds")
assert 1 <= concurrency <= 1000 and 1 <= timeout <= 600
container = spec["containers"][0]
assert [p["containerPort"] for p in container["ports"]] == [8080], "one port, 8080"
assert "PORT" not in {e["name"] for e in container.get("env", [])}, "Knative sets PORT itself"
for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
    container[probe]["httpGet"].setdefault("port", 8080)
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pulse", "namespace": "pulse"}, "spec": spec}
yaml.safe_dump(pod, open(sys.argv[2], "w"), sort_keys=False)
print(f"    Knative fields: min-scale 0, max-scale {annotations['autoscaling.knative.dev/max-scale']}, containerConcurrency {concurrency}, port 8080 via PORT")
PY
kubernetes-validate --strict --quiet -k "$kubernetes_version" "$work/knative-pod.yaml"
info "its pod spec passes strict validation as a Pod"
info "not validated: the Knative CRD schema itself (no Knative schema is bundled offline)"

step "replicas, HPA, PDB and rollout agree; the grace period covers preStop, drain and shutdown"
python3 - "$work/base.yaml" <<'PY'
import re
import sys
import yaml

objects = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o]
deployment = next(o for o in objects if o["kind"] == "Deployment")
hpa = next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler")
pdb = next(o for o in objects if o["kind"] == "PodDisruptionBudget")
assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
# The HPA owns the count: spec.replicas would reset it on every apply.
assert "replicas" not in deployment["spec"], "the Deployment sets replicas, which an HPA owns: every kubectl apply resets the HPA's choice"
minimum = hpa["spec"]["minReplicas"]
assert minimum >= 2, f"minReplicas {minimum}: one pod is no redundancy"
# At the HPA's minimum a node drain may still evict one pod, and one keeps serving.
assert "minAvailable" in pdb["spec"], "the check expects a minAvailable PDB"
assert 1 <= pdb["spec"]["minAvailable"] < minimum, f"PDB minAvailable {pdb['spec']['minAvailable']} must be at least 1 and below minReplicas {minimum}, or drains block"
assert pdb["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items(), "the PDB does not select the pods"
print(f"    no replicas in the Deployment; HPA minReplicas {minimum}; PDB minAvailable {pdb['spec']['minAvailable']} lets a drain evict one pod at the minimum")
pod = deployment["spec"]["template"]["spec"]
env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
seconds = lambda v: int(re.fullmatch(r"(\d+)s?", v).group(1))
# preStop: the sleep action (no shell in the image), long enough for the
# Endpoints change to reach kube-proxy, and inside the grace period.
pre_stop = pod["containers"][0].get("lifecycle", {}).get("preStop", {})
assert set(pre_stop) == {"sleep"}, f"preStop must be the sleep action alone (the image has no shell), not {pre_stop}"
pre_stop_seconds = pre_stop["sleep"]["seconds"]
assert pre_stop_seconds >= 3, f"a preStop sleep of {pre_stop_seconds}s is too short for the Endpoints change to propagate"
needed = pre_stop_seconds + seconds(env["PULSE_DRAIN_DELAY"]) + seconds(env["PULSE_SHUTDOWN_TIMEOUT"])
grace = pod["terminationGracePeriodSeconds"]
assert grace > needed, f"terminationGracePeriodSeconds {grace} <= preStop + drain + timeout {needed}"
rolling = deployment["spec"]["strategy"]["rollingUpdate"]
assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
assert rolling["maxUnavailable"] == 0, "maxUnavailable must be 0: capacity never drops in a rollout"
assert rolling["maxSurge"] not in (0, "0", "0%"), "with maxUnavailable 0 a rollout needs a maxSurge"
assert deployment["spec"].get("minReadySeconds", 0) >= 1, "minReadySeconds: a pod must stay ready a while before it counts"
print(f"    terminationGracePeriodSeconds {grace} > preStop sleep {pre_stop_seconds}s + drain {env['PULSE_DRAIN_DELAY']} + timeout {env['PULSE_SHUTDOWN_TIMEOUT']}")
print(f"    rollout: maxUnavailable 0, maxSurge {rolling['maxSurge']}, minReadySeconds {deployment['spec']['minReadySeconds']}")
PY

step "deploy/haproxy: haproxy -c, and a draining replica leaves the pool before it stops"
command -v haproxy >/dev/null || apt_install haproxy
# haproxy -c resolves nothing (init-addr none) and needs only the slot count.
(cd "$work" && PULSE_REPLICAS=3 haproxy -c -f "$REPO_ROOT/deploy/haproxy/haproxy.cfg") | sed 's/^/    /'
python3 - <<'PY'
import re
import sys

sys.path.insert(0, "scripts/ci")
import compose_yaml

base = compose_yaml.load("compose.yaml")["services"]["pulse"]
overlay = compose_yaml.load("deploy/compose/replicas.yaml")["services"]
assert overlay["pulse"]["ports"] == [], "the replicas must publish no port of their own"
assert base["ports"][0] in overlay["lb"]["ports"], f"HAProxy must publish the port a single pulse does ({base['ports'][0]})"
print(f"    HAProxy publishes {base['ports'][0]}, the port a single pulse publishes; the replicas publish none")
cfg = open("deploy/haproxy/haproxy.cfg").read()
assert re.search(r"^  http-check send meth GET uri /readyz$", cfg, re.M), "HAProxy must check /readyz"
assert re.search(r"^  http-check expect status 200$", cfg, re.M)
inter = int(re.search(r"^  default-server .*\binter (\d+)s\b", cfg, re.M).group(1))
fall = int(re.search(r"^  default-server .*\bfall (\d+)\b", cfg, re.M).group(1))
drain = int(re.fullmatch(r"(\d+)s", base["environment"]["PULSE_DRAIN_DELAY"]).group(1))
# The first failing check comes at most `inter` after /readyz turns 503, and
# `fall` of them take the server out: that must happen inside the drain delay.
assert inter * fall < drain, f"HAProxy takes up to {inter * fall}s to notice a drain of {drain}s"
print(f"    /readyz checked every {inter}s, out after {fall} failure(s): {inter * fall}s < PULSE_DRAIN_DELAY {drain}s")
PY

step "checkov --skip-download -d deploy"
# Sequentially: checkov's forked kustomize runner shares a Manager dict that
# raced here (BrokenPipeError, once in a few runs); deploy/ is small.
CHECKOV_PARALLELIZATION_TYPE=none \
  checkov --skip-download -d deploy --compact --quiet --output cli >"$work/checkov.txt" 2>&1 || {
  cat "$work/checkov.txt"
  die "checkov reported failed checks or did not finish (its output is above)"
}
grep -E 'Passed checks|Failed checks' "$work/checkov.txt" | sed 's/^/    /'
if grep -E 'Failed checks: [1-9]' "$work/checkov.txt"; then die "checkov reported failed checks"; fi
# Every skip carries a reason a reviewer can judge.
python3 - deploy <<'PY'
import glob
import sys
import yaml

skips = 0
# Kubernetes and Knative objects only: deploy/compose is a compose overlay.
for path in glob.glob(f"{sys.argv[1]}/k*/**/*.yaml", recursive=True):
    for document in yaml.safe_load_all(open(path)):
        annotations = ((document or {}).get("metadata") or {}).get("annotations") or {}
        for key, value in annotations.items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert len(reason.strip()) >= 40, f"{path}: {check} is skipped without a real reason"
                print(f"    skipped {check} in {path}: {reason.strip()}")
                skips += 1
print(f"    {skips} skip(s), each with its reason")
PY
