#!/usr/bin/env bash
# velero.sh: control the stack's Velero server host process.
#
#   hack/stack/velero.sh restart [EXTRA_VELERO_SERVER_FLAGS...]
#   VELERO_FEATURES=EnableCSI hack/stack/velero.sh restart     # switch --features (default: none)
#
# Stops the recorded Velero server process and starts it again with the flags up.sh uses (plus the extra
# ones), then waits until the new process has validated the default BackupStorageLocation as Available.
# The plugin dir ($RUN/velero/plugins) is kept: copy a rebuilt snapmove there before restarting.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
  restart)
    shift
    pid_of kube-apiserver > /dev/null || die "the stack is not running (no kube-apiserver in $RUN): run hack/stack/up.sh"
    stop velero
    velero_start "$@"
    log "velero restarted (features: '${VELERO_FEATURES:-}'${*:+, extra flags: $*}), BSL default Available"
    ;;
  *)
    echo "usage: $0 restart [extra velero server flags...]" >&2
    exit 2
    ;;
esac
