#!/usr/bin/env python3
"""Checks a Knative Service against Knative Serving's default field masks.

Usage: scripts/ci/check-knative.py RENDERED.yaml

Knative copies only the PodSpec, Container and SecurityContext fields its
field masks allow into a Revision, and rejects the Service on
`kubectl apply` with "must not set the field(s)" when any other is set. A
Kubernetes schema accepts those fields, so a strict Pod validation cannot
catch this. The masks below follow knative/serving's
pkg/apis/serving/fieldmask.go at tag knative-v1.23.0, with every feature
flag (`kubernetes.podspec-*`, `secure-pod-defaults`, ...) at its default in
pkg/apis/config/features.go of the same tag. Exits 1 on any other field.
"""
import sys

import yaml

UPSTREAM = "knative/serving pkg/apis/serving/fieldmask.go, knative-v1.23.0, default feature flags"

ANY = None  # a leaf whose value the mask copies as a whole

PROBE = {
    "exec": {"command": ANY},
    "httpGet": {"host": ANY, "path": ANY, "scheme": ANY, "httpHeaders": ANY, "port": ANY},
    "tcpSocket": {"host": ANY, "port": ANY},
    "grpc": {"port": ANY, "service": ANY},
    "initialDelaySeconds": ANY,
    "timeoutSeconds": ANY,
    "periodSeconds": ANY,
    "successThreshold": ANY,
    "failureThreshold": ANY,
    "terminationGracePeriodSeconds": ANY,
}
KEY_SELECTOR = {"name": ANY, "key": ANY, "optional": ANY}
CONTAINER = {
    "name": ANY,
    "args": ANY,
    "command": ANY,
    # kubernetes.podspec-fieldref is disabled: no fieldRef, no resourceFieldRef.
    "env": [{"name": ANY, "value": ANY, "valueFrom": {"configMapKeyRef": KEY_SELECTOR, "secretKeyRef": KEY_SELECTOR}}],
    "workingDir": ANY,
    "envFrom": [{"prefix": ANY, "configMapRef": {"name": ANY, "optional": ANY},
                 "secretRef": {"name": ANY, "optional": ANY}}],
    "image": ANY,
    "imagePullPolicy": ANY,
    "livenessProbe": PROBE,
    "readinessProbe": PROBE,
    "startupProbe": PROBE,
    "ports": [{"containerPort": ANY, "name": ANY, "protocol": ANY}],
    "resources": {"limits": ANY, "requests": ANY},
    "securityContext": {
        # kubernetes.containerspec-addcapabilities is disabled: drop only.
        "capabilities": {"drop": ANY},
        "readOnlyRootFilesystem": ANY,
        "runAsUser": ANY,
        "runAsGroup": ANY,
        "runAsNonRoot": ANY,
        "allowPrivilegeEscalation": ANY,
        "seccompProfile": ANY,
        "privileged": ANY,  # only false is kept; checked below
    },
    "terminationMessagePath": ANY,
    "terminationMessagePolicy": ANY,
    "volumeMounts": [{"name": ANY, "readOnly": ANY, "mountPath": ANY, "subPath": ANY}],
}
REVISION_SPEC = {
    # Knative's own RevisionSpec fields, inlined next to the PodSpec.
    "containerConcurrency": ANY,
    "timeoutSeconds": ANY,
    "responseStartTimeoutSeconds": ANY,
    "idleTimeoutSeconds": ANY,
    # PodSpecMask's always-allowed fields. kubernetes.podspec-securitycontext,
    # -affinity, -nodeselector, -tolerations, -runtimeclassname, -dnspolicy,
    # -init-containers, ... are all disabled by default, so none of them.
    "serviceAccountName": ANY,
    "containers": [CONTAINER],
    # kubernetes.podspec-emptydir is the one volume type enabled by default.
    "volumes": [{"name": ANY, "secret": ANY, "configMap": ANY, "projected": ANY, "emptyDir": ANY}],
    "imagePullSecrets": [{"name": ANY}],
    "enableServiceLinks": ANY,
    "automountServiceAccountToken": ANY,  # only false is kept; checked below
}


def disallowed(value, mask, path):
    """Yields the path of every field in value that the mask does not allow."""
    if mask is ANY:
        return
    if isinstance(mask, list):
        for index, item in enumerate(value or []):
            yield from disallowed(item, mask[0], f"{path}[{index}]")
        return
    if not isinstance(value, dict):
        yield f"{path} (expected an object)"
        return
    for key, item in value.items():
        if key not in mask:
            yield f"{path}.{key}"
        else:
            yield from disallowed(item, mask[key], f"{path}.{key}")


def main():
    services = [o for o in yaml.safe_load_all(open(sys.argv[1]))
                if o and o.get("kind") == "Service" and o.get("apiVersion", "").startswith("serving.knative.dev/")]
    if not services:
        sys.exit(f"FAIL  {sys.argv[1]} holds no Knative Service")
    for service in services:
        name = service["metadata"]["name"]
        spec = service["spec"]["template"]["spec"]
        problems = list(disallowed(spec, REVISION_SPEC, "spec.template.spec"))
        if spec.get("automountServiceAccountToken") is True:
            problems.append("spec.template.spec.automountServiceAccountToken (only false is allowed)")
        for index, container in enumerate(spec.get("containers", [])):
            if (container.get("securityContext") or {}).get("privileged") is True:
                problems.append(f"spec.template.spec.containers[{index}].securityContext.privileged (only false)")
        if problems:
            print(f"FAIL  Knative Service {name}: a default Knative install rejects it: must not set the field(s):",
                  file=sys.stderr)
            for problem in problems:
                print(f"        {problem}", file=sys.stderr)
            sys.exit(f"      (masks from {UPSTREAM})")
        fields = sum(1 for _ in walk(spec))
        print(f"    Knative Service {name}: {fields} fields, all allowed by {UPSTREAM}")


def walk(value):
    if isinstance(value, dict):
        for item in value.values():
            yield 1
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


if __name__ == "__main__":
    main()
