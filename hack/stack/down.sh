#!/usr/bin/env bash
# down.sh: stop the local stack started by up.sh and leave the machine clean for the next up.
#
#   hack/stack/down.sh
#
# Deletes all pods first (so the kubelet unmounts their volumes and stops their containers), then stops
# every process by its recorded PID in the reverse of the start order (never by name), stops leftover
# containers/shims of this stack's containerd, unmounts what is left under /var/lib/kubelet and the run
# dir, detaches loop devices backed by files there, and removes /var/lib/kubelet and /var/log/pods.
# The run dir stays, minus env (logs for post-mortems); the next up.sh wipes it. Idempotent.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if pid_of kubelet > /dev/null && pid_of kube-apiserver > /dev/null; then
  log "deleting pods"
  kctl delete pods --all -A --grace-period=1 --wait=true --timeout=60s > "$RUN/logs/down-pods.log" 2>&1 ||
    log "WARNING: pod deletion did not finish (see $RUN/logs/down-pods.log)"
  # the kubelet unmounts volumes shortly after the pods are gone
  waitfor "kubelet to unmount pod volumes" 30 sh -c "! grep -q ' $KUBELET_ROOT/pods/' /proc/mounts" || true
fi

rm -f "$RUN/env" # consumers (smoke.sh, tests) take its absence as "no stack"
procs=$(tr ' ' '\n' <<< "$STACK_PROCS" | tac)
for n in $procs; do
  if [ "$n" = containerd ] && pid_of containerd > /dev/null; then
    # containers the kubelet did not stop (e.g. it was already dead): kill and delete their tasks
    for id in $(ctr -a "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2> /dev/null); do
      ctr -a "$CONTAINERD_SOCK" -n k8s.io tasks kill -s SIGKILL "$id" > /dev/null 2>&1
      ctr -a "$CONTAINERD_SOCK" -n k8s.io tasks delete -f "$id" > /dev/null 2>&1
    done
  fi
  if pid_of "$n" > /dev/null; then
    stop "$n"
    log "stopped $n"
  fi
  rm -f "$RUN/pids/$n.pid"
done
if ! host_cleanup; then
  log "host NOT fully clean"
  exit 1
fi
log "host clean"
log "down"
