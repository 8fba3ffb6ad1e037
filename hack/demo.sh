#!/usr/bin/env bash
# demo.sh: the local demo of snapmove (what `make demo` runs), on a fresh machine.
#
#   1. builds what is missing (the local Kubernetes + CSI + Velero + MinIO stack, snapmove)
#   2. starts the stack; Velero runs as the helm chart's Deployment and loads snapmove through its
#      image's initContainer (`snapmove install /target`); the mover is installed from its chart (charts/snapmove)
#   3. creates namespace "demo" with a PVC that a pod fills with a postgres-like tree
#   4. velero backup create --snapshot-move-data, showing the DataUpload's progress
#   5. deletes the namespace, then velero restore create --from-backup
#   6. verifies every restored file byte for byte (sha256 checksums, checked inside a pod
#      that mounts the restored PVC), then lists the backup with the kopia CLI as the seed does
#
# Exits non-zero on any failure. The stack stays up afterwards (hack/stack/down.sh stops it).
# DEMO_SCALE scales the data set (default 0.5: 2,178 files in 33 dirs, 572 MB, a few files over 50 MB;
# 1 is the seed's size: 2,500 files, 1.15 GB).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
. hack/stack/lib.sh
SCALE=${DEMO_SCALE:-0.5}
NS=demo
PVC=data-postgres-0
B=demo-$(date +%H%M%S)
step() { echo; echo "[$(elapsed)] ==> $*"; }

step "Building the local stack (cached after the first run; the first build compiles Kubernetes, Velero and MinIO: ~17 min on 2 cores)"
hack/stack/build.sh | sed 's/^/    /'
step "Building snapmove and the demo's data generator"
make -s build
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/datagen ./test/datagen/cmd/datagen

step "Starting the stack (Velero's Deployment loads snapmove through its image's initContainer)"
[ -f "$RUN/env" ] && pid_of kube-apiserver > /dev/null && hack/stack/down.sh > /dev/null
SNAPMOVE_BINARY=$REPO/bin/snapmove hack/stack/up.sh | sed 's/^/    /'
# shellcheck source=/dev/null # written by up.sh
. "$RUN/env"
k() { "$KUBECTL" "$@"; }
v() { "$VELERO" -n velero "$@"; }
hack/stack/image.sh docker.io/snapmove/datagen:1 "$STACK_IMAGES/datagen.tar" --entrypoint /datagen \
  bin/datagen=/datagen /bin/busybox=/bin/busybox | sed 's/^/    /'
step "Installing the mover from its chart (charts/snapmove)"
hack/install-mover.sh | sed 's/^/    /'
k -n velero get deployment velero -o jsonpath='{range .spec.template.spec.initContainers[*]}{.name}: {.image}{"\n"}{end}' |
  sed 's/^/    Velero initContainer /'

step "Namespace $NS: PVC $PVC, filled by a pod with a postgres-like tree (scale $SCALE)"
k create namespace $NS > /dev/null
k apply -f - > /dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $PVC, namespace: $NS, labels: {app.kubernetes.io/name: postgresql}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: $STORAGE_CLASS
  resources: {requests: {storage: 2Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: fill, namespace: $NS}
spec:
  hostNetwork: true
  automountServiceAccountToken: false
  restartPolicy: Never
  containers:
    - name: fill
      image: docker.io/snapmove/datagen:1
      imagePullPolicy: Never
      command: [/datagen, pg, /var/lib/postgresql/data/pgdata, "42", "$SCALE"]
      volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: $PVC}}]
YAML
k -n $NS wait --for=jsonpath='{.status.phase}'=Succeeded pod/fill --timeout=600s > /dev/null
k -n $NS delete pod fill --wait=true > /dev/null
# The "database": keeps the volume mounted while it is backed up, and comes back with the restore.
k apply -f - > /dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: postgres-0, namespace: $NS, labels: {app.kubernetes.io/name: postgresql}}
spec:
  hostNetwork: true
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
    - name: postgres
      image: docker.io/snapmove/datagen:1
      imagePullPolicy: Never
      command: [/bin/busybox, sleep, "86400"]
      volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: $PVC}}]
YAML
k -n $NS wait --for=condition=Ready pod/postgres-0 --timeout=300s > /dev/null
PV=$(k -n $NS get pvc $PVC -o jsonpath='{.spec.volumeName}')
VOL=$CSI_STATEDIR/volumes/$(k get pv "$PV" -o jsonpath='{.spec.csi.volumeHandle}')
(cd "$VOL" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$RUN/demo.sha256"
echo "    $(bin/datagen stats "$VOL")"
echo "    checksums of $(wc -l < "$RUN/demo.sha256") files recorded"

step "velero backup create $B -l app.kubernetes.io/name=postgresql --snapshot-move-data"
v backup create "$B" --include-namespaces $NS -l app.kubernetes.io/name=postgresql --snapshot-move-data > /dev/null
while :; do
  phase=$(k -n velero get backup "$B" -o jsonpath='{.status.phase}')
  k -n velero get datauploads -l velero.io/backup-name="$B" --no-headers \
    -o custom-columns='NAME:.metadata.name,PHASE:.status.phase,DONE:.status.progress.bytesDone,TOTAL:.status.progress.totalBytes,NODE:.status.node' 2>/dev/null |
    sed "s/^/    [$(elapsed)] backup $phase, dataupload /"
  case $phase in Completed) break ;; Failed|PartiallyFailed|FailedValidation) v backup logs "$B" | tail -20; die "backup $phase" ;; esac
  sleep 3
