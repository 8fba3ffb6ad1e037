# lib.sh: shared by the hack/stack scripts (source it, do not run it).
# shellcheck shell=bash
# shellcheck disable=SC2034 # its variables are for the scripts that source it, where shellcheck sees them used
#
# Paths (all overridable by env):
#   SNAPMOVE_CACHE      build cache root, default $HOME/.cache/snapmove; binaries live in
#                       $SNAPMOVE_CACHE/stack-<hash of versions.env>/bin (STACK_BIN)
#   SNAPMOVE_STACK_RUN  run dir of a live stack, default /tmp/snapmove-stack (RUN): pids/, logs/, pki/,
#                       etcd/, csi/, csi-data/, containerd/, velero/, s3/, gcs/, azurite/, kubeconfig, env
#   SNAPMOVE_STACK_STORES  object stores besides MinIO that build.sh builds and up.sh starts: a space- or
#                       comma-separated list, default empty (MinIO only, what `make demo` uses). Known: gcs
#                       (fake-gcs-server on 127.0.0.1:4443, Velero's GCP plugin, BSL gcs), azure (Azurite on
#                       127.0.0.1:10000 as devstoreaccount1.blob.localhost, BSL azure, no Velero plugin), irsa
#                       (EKS's pod identity webhook, MinIO trusting the API server's issuer: IRSA_* below). up.sh
#                       records the list a stack runs with in $RUN/velero/stores (stack_has_store).
# The kubelet uses host-global paths (/var/lib/kubelet, /var/log/pods), so one stack per machine.

STACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$STACK_DIR/../.." && pwd)
# shellcheck source=versions.env
. "$STACK_DIR/versions.env"
# The optional stores' versions: a file of their own, left out of STACK_KEY on purpose (see its header):
# adding a store must not make every cache cold. build.sh keys those binaries by their version instead.
# shellcheck source=versions-stores.env
. "$STACK_DIR/versions-stores.env"
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
# The CSI snapshot metadata sidecar (changed block tracking, KEP-3314): its gRPC port (the sidecar listens on every
# interface; clients use 127.0.0.1, the address its TLS certificate, the stack's hostnet.crt, names), its health and
# metrics address (off its default :8080), and the audience of the ServiceAccount tokens its clients send
# (the SnapshotMetadataService object, named $CSI_DRIVER, gives clients the address, the audience and the CA).
SMS_PORT=50051
SMS_HTTP=127.0.0.1:8096
CBT_AUDIENCE=snapmove-cbt
KUBELET_ROOT=/var/lib/kubelet
CONTAINERD_SOCK=$RUN/containerd/containerd.sock
# Velero's images, under the names its helm chart and examples/velero-values.yaml use; build.sh
# makes them from the stack's static binaries.
VELERO_IMAGE=docker.io/velero/velero:$VELERO_VERSION
VELERO_AWS_IMAGE=docker.io/velero/velero-plugin-for-aws:$VELERO_AWS_VERSION
VELERO_GCP_IMAGE=docker.io/velero/velero-plugin-for-gcp:$VELERO_GCP_VERSION
# The GCS server (SNAPMOVE_STACK_STORES=gcs): fake-gcs-server's address, which Velero's server (and through
# it its plugins, its maintenance Jobs and snapmove's workers), the mover and the CLIs get as
# STORAGE_EMULATOR_HOST; its bucket, and the BSL that uses it.
GCS_EMULATOR=127.0.0.1:4443
GCS_BUCKET=velero-gcs
GCS_BSL=gcs
# The Azure Blob server (SNAPMOVE_STACK_STORES=azure): Azurite's blob service on 127.0.0.1:$AZURE_PORT, reached
# by the production-style name <account>.<domain> (kopia's azure storage builds no other URL; Azurite takes the
# account from that host's first label). up.sh maps the name to 127.0.0.1 with the line AZURE_HOSTS_LINE in
# /etc/hosts (the hostNetwork pods' /etc/hosts is the node's), host_cleanup removes exactly that line.
# Velero's Azure plugin is not on the module proxy: the BSL stays Unavailable (docs/stores-on-the-stack.md sec. 4).
AZURE_ACCOUNT=devstoreaccount1
AZURE_DOMAIN=blob.localhost:10000
AZURE_PORT=${AZURE_DOMAIN##*:}
AZURE_HOST=$AZURE_ACCOUNT.${AZURE_DOMAIN%:*}
AZURE_HOSTS_LINE="127.0.0.1 $AZURE_HOST # snapmove-stack azurite"
# Workload identity on S3 (SNAPMOVE_STACK_STORES=irsa), shaped as EKS IAM roles for service accounts: EKS's pod
# identity webhook (hack/tools/kube/podidentity) on $IRSA_WEBHOOK gives the pods of an account annotated
# eks.amazonaws.com/role-arn a projected token of audience $IRSA_AUDIENCE; MinIO, in AWS STS's place, trusts the
# API server's service-account issuer (its OpenID discovery) for that audience and answers
# AssumeRoleWithWebIdentity at its own address (AWS_ENDPOINT_URL_STS) for the role $(irsa_role_arn), policy readwrite.
IRSA_WEBHOOK=127.0.0.1:9444
IRSA_AUDIENCE=sts.amazonaws.com
IRSA_STS_ENDPOINT=http://127.0.0.1:9000
AZURE_CONTAINER=velero-azure
AZURE_BSL=azure

# Order in which up.sh starts processes; down.sh stops them in reverse.
# The Velero server is not one of them: it runs in the cluster (velero.yaml). fake-gcs-server runs only
# with gcs in SNAPMOVE_STACK_STORES, azurite only with azure, pod-identity-webhook only with irsa; down.sh stops
# what has a recorded PID.
STACK_PROCS="etcd minio fake-gcs-server azurite containerd kube-apiserver svc-relay hostnet pod-identity-webhook kube-controller-manager kube-scheduler csidriver
snapshot-controller csi-snapshotter csi-snapshot-metadata csi-provisioner kubelet"

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

# apt_get_install LOG PACKAGE...: apt-get update, then install the packages without recommends, apt's
# output into LOG; dies with its tail on failure. Package maintainer scripts may not start services
# meanwhile (etcd's, containerd's would take the stack's ports): a policy-rc.d says no while none is there.
apt_get_install() {
  local out=$1 policy=/usr/sbin/policy-rc.d added=0
  shift
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy && added=1; fi
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq > "$out" 2>&1 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >> "$out" 2>&1; }; then
    [ $added = 0 ] || rm -f $policy
    tail -20 "$out" >&2
    die "apt-get failed"
  fi
  [ $added = 0 ] || rm -f $policy
}

