#!/usr/bin/env bash
# smoke.sh: end-to-end smoke test of a running stack (hack/stack/up.sh). Exits non-zero on failure.
#
#   hack/stack/smoke.sh
#
# Checks: a PVC binds; a hostNetwork pod placed by the scheduler writes into it; a VolumeSnapshot becomes
# ready; a PVC restored from it has the data (read from the CSI driver's statedir); a Block PVC is a
# device in a pod; a Velero backup of a ConfigMap namespace completes, and so does its restore; a
# hostNetwork pod reaches the API with plain in-cluster config. Uses namespaces smoke, smoke-cm and
# smoke-cm-restored (recreated each run; left deleting at the end).
# Container logs: /var/log/pods/<namespace>_<pod>_<uid>/<container>/0.log (or `kubectl logs`).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ -f "$RUN/env" ] || die "no stack env at $RUN/env: run hack/stack/up.sh"
# shellcheck source=/dev/null # written by up.sh
. "$RUN/env"
NS=smoke
passed=0

pass() {
  passed=$((passed + 1))
  log "ok $passed: $*"
}
fail() {
  log "FAIL: $*"
  echo "smoke: $passed passed, 1 failed"
  exit 1
}
# waitjp KIND NAME JSONPATH WANT SECONDS [NAMESPACE]
waitjp() {
  local ns=${6:-$NS} i
  for ((i = 0; i < $5; i++)); do
    [ "$(kctl -n "$ns" get "$1" "$2" -o jsonpath="$3" 2> /dev/null)" = "$4" ] && return 0
    sleep 1
  done
  kctl -n "$ns" describe "$1" "$2" 2>&1 | tail -20 >&2
  return 1
}
volume_handle() {
  kctl get pv "$(kctl -n $NS get pvc "$1" -o jsonpath='{.spec.volumeName}')" -o jsonpath='{.spec.csi.volumeHandle}'
}

for ns in "$NS" smoke-cm smoke-cm-restored; do
  kctl delete ns $ns --ignore-not-found --wait=true --timeout=120s > /dev/null
done
kctl create ns $NS > /dev/null
waitfor "default ServiceAccount in $NS" 30 kctl -n $NS get sa default || fail "no default ServiceAccount"

# 1. PVC binds
kctl apply -f - > /dev/null << EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: $NS}
spec: {accessModes: [ReadWriteOnce], storageClassName: $STORAGE_CLASS, resources: {requests: {storage: 1Gi}}}
EOF
waitjp pvc data '{.status.phase}' Bound 60 || fail "PVC data not Bound"
VH=$(volume_handle data)
pass "PVC bound (volume $VH)"

# 2. a scheduled (no nodeName) hostNetwork pod writes into it
kctl apply -f - > /dev/null << EOF
apiVersion: v1
kind: Pod
metadata: {name: writer, namespace: $NS}
spec:
  hostNetwork: true
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: w
    image: $BUSYBOX_IMAGE
    imagePullPolicy: Never
    command: ["/bin/busybox", "sh", "-c", "echo written-by-pod > /data/payload.txt; exec /bin/busybox sleep 3600"]
    volumeMounts: [{name: d, mountPath: /data}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]
EOF
waitjp pod writer '{.status.phase}' Running 60 || fail "pod writer not Running"
[ "$(kctl -n $NS get pod writer -o jsonpath='{.spec.nodeName}')" = "$NODE_NAME" ] || fail "writer not scheduled to $NODE_NAME"
waitfor "payload in the volume" 20 grep -qx written-by-pod "$CSI_STATEDIR/volumes/$VH/payload.txt" ||
  fail "payload.txt not in $CSI_STATEDIR/volumes/$VH"
pass "scheduled hostNetwork pod wrote into the PVC"

# 3. snapshot, 4. PVC from the snapshot has the data
kctl apply -f - > /dev/null << EOF
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: snap, namespace: $NS}
spec: {volumeSnapshotClassName: $SNAPSHOT_CLASS, source: {persistentVolumeClaimName: data}}
EOF
waitjp volumesnapshot snap '{.status.readyToUse}' true 60 || fail "VolumeSnapshot snap not ready"
pass "VolumeSnapshot ready"
kctl apply -f - > /dev/null << EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: restored, namespace: $NS}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: $STORAGE_CLASS
  resources: {requests: {storage: 1Gi}}
  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: snap}
