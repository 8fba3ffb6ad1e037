#!/usr/bin/env bash
# image.sh: build the snapmove image without a Docker engine and load it into the local stack.
#
#   hack/image.sh [BINARY]      (default bin/snapmove, from `make build`)
#
# The layout is the Dockerfile's final stage: /snapmove (static), the CA bundle, entrypoint
# `snapmove install /target`. The tag is the one examples/ use, so the manifests apply as
# they are. Requires a running stack (hack/stack/up.sh) to import into its containerd.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/stack/lib.sh"

bin=${1:-$REPO_ROOT/bin/snapmove}
ref=${SNAPMOVE_IMAGE:-ghcr.io/snapmove/snapmove:v0.1.0}
[ -x "$bin" ] || die "$bin missing: run make build"
mkdir -p "$STACK_IMAGES"
"$STACK_DIR/image.sh" "$ref" "$STACK_IMAGES/snapmove.tar" --entrypoint /snapmove,install,/target \
  "$bin=/snapmove" /etc/ssl/certs/ca-certificates.crt=/etc/ssl/certs/ca-certificates.crt
