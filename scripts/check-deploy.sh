#!/usr/bin/env bash
# Validates deploy/ offline: kustomize renders, strict schema validation of
# the core objects, what can be validated of the CRDs, checkov with zero
# failed checks, and the generated PrometheusRule in sync with its source.
#
# Usage: scripts/check-deploy.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
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
kubectl kustomize deploy/kubernetes >"$work/base.yaml"
kubectl kustomize deploy/overlays/prometheus-operator >"$work/operator.yaml"
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
yaml.safe_dump({"groups": rule["spec"]["groups"]}, open(sys.argv[3], "w"), sort_keys=False)
PY
promtool check rules "$work/rules.yml" | sed 's/^/    /'
info "PrometheusRule: its groups pass promtool check rules"
scripts/gen-prometheusrule.sh --check

step "deploy/knative/service.yaml"
# Knative's RevisionSpec is a PodSpec plus containerConcurrency and
# timeoutSeconds, and lets probes omit the port. Validate the PodSpec part
# strictly as a Pod; the Knative-only fields are checked by hand below.
python3 - deploy/knative/service.yaml "$work/knative-pod.yaml" <<'PY'
import copy
import sys
import yaml

service = yaml.safe_load(open(sys.argv[1]))
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

step "grace period covers the drain"
python3 - "$work/base.yaml" <<'PY'
import re
import sys
import yaml

deployment = next(o for o in yaml.safe_load_all(open(sys.argv[1])) if o and o["kind"] == "Deployment")
pod = deployment["spec"]["template"]["spec"]
env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
seconds = lambda v: int(re.fullmatch(r"(\d+)s?", v).group(1))
needed = seconds(env["PULSE_DRAIN_DELAY"]) + seconds(env["PULSE_SHUTDOWN_TIMEOUT"])
grace = pod["terminationGracePeriodSeconds"]
assert grace > needed, f"terminationGracePeriodSeconds {grace} <= drain + timeout {needed}"
assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
print(f"    terminationGracePeriodSeconds {grace} > drain {env['PULSE_DRAIN_DELAY']} + timeout {env['PULSE_SHUTDOWN_TIMEOUT']}; maxUnavailable 0")
PY

step "checkov --skip-download -d deploy"
checkov --skip-download -d deploy --compact --quiet --output cli >"$work/checkov.txt" 2>&1 || {
  cat "$work/checkov.txt"
  die "checkov reported failed checks"
}
grep -E 'Passed checks|Failed checks' "$work/checkov.txt" | sed 's/^/    /'
if grep -E 'Failed checks: [1-9]' "$work/checkov.txt"; then die "checkov reported failed checks"; fi
# Every skip carries a reason a reviewer can judge.
python3 - deploy <<'PY'
import glob
import sys
import yaml

skips = 0
for path in glob.glob(f"{sys.argv[1]}/**/*.yaml", recursive=True):
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