done
v backup get "$B" | sed 's/^/    /'
k -n velero get datauploads -l velero.io/backup-name="$B" | sed 's/^/    /'

step "Deleting namespace $NS (the PVC and its volume go with it)"
k delete namespace $NS --wait=true --timeout=180s > /dev/null
[ ! -d "$VOL" ] || die "volume $VOL still exists after the namespace was deleted"
echo "    gone: namespace $NS, PV $PV"

step "velero restore create --from-backup $B"
R=$B-restore
v restore create "$R" --from-backup "$B" > /dev/null
while :; do
  phase=$(k -n velero get restore "$R" -o jsonpath='{.status.phase}')
  k -n velero get datadownloads -l velero.io/restore-name="$R" --no-headers \
    -o custom-columns='NAME:.metadata.name,PHASE:.status.phase,DONE:.status.progress.bytesDone,TOTAL:.status.progress.totalBytes' 2>/dev/null |
    sed "s/^/    [$(elapsed)] restore $phase, datadownload /"
  case $phase in Completed) break ;; Failed|PartiallyFailed|FailedValidation) v restore logs "$R" | tail -20; die "restore $phase" ;; esac
  sleep 3
done
v restore get "$R" | sed 's/^/    /'

step "Verifying every restored file byte for byte, inside a pod that mounts the restored PVC"
k -n $NS wait --for=condition=Ready pod/postgres-0 --timeout=300s > /dev/null
k -n $NS create configmap checksums --from-file=sums="$RUN/demo.sha256" > /dev/null
k apply -f - > /dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: verify, namespace: $NS}
spec:
  hostNetwork: true
  automountServiceAccountToken: false
  restartPolicy: Never
  containers:
    - name: verify
      image: docker.io/snapmove/datagen:1
      imagePullPolicy: Never
      command: [/bin/busybox, sh, -c, "cd /var/lib/postgresql/data && /bin/busybox sha256sum -c -s /checks/sums && echo all files identical"]
      volumeMounts:
        - {name: data, mountPath: /var/lib/postgresql/data, readOnly: true}
        - {name: checks, mountPath: /checks}
  volumes:
    - {name: data, persistentVolumeClaim: {claimName: $PVC, readOnly: true}}
    - {name: checks, configMap: {name: checksums}}
YAML
for _ in $(seq 1 120); do
  phase=$(k -n $NS get pod verify -o jsonpath='{.status.phase}')
  case $phase in Succeeded|Failed) break ;; esac
  sleep 1
done
[ "$phase" = Succeeded ] || die "checksum verification pod: $phase"
echo "    $(wc -l < "$RUN/demo.sha256") files: sha256 identical (pod $NS/verify Succeeded)"

step "The backup in Velero's kopia repository, as the kopia CLI sees it"
KCFG=$(mktemp -d)
PREFIX=$BSL_PREFIX/kopia/$NS/
echo "    kopia repository connect s3 --bucket $BUCKET --prefix $PREFIX --endpoint $S3_ENDPOINT --disable-tls --readonly ..."
"$KOPIA" repository connect s3 --bucket "$BUCKET" --prefix "$PREFIX" --endpoint "$S3_ENDPOINT" --disable-tls \
  --access-key "$AWS_ACCESS_KEY_ID" --secret-access-key "$AWS_SECRET_ACCESS_KEY" --readonly \
  --password "$(k -n velero get secret velero-repo-credentials -o jsonpath='{.data.repository-password}' | base64 -d)" \
  --config-file "$KCFG/repo.config" --cache-directory "$KCFG/cache" > /dev/null 2>&1
echo "    kopia snapshot ls --all"
"$KOPIA" snapshot ls --all --config-file "$KCFG/repo.config" | sed 's/^/    /'
rm -rf "$KCFG"

step "What protection each PVC of backup $B got: snapmove report $B"
bin/snapmove report "$B" | sed 's/^/    /'
echo
echo "    snapmove list $B"
bin/snapmove list "$B" | sed 's/^/    /'

ONE=$(head -n 1 "$RUN/demo.sha256" | awk '{print $2}' | sed 's#^\./##')
step "One file back without a restore: snapmove restore-files $B $NS/$PVC $ONE --to DIR"
echo "    snapmove ls $B $NS/$PVC $(dirname "$ONE")"
bin/snapmove ls "$B" "$NS/$PVC" "$(dirname "$ONE")" | sed -n "1,5s/^/    /p"
FILES=$(mktemp -d)
bin/snapmove restore-files "$B" "$NS/$PVC" "$ONE" --to "$FILES" | sed 's/^/    /'
want=$(head -n 1 "$RUN/demo.sha256" | awk '{print $1}')
got=$(sha256sum "$FILES/$ONE" | awk '{print $1}')
[ "$want" = "$got" ] || die "restore-files: $ONE has sha256 $got, want $want"
echo "    sha256 of $ONE identical"
rm -rf "$FILES"

step "Done in $(elapsed): backup $B and restore $R Completed, $(wc -l < "$RUN/demo.sha256") files verified. The stack is still up; stop it with hack/stack/down.sh"