kctl() { "$STACK_BIN/kubectl" --kubeconfig "$RUN/kubeconfig" "$@"; }

# stores: the list SNAPMOVE_STACK_STORES asks for, one name a word (commas become spaces); dies on a name it
# does not know. store_on NAME: NAME is asked for (build.sh, up.sh). stack_has_store NAME: the running stack
# was started with it (what up.sh recorded in $RUN/velero/stores; for velero.sh, install-mover.sh).
stores() {
  local s out='' list=${SNAPMOVE_STACK_STORES:-}
  for s in ${list//,/ }; do
    case $s in
      gcs | azure | irsa) out="$out $s" ;;
      *) die "SNAPMOVE_STACK_STORES: unknown store '$s' (known: gcs, azure, irsa)" ;;
    esac
  done
  echo "${out# }"
}
store_on() { [[ " $(stores) " == *" $1 "* ]]; }
stack_has_store() { [[ " $(cat "$RUN/velero/stores" 2> /dev/null) " == *" $1 "* ]]; }

# velero_manifest FEATURES NODE_AGENT SNAPMOVE_PLUGIN [STORES]: velero.yaml (the helm chart's objects for
# examples/velero-values.yaml plus the stack's overlay) with the image version and --features filled in
# (the line dropped when there are none, as the chart does), node-agent's DaemonSet only when NODE_AGENT
# is true, and snapmove's initContainer left out when SNAPMOVE_PLUGIN is false (stock Velero). With gcs in
# STORES the comment placeholders "# ${VELERO_GCP_PLUGIN}" and "# ${STORAGE_EMULATOR_HOST}" become Velero's
# GCP plugin initContainer (shaped as the AWS one) and the server container's env STORAGE_EMULATOR_HOST
# (fake-gcs-server); with irsa "# ${AWS_ENDPOINT_URL_STS}" becomes that env (MinIO's STS, IRSA_STS_ENDPOINT);
# without, they are deleted. (Comments, so the file as it is stays the chart's objects: examples_test.go
# TestStackRunsTheHelmValues.)
# shellcheck disable=SC2016 # \${VELERO_FEATURES} and \${VELERO_VERSION} are velero.yaml's literal placeholders
velero_manifest() {
  local feat=$1 nodeagent=$2 plugin=$3 stores=${4:-} drop gcs=false irsa=false gcpinit gcsenv stsenv
  drop='/--features=\${VELERO_FEATURES}$/d'
  [ -z "$feat" ] || drop='s|\${VELERO_FEATURES}|'"$feat"'|'
  [[ " $stores " != *" gcs "* ]] || gcs=true
  [[ " $stores " != *" irsa "* ]] || irsa=true
  # awk -v turns \n into newlines (mawk and gawk alike)
  gcpinit='        - image: velero/velero-plugin-for-gcp:'"$VELERO_GCP_VERSION"'\n          imagePullPolicy: IfNotPresent\n'
  gcpinit+='          name: velero-plugin-for-gcp\n          volumeMounts:\n          - mountPath: /target\n            name: plugins'
  gcsenv='            - name: STORAGE_EMULATOR_HOST\n              value: '"$GCS_EMULATOR"
  stsenv='            - name: AWS_ENDPOINT_URL_STS\n              value: '"$IRSA_STS_ENDPOINT"
  awk -v na="$nodeagent" -v plugin="$plugin" -v gcs="$gcs" -v gcpinit="$gcpinit" -v gcsenv="$gcsenv" \
    -v irsa="$irsa" -v stsenv="$stsenv" '
    /^# --- node-agent/ { if (na != "true") exit }
    /^ *# \$\{VELERO_GCP_PLUGIN\}$/ { if (gcs == "true") print gcpinit; next }
    /^ *# \$\{STORAGE_EMULATOR_HOST\}$/ { if (gcs == "true") print gcsenv; next }
    /^ *# \$\{AWS_ENDPOINT_URL_STS\}$/ { if (irsa == "true") print stsenv; next }
    /^        - image: ghcr.io\/snapmove\/snapmove:/ && plugin == "false" { skip = 1; next }
    skip && /^        - |^      [a-z]/ { skip = 0 }
    !skip { print }' "$STACK_DIR/velero.yaml" |
    sed -e 's|\${VELERO_VERSION}|'"$VELERO_VERSION"'|g' -e "$drop"
}

