#!/usr/bin/env bash
# hack/shellcheck.sh (make lint): shellcheck over every shell script of the repository, the *.sh under
# hack/ and .ci/run, with the options of .shellcheckrc (follow sourced files from the script's directory).
# Installs shellcheck (Debian package) first when it is not on PATH.
set -euo pipefail
# shellcheck source=stack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/stack/lib.sh" # REPO_ROOT, STACK_HOME, log, apt_get_install
cd "$REPO_ROOT"
if ! command -v shellcheck > /dev/null; then
  log "installing shellcheck (Debian package)"
  mkdir -p "$STACK_HOME/logs"
  apt_get_install "$STACK_HOME/logs/apt-shellcheck.log" shellcheck
fi
mapfile -t scripts < <(find hack -name '*.sh' | sort)
shellcheck "${scripts[@]}" .ci/run
