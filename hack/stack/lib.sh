# lib.sh: shared by the hack/stack scripts (source it, do not run it).
#
# Paths (all overridable by env):
#   SNAPMOVE_CACHE      build cache root, default $HOME/.cache/snapmove; binaries live in
#                       $SNAPMOVE_CACHE/stack-<hash of versions.env>/bin (STACK_BIN)
#   SNAPMOVE_STACK_RUN  run dir of a live stack, default /tmp/snapmove-stack (RUN): pids/, logs/, pki/,
#                       etcd/, csi/, csi-data/, containerd/, velero/, s3/, kubeconfig, env
# The kubelet uses host-global paths (/var/lib/kubelet, /var/log/pods), so one stack per machine.

STACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$STACK_DIR/../.." && pwd)
# shellcheck source=versions.env
. "$STACK_DIR/versions.env"
STACK_KEY=$(sha256sum "$STACK_DIR/versions.env" | cut -c1-12)
STACK_HOME=${SNAPMOVE_CACHE:-$HOME/.cache/snapmove}/stack-$STACK_KEY
STACK_BIN=$STACK_HOME/bin
STACK_IMAGES=$STACK_HOME/images
STACK_MANIFESTS=$STACK_HOME/manifests
RUN=${SNAPMOVE_STACK_RUN:-/tmp/snapmove-stack}

NODE_NAME=snapmove-node
CSI_DRIVER=hostpath.csi.snapmove.io
STORAGE_CLASS=snapmove-csi
SNAPSHOT_CLASS=snapmove-csi-snapclass
KUBELET_ROOT=/var/lib/kubelet
CONTAINERD_SOCK=$RUN/containerd/containerd.sock

# Order in which up.sh starts processes; down.sh stops them in reverse.
STACK_PROCS="etcd minio containerd kube-apiserver svc-relay kube-controller-manager kube-scheduler csidriver
snapshot-controller csi-snapshotter csi-provisioner kubelet velero"