# velero_apply: make the cluster's Velero what $VELERO_FEATURES, $VELERO_NODE_AGENT and
# $VELERO_SNAPMOVE_PLUGIN say (unset: as the stack runs now; up.sh: none, false, true), with the stores the
# stack was started with ($RUN/velero/stores), apply the manifest, restart the server (a rollout; also
# when nothing changed, so a re-imported plugin image is loaded) and wait until the new server has
# validated the default BackupStorageLocation as Available (and node-agent runs, when asked for).
velero_apply() {
  local feat nodeagent plugin stores old gen since
  feat=${VELERO_FEATURES-$(cat "$RUN/velero/features" 2> /dev/null || true)}
  nodeagent=${VELERO_NODE_AGENT-$(cat "$RUN/velero/node-agent" 2> /dev/null || echo false)}
  echo "$feat" > "$RUN/velero/features"
  plugin=${VELERO_SNAPMOVE_PLUGIN-$(cat "$RUN/velero/snapmove-plugin" 2> /dev/null || echo true)}
  echo "$nodeagent" > "$RUN/velero/node-agent"
  echo "$plugin" > "$RUN/velero/snapmove-plugin"
  stores=$(cat "$RUN/velero/stores" 2> /dev/null || true)
  old=$(kctl -n velero get pods -l name=velero -o name 2> /dev/null) || true
  gen=$(kctl -n velero get deployment velero -o jsonpath='{.metadata.generation}' 2> /dev/null) || true
  velero_manifest "$feat" "$nodeagent" "$plugin" "$stores" | kctl apply -f - > "$RUN/logs/velero-apply.log" 2>&1 ||
    die "applying velero.yaml failed (log $RUN/logs/velero-apply.log)"
  if [ "$nodeagent" != true ]; then
    kctl -n velero delete daemonset node-agent --ignore-not-found --wait=true > /dev/null
  fi
  if [ -n "$gen" ] && [ "$gen" = "$(kctl -n velero get deployment velero -o jsonpath='{.metadata.generation}')" ]; then
    kctl -n velero rollout restart deployment/velero > /dev/null
  fi
  # Recreate: the new server starts only once the old pod is gone, so a validation after that is its own.
  for p in $old; do kctl -n velero wait --for=delete "$p" --timeout=120s > /dev/null 2>&1 || true; done
  since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  if ! waitfor "Velero to validate BSL default" 180 bsl_available_since "$since"; then
    kctl -n velero get pods -o wide >&2 || true
    tail -20 /var/log/pods/velero_velero-*/velero/*.log >&2 2> /dev/null || true
    die "the Velero server did not come up (pod logs: /var/log/pods/velero_velero-*/)"
  fi
  if [ "$nodeagent" = true ]; then
    kctl -n velero rollout status daemonset/node-agent --timeout=120s > /dev/null ||
      die "node-agent did not come up (pod logs: /var/log/pods/velero_node-agent-*/)"
  fi
}

