#!/usr/bin/env bash
# minio.sh: take the stack's object store away and bring it back, as an outage would.
#
#   hack/stack/minio.sh stop     # SIGTERM the recorded MinIO process (connections are refused)
#   hack/stack/minio.sh start    # start it again on the same data and wait until it answers
#
# Used by the e2e suite's outage test; the data directory ($RUN/s3/minio) is kept.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pid_of kube-apiserver > /dev/null || die "the stack is not running (no kube-apiserver in $RUN): run hack/stack/up.sh"
case ${1:-} in
  stop)
    stop minio
    log "minio stopped"
    ;;
  start)
    if ! pid_of minio > /dev/null; then
      minio_start
    fi
    waitup minio 60 curl -sf http://127.0.0.1:9000/minio/health/live
    log "minio started"
    ;;
  *)
    echo "usage: $0 stop|start" >&2
    exit 2
    ;;
esac