EOF
waitjp pvc restored '{.status.phase}' Bound 60 || fail "PVC restored not Bound"
RVH=$(volume_handle restored)
grep -qx written-by-pod "$CSI_STATEDIR/volumes/$RVH/payload.txt" || fail "restored volume $RVH lacks payload.txt"
pass "PVC from snapshot has the data"

# 5. a Block PVC is a block device in a pod
kctl apply -f - > /dev/null << EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: block, namespace: $NS}
spec: {accessModes: [ReadWriteOnce], volumeMode: Block, storageClassName: $STORAGE_CLASS, resources: {requests: {storage: 16Mi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: blockuser, namespace: $NS}
spec:
  hostNetwork: true
  automountServiceAccountToken: false
  restartPolicy: Never
  containers:
  - name: b
    image: $BUSYBOX_IMAGE
    imagePullPolicy: Never
    command: ["/bin/busybox", "sh", "-c", "test -b /dev/xvdb && echo block-ok | /bin/busybox dd of=/dev/xvdb conv=fsync"]
    volumeDevices: [{name: d, devicePath: /dev/xvdb}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: block}}]
EOF
waitjp pod blockuser '{.status.phase}' Succeeded 90 || fail "pod blockuser did not succeed"
BVH=$(volume_handle block)
[ "$(head -c 8 "$CSI_STATEDIR/volumes/$BVH.img")" = block-ok ] || fail "block image $BVH.img lacks the marker"
pass "Block PVC published as a device, data on the image"

# 6. Velero backup of a ConfigMap namespace, 7. its restore into another namespace
kctl create ns smoke-cm > /dev/null
kctl -n smoke-cm create configmap hello --from-literal=greeting=hi > /dev/null
BK=smoke-$(date +%s)
"$VELERO" -n velero backup create "$BK" --include-namespaces smoke-cm --wait > "$RUN/logs/smoke-backup.log" 2>&1 || true
waitjp backup "$BK" '{.status.phase}' Completed 5 velero || fail "backup $BK not Completed (log $RUN/logs/smoke-backup.log)"
pass "velero backup $BK Completed"
"$VELERO" -n velero restore create "$BK" --from-backup "$BK" --namespace-mappings smoke-cm:smoke-cm-restored \
  --wait > "$RUN/logs/smoke-restore.log" 2>&1 || true
waitjp restore "$BK" '{.status.phase}' Completed 5 velero || fail "restore $BK not Completed (log $RUN/logs/smoke-restore.log)"
[ "$(kctl -n smoke-cm-restored get cm hello -o jsonpath='{.data.greeting}')" = hi ] || fail "restored ConfigMap missing"
pass "velero restore $BK Completed, ConfigMap back"

# 8. in-cluster API access from a hostNetwork pod (Service 127.0.100.1:443 -> socat relay -> apiserver)
kctl apply -f - > /dev/null << EOF
apiVersion: v1
kind: Pod
metadata: {name: apiclient, namespace: $NS}
spec:
  hostNetwork: true
  restartPolicy: Never
  containers: [{name: c, image: "$KUBECTL_IMAGE", imagePullPolicy: Never, command: ["/kubectl", "auth", "whoami"]}]
EOF
waitjp pod apiclient '{.status.phase}' Succeeded 60 || fail "pod apiclient did not succeed"
PODLOG=/var/log/pods/${NS}_apiclient_$(kctl -n $NS get pod apiclient -o jsonpath='{.metadata.uid}')/c/0.log
grep -q "system:serviceaccount:$NS:default" "$PODLOG" || fail "$PODLOG lacks the pod's ServiceAccount"
pass "in-cluster API access from a hostNetwork pod"

kctl delete ns $NS smoke-cm smoke-cm-restored --wait=false > /dev/null
echo "smoke: $passed passed, 0 failed"