# minio_start: start the stack's S3 server on 127.0.0.1:9000 (its data survives a restart).
# This MinIO build accepts only minioadmin:minioadmin whatever MINIO_ROOT_* say.
# With irsa it also trusts the API server's service-account issuer (IRSA_* above): it reads the issuer's
# OpenID discovery once, at start, so it must start after the API server is ready; the stack CA in its
# certs/CAs lets it fetch the discovery document and the keys over https.
minio_start() {
  local oidc=()
  if stack_has_store irsa; then
    mkdir -p "$RUN/s3/certs/CAs" && cp "$RUN/pki/ca.crt" "$RUN/s3/certs/CAs/stack-ca.crt"
    oidc=(MINIO_IDENTITY_OPENID_CONFIG_URL=https://127.0.0.1:6443/.well-known/openid-configuration
      "MINIO_IDENTITY_OPENID_CLIENT_ID=$IRSA_AUDIENCE" MINIO_IDENTITY_OPENID_ROLE_POLICY=readwrite)
  fi
  start minio env MINIO_ROOT_USER=minioadmin MINIO_ROOT_PASSWORD=minioadmin MINIO_UPDATE=off "${oidc[@]}" \
    "$STACK_BIN/minio" server "$RUN/s3/minio" --address 127.0.0.1:9000 --console-address 127.0.0.1:9001 \
    --certs-dir "$RUN/s3/certs"
}

# irsa_role_arn: the role MinIO made for the issuer's audience: arn:minio:iam:::role/ and the unpadded base64url of
# the SHA-1 of the client ID (minio internal/config/identity/openid/openid.go, the roleArn of a RolePolicy).
irsa_role_arn() {
  printf 'arn:minio:iam:::role/%s' "$(printf %s "$IRSA_AUDIENCE" | openssl sha1 -binary | base64 | tr '+/' '-_' | tr -d =)"
}

# gcs_start: start the stack's GCS server, fake-gcs-server, on $GCS_EMULATOR over plain http (its data, a
# directory per bucket under $RUN/gcs, survives a restart). -public-host must be the address clients use:
# fake-gcs routes path-style /BUCKET/OBJECT (the Go client's XML API reads) only for that Host header.
gcs_start() {
  start fake-gcs-server "$STACK_BIN/fake-gcs-server" -scheme http -host "${GCS_EMULATOR%:*}" -port "${GCS_EMULATOR##*:}" \
    -backend filesystem -filesystem-root "$RUN/gcs" -public-host "$GCS_EMULATOR" -log-level warn
}

# azurite_start: start the stack's Azure Blob server, Azurite's blob service, on 127.0.0.1:$AZURE_PORT over plain
# http with one account, $AZURE_ACCOUNT, whose key is in $RUN/velero/azure-key (its data, under $RUN/azurite,
# survives a restart). Telemetry off; --loose and --skipApiVersionCheck let newer SDKs' headers through.
azurite_start() {
  start azurite env AZURITE_ACCOUNTS="$AZURE_ACCOUNT:$(cat "$RUN/velero/azure-key")" "$STACK_BIN/azurite-blob" \
    --blobHost 127.0.0.1 --blobPort "$AZURE_PORT" --location "$RUN/azurite" --disableTelemetry \
    --skipApiVersionCheck --loose --silent
}

# azure_hosts_add / azure_hosts_remove: add or remove the line $AZURE_HOSTS_LINE in /etc/hosts, in place
# (it may be a bind mount, so it is rewritten, never replaced); remove touches no other line.
azure_hosts_add() {
  grep -qxF "$AZURE_HOSTS_LINE" /etc/hosts || echo "$AZURE_HOSTS_LINE" >> /etc/hosts
}
azure_hosts_remove() {
  local rest
  grep -qxF "$AZURE_HOSTS_LINE" /etc/hosts 2> /dev/null || return 0
  rest=$(grep -vxF "$AZURE_HOSTS_LINE" /etc/hosts) || true
  printf '%s\n' "$rest" > /etc/hosts
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
  local loop back n
  for _ in 1 2 3; do
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
# by files there, and the /etc/hosts line of the azure store. Kills by PID only, one at a time. Safe to run
# repeatedly.
host_cleanup() {
  local d p m n loop back
  azure_hosts_remove
  # containers still running in the kubelet's pod cgroups (normally already stopped via the kubelet)
  for d in /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/memory/kubepods /sys/fs/cgroup/kubepods.slice /sys/fs/cgroup/kubepods; do
    [ -d "$d" ] || continue
    while read -r p; do kill -9 "$p" 2> /dev/null && sleep 0.1; done < <(find "$d" -name cgroup.procs -exec cat {} + 2> /dev/null)
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
  for _ in 1 2 3; do
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
