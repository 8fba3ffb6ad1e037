#!/usr/bin/env bash
# velero.sh: switch and restart the stack's Velero, which runs in the cluster as the helm chart's
# Deployment velero/velero (velero.yaml) with its plugins loaded through initContainers.
#
#   hack/stack/velero.sh restart                              # a rollout: reloads re-imported plugin images
#   VELERO_FEATURES=EnableCSI hack/stack/velero.sh restart    # switch --features ("" for none)
#   VELERO_NODE_AGENT=true hack/stack/velero.sh restart       # switch Velero's node-agent DaemonSet on (false: off)
#   VELERO_SNAPMOVE_PLUGIN=false hack/stack/velero.sh restart # stock Velero: no snapmove initContainer (true: back)
#
# What is not given stays as the stack runs now ($RUN/velero/{features,node-agent,snapmove-plugin}). Waits
# until the new server has validated the default BackupStorageLocation as Available (and node-agent
# runs, when on). Velero's log: `kubectl -n velero logs deploy/velero`,
# /var/log/pods/velero_velero-*/velero/0.log, or `velero backup logs NAME` for one backup.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
  restart)
    pid_of kube-apiserver > /dev/null || die "the stack is not running (no kube-apiserver in $RUN): run hack/stack/up.sh"
    velero_apply
    log "velero restarted (features: '$(cat "$RUN/velero/features")', node-agent: $(cat "$RUN/velero/node-agent"), snapmove plugin: $(cat "$RUN/velero/snapmove-plugin")), BSL default Available"
    ;;
  *)
    echo "usage: [VELERO_FEATURES=...] [VELERO_NODE_AGENT=true|false] $0 restart" >&2
    exit 2
    ;;
esac