_t0=$(date +%s)
elapsed() { local s=$(( $(date +%s) - _t0 )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }
log() { echo "[$(elapsed)] $*"; }
die() { echo "[$(elapsed)] ERROR: $*" >&2; exit 1; }

# waitfor DESC SECONDS CMD...: poll CMD once a second until it succeeds.
waitfor() {
  local desc=$1 timeout=$2 i
  shift 2
  for ((i = 0; i < timeout; i++)); do
    if "$@" > /dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "[$(elapsed)] timeout (${timeout}s) waiting for $desc" >&2
  return 1
}

# waitup NAME SECONDS CMD...: like waitfor, for process NAME; fails at once (with its log tail) if it died.
waitup() {
  local name=$1 timeout=$2 i
  shift 2
  for ((i = 0; i < timeout; i++)); do
    if "$@" > /dev/null 2>&1; then return 0; fi
    if ! pid_of "$name" > /dev/null; then
      tail -20 "$RUN/logs/$name.log" >&2
      die "$name exited (log $RUN/logs/$name.log)"
    fi
    sleep 1
  done
  tail -20 "$RUN/logs/$name.log" >&2
  die "timeout (${timeout}s) waiting for $name (log $RUN/logs/$name.log)"
}

# alive PID: the process exists and is not a zombie (PID 1 here may reap orphans only every few seconds).
alive() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2> /dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

# pid_of NAME: the recorded PID of a stack process if it is alive, else nothing (exit 1).
pid_of() {
  local f=$RUN/pids/$1.pid p
  [ -f "$f" ] || return 1
  p=$(cat "$f")
  alive "$p" || return 1
  echo "$p"
}

# start NAME CMD...: run CMD in the background (own session), log to $RUN/logs/NAME.log, record its PID.
start() {
  local name=$1
  shift
  setsid "$@" > "$RUN/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/pids/$name.pid"
}

# stop NAME: SIGTERM the recorded PID, wait up to 15 s, then SIGKILL. Never matches processes by name.
stop() {
  local name=$1 p i
  if p=$(pid_of "$name"); then
    kill "$p" 2> /dev/null || true
    for ((i = 0; i < 75; i++)); do
      alive "$p" || break
      sleep 0.2
    done
    if alive "$p"; then
      echo "[$(elapsed)] $name (pid $p) ignored SIGTERM, killing" >&2
      kill -9 "$p" 2> /dev/null || true
    fi
  fi
  rm -f "$RUN/pids/$name.pid"
}

kctl() { "$STACK_BIN/kubectl" --kubeconfig "$RUN/kubeconfig" "$@"; }

# velero_start [EXTRA_SERVER_FLAGS...]: start the Velero server host process (features from
# $VELERO_FEATURES, default none) and wait until this process has validated the default BSL as Available.
velero_start() {
  local feat=${VELERO_FEATURES:-} since
  echo "$feat" > "$RUN/velero/features"
  since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  start velero env AWS_SHARED_CREDENTIALS_FILE="$RUN/velero/credentials" VELERO_NAMESPACE=velero \
    "$STACK_BIN/velero" server --kubeconfig="$RUN/kubeconfig" --namespace=velero \
    --plugin-dir="$RUN/velero/plugins" --features="$feat" --uploader-type=kopia \
    --metrics-address=127.0.0.1:8085 --profiler-address=127.0.0.1:6060 \
    --backup-sync-period=30s --store-validation-frequency=10s "$@"
  waitup velero 90 bsl_available_since "$since"
}

# minio_start: start the stack's S3 server on 127.0.0.1:9000 (its data survives a restart).
# This MinIO build accepts only minioadmin:minioadmin whatever MINIO_ROOT_* say.
minio_start() {
  start minio env MINIO_ROOT_USER=minioadmin MINIO_ROOT_PASSWORD=minioadmin MINIO_UPDATE=off \
    "$STACK_BIN/minio" server "$RUN/s3/minio" --address 127.0.0.1:9000 --console-address 127.0.0.1:9001
}

# bsl_available_since RFC3339: the default BSL is Available, validated at or after the given time.
bsl_available_since() {
  local out phase at
  out=$(kctl -n velero get bsl default -o jsonpath='{.status.phase} {.status.lastValidationTime}') || return 1
  read -r phase at <<< "$out"
  [ "$phase" = Available ] && [[ ! "$at" < "$1" ]]
}

# mounts_under DIR...: mount points below the given dirs, deepest first.
mounts_under() {
  local d
  for d in "$@"; do awk -v p="$d/" 'index($2, p) == 1 || $2 == substr(p, 1, length(p) - 1) {print $2}' /proc/mounts; done |
    awk '{print length($0) " " $0}' | sort -rn | cut -d' ' -f2- | uniq
}

# detach_loops: detach the loop devices the CSI driver (block volumes, image under $RUN) or the kubelet
# (block device lock, device node under the kubelet root) attached. The kubelet's loops sit on top of the
# driver's, so they go first (highest number first); a loop still in use is auto-cleared later.
detach_loops() {
  local loop back pass n
  for pass in 1 2 3; do
    n=0
    while read -r loop back; do
      case $back in
        "$RUN"/* | "$KUBELET_ROOT"/*) losetup -d "$loop" 2> /dev/null && n=$((n + 1)) ;;
      esac
    done < <(losetup -l -n -O NAME,BACK-FILE 2> /dev/null | sort -rV)
    [ $n -gt 0 ] || break
    sleep 0.2
  done
}

# host_cleanup: undo what a (dead) stack left on the host: processes in the kubelet's pod cgroups,
# containerd shims of THIS stack's containerd, mounts under the kubelet root and $RUN, loop devices backed
# by files there. Kills by PID only, one at a time. Safe to run repeatedly.
host_cleanup() {
  local d p m n loop back pass
  # containers still running in the kubelet's pod cgroups (normally already stopped via the kubelet)
  for d in /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/memory/kubepods /sys/fs/cgroup/kubepods.slice /sys/fs/cgroup/kubepods; do
    [ -d "$d" ] || continue
    for p in $(find "$d" -name cgroup.procs -exec cat {} + 2> /dev/null); do kill -9 "$p" 2> /dev/null && sleep 0.1; done
  done
  # shims started by this stack's containerd carry its socket path in argv
  for d in /proc/[0-9]*; do
    if tr '\0' '\n' 2> /dev/null < "$d/cmdline" | grep -qxF "$CONTAINERD_SOCK"; then
      kill "${d#/proc/}" 2> /dev/null || true
    fi
  done
  # Loop devices first: once their paths are unmounted, the kubelet's loops show "/" as backing file.
  detach_loops
  # mounts: kubelet volume mounts, the kubelet's self bind mount, container rootfs under $RUN
  for pass in 1 2 3; do
    n=0
    for m in $(mounts_under "$KUBELET_ROOT" "$RUN"); do
      umount "$m" 2> /dev/null || umount -l "$m" 2> /dev/null || true
      n=$((n + 1))
    done
    [ $n -gt 0 ] || break
  done
  detach_loops
  # the kubelet's state and pod logs are host-global: wipe them, but never while something is mounted there
  if [ -z "$(mounts_under "$KUBELET_ROOT")" ]; then
    rm -rf "$KUBELET_ROOT" /var/log/pods /var/log/containers
  else
    echo "[$(elapsed)] WARNING: mounts remain under $KUBELET_ROOT; left it in place" >&2
    return 1
  fi
}
