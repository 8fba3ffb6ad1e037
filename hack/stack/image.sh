#!/usr/bin/env bash
# image.sh: build a single-layer image from local static binaries and import it into the stack's containerd.
#
#   hack/stack/image.sh REF TARBALL [--entrypoint a,b] SRC=/DST [SRC=/DST ...]
#   e.g. hack/stack/image.sh docker.io/snapmove/snapmove:dev /tmp/snapmove.tar --entrypoint /snapmove ./snapmove=/snapmove
#
# Writes TARBALL (docker-archive, via imgtool), then, if the stack is up, imports it into containerd's
# k8s.io namespace so pods can use it with imagePullPolicy Never/IfNotPresent. Re-running replaces the tag.
# The image has /tmp, /etc, /proc, /sys, /dev, /data and PATH=/bin:/usr/bin; files keep mode 0755.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -ge 3 ] || { sed -n '3,4p' "$0" | sed 's/^# *//' >&2; exit 2; }
ref=$1 tar=$2
shift 2
ep=()
if [ "${1:-}" = --entrypoint ]; then
  ep=(-entrypoint "$2")
  shift 2
fi
[ -x "$STACK_BIN/imgtool" ] || die "$STACK_BIN/imgtool missing: run hack/stack/build.sh"
"$STACK_BIN/imgtool" -ref "$ref" -out "$tar" "${ep[@]}" "$@"
log "built $ref -> $tar"
if pid_of containerd > /dev/null; then
  ctr -a "$CONTAINERD_SOCK" -n k8s.io images import "$tar" > /dev/null
  log "imported $ref into the stack's containerd"
else
  log "stack not running: not imported (up.sh does not import it either; run this again after up.sh)"
fi
