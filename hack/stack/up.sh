#!/usr/bin/env bash
# up.sh: start the local stack from the binaries build.sh made, all as host processes on 127.0.0.1:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the test CSI driver + snapshot-controller,
# csi-snapshotter, csi-snapshot-metadata (changed block tracking: gRPC with TLS on 127.0.0.1:50051, its
# SnapshotMetadataService named after the driver), csi-provisioner, MinIO, containerd + kubelet (node
# snapmove-node), and the stack's host-network admission webhook (hostnet). Then the Velero server runs
# in the cluster as users run it: the Deployment of Velero's helm chart (velero.yaml), with
# velero-plugin-for-aws and snapmove loaded through their images' initContainers.
#
#   hack/stack/up.sh                      # then: . /tmp/snapmove-stack/env
#   SNAPMOVE_BINARY=/path/snapmove hack/stack/up.sh   # the binary for snapmove's image (default bin/snapmove)
#   VELERO_FEATURES=EnableCSI hack/stack/up.sh        # Velero server --features (default: none)
#   VELERO_NODE_AGENT=true hack/stack/up.sh           # also Velero's node-agent DaemonSet (default: off)
#   SNAPMOVE_STACK_STORES=gcs hack/stack/up.sh        # also GCS (build.sh with the same value first):
#       fake-gcs-server on 127.0.0.1:4443 (bucket velero-gcs), Velero's GCP plugin, BSL gcs, STORAGE_EMULATOR_HOST
#       for Velero's server and the mover; $RUN/env then has SNAPMOVE_GCS_EMULATOR and SNAPMOVE_GCS_CREDENTIALS
#   SNAPMOVE_STACK_STORES="gcs azure" hack/stack/up.sh  # also Azure: Azurite on 127.0.0.1:10000, named
#       devstoreaccount1.blob.localhost by a line in /etc/hosts (down.sh removes it), container velero-azure,
#       secret azure-credentials, BSL azure (Unavailable: no Velero Azure plugin; snapmove's own path uses it);
#       $RUN/env then has SNAPMOVE_AZURE_ACCOUNT, SNAPMOVE_AZURE_KEY and SNAPMOVE_AZURE_DOMAIN
#   SNAPMOVE_STACK_STORES=irsa hack/stack/up.sh       # also workload identity on S3, as EKS IRSA: EKS's pod identity
#       webhook on 127.0.0.1:9444, MinIO answering STS AssumeRoleWithWebIdentity for tokens of the API server's
#       issuer; $RUN/env then has SNAPMOVE_IRSA_ROLE_ARN and SNAPMOVE_IRSA_STS_ENDPOINT
#
# Takes ~25 s (Velero's Deployment is up ~6 s after the kubelet). Writes $RUN/env (export lines
# for tests). Refuses to start over a live stack; wipes what a stopped one left behind. Stop with
# down.sh. Logs: $RUN/logs/<process>.log.
#
# Node networking: pods must use hostNetwork. containerd gets a CNI config with only the `loopback`
# plugin, so the runtime reports NetworkReady and the node goes Ready honestly (the kubelet's own
# condition; nothing is patched). The scheduler then places pods normally (no nodeName needed). A pod
# without hostNetwork fails at sandbox creation, because that network gives it no eth0 address.
# The service CIDR is 127.0.100.0/24 and a socat relay forwards 127.0.100.1:443 (the `kubernetes`
# Service) to the apiserver, so hostNetwork pods reach the API with plain in-cluster config.
# Pods that do not ask for host networking get it from hostnet, a mutating admission webhook on
# 127.0.0.1:9443 (hack/tools/hostnet): Velero's own pods (its server, node-agent, maintenance Jobs, its
# data mover pods) then run unmodified.
# `kubectl logs/exec/attach` work through the Node address set below; container logs are also in
# /var/log/pods/<namespace>_<pod>_<uid>/<container>/0.log.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
stores > /dev/null # dies on an unknown name in SNAPMOVE_STACK_STORES

for b in etcd etcdctl containerd runc ctr socat openssl losetup; do
  command -v $b > /dev/null || die "$b not found: run hack/stack/build.sh (it installs the apt packages)"
done
[ -x /usr/lib/cni/loopback ] || die "/usr/lib/cni/loopback not found: run hack/stack/build.sh"
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl snapshot-controller csi-snapshotter \
  csi-snapshot-metadata csi-provisioner velero velero-plugin-for-aws minio kopia s3mb csidriver hostnet imgtool; do
  [ -x "$STACK_BIN/$b" ] || die "$STACK_BIN/$b missing: run hack/stack/build.sh"
done
IMAGES="pause busybox kubectl velero velero-plugin-for-aws"
if store_on gcs; then
  for b in fake-gcs-server velero-plugin-for-gcp; do
    [ -x "$STACK_BIN/$b" ] || die "$STACK_BIN/$b missing: run SNAPMOVE_STACK_STORES=gcs hack/stack/build.sh"
  done
  IMAGES="$IMAGES velero-plugin-for-gcp"
fi
if store_on azure; then
  command -v node > /dev/null || die "node not found (Azurite is a Node.js program)"
  for b in azurite-blob azmc; do
    [ -x "$STACK_BIN/$b" ] || die "$STACK_BIN/$b missing: run SNAPMOVE_STACK_STORES=azure hack/stack/build.sh"
  done
fi
if store_on irsa; then
  [ -x "$STACK_BIN/podidentity" ] || die "$STACK_BIN/podidentity missing: run SNAPMOVE_STACK_STORES=irsa hack/stack/build.sh"
fi
for i in $IMAGES; do [ -s "$STACK_IMAGES/$i.tar" ] || die "$STACK_IMAGES/$i.tar missing: run hack/stack/build.sh${SNAPMOVE_STACK_STORES:+ with SNAPMOVE_STACK_STORES=$SNAPMOVE_STACK_STORES}"; done
[ -s "$STACK_MANIFESTS/velero-crds.yaml" ] || die "$STACK_MANIFESTS/velero-crds.yaml missing: run hack/stack/build.sh"
[ -f "$STACK_MANIFESTS/sms-crd/.done" ] || die "$STACK_MANIFESTS/sms-crd/ missing: run hack/stack/build.sh"
SNAPMOVE_BINARY=${SNAPMOVE_BINARY:-$REPO_ROOT/bin/snapmove}
[ -x "$SNAPMOVE_BINARY" ] || die "$SNAPMOVE_BINARY missing: run make build (Velero loads snapmove from its image)"

# --- refuse a live stack; wipe a stopped one ---
for n in $STACK_PROCS; do
  if p=$(pid_of "$n"); then die "$n is still running (pid $p) in $RUN: run hack/stack/down.sh first"; fi
done
if [ -e "$RUN" ]; then
  if [ ! -f "$RUN/.snapmove-stack" ] && [ -n "$(ls -A "$RUN")" ]; then
    die "$RUN exists and is not a snapmove stack run dir; refusing to wipe it"
  fi
fi
host_cleanup || die "could not clean up after the previous stack (see above)"
[ -z "$(mounts_under "$RUN")" ] || die "mounts remain under $RUN"
rm -rf "$RUN"
ports="2379 2380 2381 6443 9000 9001 9443 10248 10250 10257 10259 8085 8095 6060 $SMS_PORT ${SMS_HTTP##*:}"
if store_on gcs; then ports="$ports ${GCS_EMULATOR##*:}"; fi
if store_on azure; then ports="$ports $AZURE_PORT"; fi
for port in $ports; do
  if (echo > "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then die "127.0.0.1:$port is in use by another process"; fi
done
if (echo > /dev/tcp/127.0.100.1/443) 2> /dev/null; then die "127.0.100.1:443 is in use by another process"; fi
mkdir -p "$RUN"/{pids,logs,pki,etcd,csi,csi-data,velero,s3/minio,containerd/cni} "$KUBELET_ROOT/plugins_registry"
touch "$RUN/.snapmove-stack"
stores > "$RUN/velero/stores" # what this stack runs with: velero_apply, install-mover.sh (stack_has_store)
export KUBECONFIG=$RUN/kubeconfig
P=$RUN/pki

# --- PKI ---
(
  cd "$P"
  openssl genrsa -out sa.key 2048
  openssl rsa -in sa.key -pubout -out sa.pub
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj /CN=snapmove-stack-ca
  openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver
  printf 'subjectAltName=IP:127.0.0.1,IP:127.0.100.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n' > ext.cnf
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 -extfile ext.cnf
  echo "snapmove-admin-token,admin,admin-uid,system:masters" > tokens.csv
  openssl req -newkey rsa:2048 -nodes -keyout hostnet.key -out hostnet.csr -subj /CN=hostnet
  printf 'subjectAltName=IP:127.0.0.1\n' > hostnet.cnf
  openssl x509 -req -in hostnet.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out hostnet.crt -days 3650 -extfile hostnet.cnf
) > "$RUN/logs/pki.log" 2>&1 || die "openssl failed (log $RUN/logs/pki.log)"
cat > "$KUBECONFIG" << EOF
apiVersion: v1
kind: Config
clusters: [{name: snapmove, cluster: {server: "https://127.0.0.1:6443", certificate-authority: "$P/ca.crt"}}]
users: [{name: admin, user: {token: snapmove-admin-token}}]
contexts: [{name: snapmove, context: {cluster: snapmove, user: admin}}]
current-context: snapmove
EOF
log "PKI written"

# --- etcd, and what does not need the API (the other stores, containerd) while the apiserver boots ---
start etcd etcd --name snapmove --data-dir "$RUN/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster snapmove=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381

if store_on gcs; then
  mkdir -p "$RUN/gcs/$GCS_BUCKET" # fake-gcs-server's filesystem backend: a bucket is a directory under its root
  gcs_start
fi
if store_on azure; then
  # The account's key: random per stack, as a storage account's; Azurite takes it from AZURITE_ACCOUNTS.
  openssl rand -base64 32 > "$RUN/velero/azure-key"
  azurite_start
  azure_hosts_add # before any pod starts: a hostNetwork pod's /etc/hosts is the node's, copied at its start
fi

C=$RUN/containerd
# restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, so runc cannot set the pause container's
# negative oom_score_adj and every sandbox would fail ("can't get final child's PID from pipe").
cat > "$C/config.toml" << EOF
version = 2
root = "$C/root"
state = "$C/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$C/cni"
EOF
# loopback-only network (see the header): makes the runtime network ready without a pod network.
cat > "$C/cni/10-snapmove-loopback.conflist" << 'EOF'
{"cniVersion": "0.4.0", "name": "snapmove-loopback", "plugins": [{"type": "loopback"}]}
EOF
start containerd containerd --config "$C/config.toml"

waitup etcd 30 env ETCDCTL_API=3 etcdctl --endpoints http://127.0.0.1:2379 endpoint health
log "etcd up"

# --- apiserver (+ service relay), controller-manager, scheduler ---
start kube-apiserver "$STACK_BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=6443 \
  --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
  --token-auth-file="$P/tokens.csv" --authorization-mode=Node,RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --service-cluster-ip-range=127.0.100.0/24 --allow-privileged=true --endpoint-reconciler-type=none \
  --enable-admission-plugins=NamespaceLifecycle,ServiceAccount,DefaultStorageClass,PersistentVolumeClaimResize
start svc-relay socat TCP-LISTEN:443,bind=127.0.100.1,fork,reuseaddr TCP:127.0.0.1:6443
start hostnet "$STACK_BIN/hostnet" -listen 127.0.0.1:9443 -cert "$P/hostnet.crt" -key "$P/hostnet.key"

waitup containerd 30 test -S "$CONTAINERD_SOCK"
for i in $IMAGES; do
  ctr -a "$CONTAINERD_SOCK" -n k8s.io images import "$STACK_IMAGES/$i.tar" > "$RUN/logs/import-$i.log" 2>&1 ||
    die "importing $i.tar failed (log $RUN/logs/import-$i.log)"
done
log "containerd up, images imported"

waitup kube-apiserver 90 kctl get --raw /readyz
log "apiserver ready"
waitup hostnet 30 curl -sf --cacert "$P/ca.crt" https://127.0.0.1:9443/healthz
kctl apply -f - > /dev/null << EOF
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: snapmove-stack-hostnet}
webhooks:
  - name: hostnet.stack.snapmove.io
    clientConfig: {url: "https://127.0.0.1:9443/mutate", caBundle: "$(base64 -w0 < "$P/ca.crt")"}
    rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}]
    failurePolicy: Fail
    sideEffects: None
    admissionReviewVersions: [v1]
    timeoutSeconds: 5
EOF
log "hostnet admission webhook registered"

# --- workload identity (irsa): EKS's pod identity webhook, and the issuer's discovery open to MinIO ---
if store_on irsa; then
  # MinIO reads the issuer's OpenID discovery and keys anonymously, as AWS STS reads a cluster's public issuer;
  # Kubernetes grants that read to service accounts only by default.
  kctl create clusterrolebinding snapmove-stack-issuer-discovery --clusterrole=system:service-account-issuer-discovery \
    --group=system:unauthenticated > /dev/null
  start pod-identity-webhook "$STACK_BIN/podidentity" -listen "$IRSA_WEBHOOK" -cert "$P/hostnet.crt" -key "$P/hostnet.key" \
    -kubeconfig "$RUN/kubeconfig" -token-audience "$IRSA_AUDIENCE"
  waitup pod-identity-webhook 30 curl -sf --cacert "$P/ca.crt" "https://$IRSA_WEBHOOK/healthz"
  # As upstream's deploy/mutatingwebhook.yaml registers it.
  kctl apply -f - > /dev/null << EOF
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: pod-identity-webhook}
webhooks:
  - name: pod-identity-webhook.amazonaws.com
    clientConfig: {url: "https://$IRSA_WEBHOOK/mutate", caBundle: "$(base64 -w0 < "$P/ca.crt")"}
    objectSelector: {matchExpressions: [{key: eks.amazonaws.com/skip-pod-identity-webhook, operator: DoesNotExist}]}
    rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}]
    failurePolicy: Ignore
    sideEffects: None
    admissionReviewVersions: [v1beta1]
EOF
  log "EKS pod identity webhook registered on $IRSA_WEBHOOK; MinIO trusts the issuer for audience $IRSA_AUDIENCE"
fi
minio_start # after the API server: with irsa MinIO reads the issuer's discovery at start
start kube-controller-manager "$STACK_BIN/kube-controller-manager" --kubeconfig="$KUBECONFIG" \
  --authentication-kubeconfig="$KUBECONFIG" --authorization-kubeconfig="$KUBECONFIG" \
  --bind-address=127.0.0.1 --secure-port=10257 --leader-elect=false --use-service-account-credentials=false \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --controllers='*,-nodeipam,-cloud-node-lifecycle,-service,-route,-bootstrapsigner,-tokencleaner'
start kube-scheduler "$STACK_BIN/kube-scheduler" --kubeconfig="$KUBECONFIG" \
  --authentication-kubeconfig="$KUBECONFIG" --authorization-kubeconfig="$KUBECONFIG" \
  --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false

# --- CRDs: snapshot (incl. group snapshot), SnapshotMetadataService (changed block tracking) + Velero ---
kctl apply -f "$STACK_MANIFESTS/snapshot-crds/" > "$RUN/logs/crds.log"
kctl apply -f "$STACK_MANIFESTS/sms-crd/" >> "$RUN/logs/crds.log"
kctl apply -f "$STACK_MANIFESTS/velero-crds.yaml" >> "$RUN/logs/crds.log"
kctl wait --for condition=established --timeout=60s crd --all > /dev/null
log "CRDs established"

# --- CSI: test driver (serves kubelet plugin registration itself) + sidecars ---
start csidriver "$STACK_BIN/csidriver" --endpoint "unix://$RUN/csi/csi.sock" --drivername "$CSI_DRIVER" \
  --nodeid "$NODE_NAME" --statedir "$RUN/csi-data" \
  --kubelet-registration-path "$KUBELET_ROOT/plugins_registry/$CSI_DRIVER-reg.sock"
waitup csidriver 30 test -S "$RUN/csi/csi.sock"
# SNAPSHOT_API_QPS: the client-side rate limit of the snapshot-controller and csi-snapshotter
# (--kube-api-qps, burst twice that). Unset: their defaults, 5 and 10, as upstream's manifests
# deploy them; at a few snapshots a second that throttle is most of a backup's cost per PVC
# (README "Fixed cost per volume").
snapshot_qps=()
if [[ -n ${SNAPSHOT_API_QPS:-} ]]; then
  snapshot_qps=(--kube-api-qps="$SNAPSHOT_API_QPS" --kube-api-burst="$((SNAPSHOT_API_QPS * 2))")
fi
start snapshot-controller "$STACK_BIN/snapshot-controller" --kubeconfig="$KUBECONFIG" --leader-election=false "${snapshot_qps[@]}"
start csi-snapshotter "$STACK_BIN/csi-snapshotter" --kubeconfig="$KUBECONFIG" --csi-address="$RUN/csi/csi.sock" \
  --leader-election=false "${snapshot_qps[@]}"
# Changed block tracking: external-snapshot-metadata's sidecar serves the Kubernetes-side SnapshotMetadata API
# (VolumeSnapshot names, ServiceAccount tokens) over TLS and calls the driver's CSI SnapshotMetadata service on
# the same socket. Its gRPC server listens on 127.0.0.1:$SMS_PORT (build.sh overlays its listen call: it has no flag for the host); the
# certificate is the stack's loopback one (IP SAN 127.0.0.1). As the admin it may do the TokenReviews,
# SubjectAccessReviews and snapshot reads it needs, so it gets no RBAC of its own. It takes the audience from
# the SnapshotMetadataService below (no --audience), as a deployment without that flag does.
start csi-snapshot-metadata "$STACK_BIN/csi-snapshot-metadata" --kubeconfig="$KUBECONFIG" \
  --csi-address="$RUN/csi/csi.sock" --port="$SMS_PORT" --tls-cert="$P/hostnet.crt" --tls-key="$P/hostnet.key" \
  --http-endpoint="$SMS_HTTP"
# Topology=false: the StorageClass is Immediate, so provisioning never waits for a node anyway.
start csi-provisioner "$STACK_BIN/csi-provisioner" --kubeconfig="$KUBECONFIG" --csi-address="$RUN/csi/csi.sock" \
  --leader-election=false --feature-gates=Topology=false --extra-create-metadata
kctl apply -f - > /dev/null << EOF
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {name: $CSI_DRIVER}
spec: {attachRequired: false, podInfoOnMount: true, volumeLifecycleModes: [Persistent], fsGroupPolicy: File}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: $STORAGE_CLASS, annotations: {storageclass.kubernetes.io/is-default-class: "true"}}
provisioner: $CSI_DRIVER
reclaimPolicy: Delete
volumeBindingMode: Immediate
allowVolumeExpansion: true
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata: {name: $SNAPSHOT_CLASS, labels: {velero.io/csi-volumesnapshot-class: "true"}}
driver: $CSI_DRIVER
deletionPolicy: Delete
---
apiVersion: cbt.storage.k8s.io/v1beta1
kind: SnapshotMetadataService
metadata: {name: $CSI_DRIVER}
spec: {address: "127.0.0.1:$SMS_PORT", audience: $CBT_AUDIENCE, caCert: "$(base64 -w0 < "$P/ca.crt")"}
EOF
# /health is ok once the sidecar has found SNAPSHOT_METADATA_SERVICE among the driver's capabilities.
waitup csi-snapshot-metadata 30 curl -sf "http://$SMS_HTTP/health"
log "CSI driver and sidecars started (snapshot metadata on 127.0.0.1:$SMS_PORT, audience $CBT_AUDIENCE)"

# --- kubelet ---
cat > "$RUN/kubelet-config.yaml" << EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
resolvConf: ""
hairpinMode: none
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
enforceNodeAllocatable: []
EOF
start kubelet "$STACK_BIN/kubelet" --config="$RUN/kubelet-config.yaml" --kubeconfig="$KUBECONFIG" \
  --hostname-override="$NODE_NAME" --node-ip=127.0.0.1 --root-dir="$KUBELET_ROOT"

# --- S3 bucket, Velero objects (while the kubelet registers) ---
waitup minio 60 curl -sf http://127.0.0.1:9000/minio/health/live
"$STACK_BIN/s3mb" 127.0.0.1:9000 minioadmin minioadmin velero 2> "$RUN/logs/s3mb.log" || die "creating bucket velero failed"
log "MinIO up, bucket velero"
printf '[default]\naws_access_key_id = minioadmin\naws_secret_access_key = minioadmin\n' > "$RUN/velero/credentials"
kctl create namespace velero > /dev/null
kctl -n velero create secret generic cloud-credentials --from-file=cloud="$RUN/velero/credentials" > /dev/null
if store_on gcs; then
  waitup fake-gcs-server 60 curl -sf "http://$GCS_EMULATOR/storage/v1/b/$GCS_BUCKET"
  # A service account key as Google issues them, for a service account that does not exist: Velero's GCP
  # plugin refuses to start without one (a "service_account" JSON with client_email and private_key, a real RSA
  # key for when it signs URLs), kopia's CLI wants the file to exist. The emulator checks no credentials:
  # STORAGE_EMULATOR_HOST makes Google's client send none (docs/stores-on-the-stack.md sec. 1, 2).
  openssl genrsa -out "$P/gcs-sa.key" 2048 2> "$RUN/logs/gcs-credentials.log" || die "openssl failed (log $RUN/logs/gcs-credentials.log)"
  cat > "$RUN/velero/gcs-credentials.json" << EOF
{
  "type": "service_account",
  "project_id": "snapmove-stack",
  "private_key_id": "$(openssl rand -hex 20)",
  "private_key": "$(awk '{printf "%s\\n", $0}' "$P/gcs-sa.key")",
  "client_email": "snapmove@snapmove-stack.iam.gserviceaccount.com",
  "client_id": "100000000000000000001",
  "token_uri": "http://$GCS_EMULATOR/token"
}
EOF
  kctl -n velero create secret generic gcs-credentials --from-file=cloud="$RUN/velero/gcs-credentials.json" > /dev/null
  log "fake-gcs-server up on $GCS_EMULATOR, bucket $GCS_BUCKET, secret velero/gcs-credentials"
fi
if store_on azure; then
  waitup azurite 60 bash -c "(echo > /dev/tcp/127.0.0.1/$AZURE_PORT) 2> /dev/null"
  "$STACK_BIN/azmc" "http://$AZURE_HOST:$AZURE_PORT/" "$AZURE_ACCOUNT" "$(cat "$RUN/velero/azure-key")" "$AZURE_CONTAINER" \
    2> "$RUN/logs/azmc.log" || die "creating container $AZURE_CONTAINER failed (log $RUN/logs/azmc.log)"
  # Velero's Azure plugin's key-based credentials file: a dotenv file, the key under the name the BSL's
  # storageAccountKeyEnvVar gives, and the cloud (velero-plugin-for-microsoft-azure README, "Option 3").
  printf 'AZURE_STORAGE_ACCOUNT_ACCESS_KEY=%s\nAZURE_CLOUD_NAME=AzurePublicCloud\n' "$(cat "$RUN/velero/azure-key")" > "$RUN/velero/azure-credentials"
  kctl -n velero create secret generic azure-credentials --from-file=cloud="$RUN/velero/azure-credentials" > /dev/null
  log "Azurite up on 127.0.0.1:$AZURE_PORT as $AZURE_HOST, container $AZURE_CONTAINER, secret velero/azure-credentials"
fi
"$REPO_ROOT/hack/image.sh" "$SNAPMOVE_BINARY" > "$RUN/logs/snapmove-image.log" 2>&1 ||
  die "building snapmove's image failed (log $RUN/logs/snapmove-image.log)"
log "snapmove image built from $SNAPMOVE_BINARY and imported"

waitup kubelet 60 sh -c "'$STACK_BIN/kubectl' get csinode $NODE_NAME -o jsonpath='{.spec.drivers[*].name}' | grep -qw $CSI_DRIVER"
waitup kubelet 60 kctl wait --for=condition=Ready --timeout=1s node/$NODE_NAME
# The kubelet registers the node with the node.kubernetes.io/not-ready:NoSchedule taint; KCM's
# nodelifecycle controller lifts it once the node is Ready. Until then the scheduler places nothing.
waitup kube-controller-manager 60 sh -c "! '$STACK_BIN/kubectl' get node $NODE_NAME -o jsonpath='{.spec.taints[*].key}' | grep -q ."
# The kubelet refuses a loopback node IP ("nodeIP can't be loopback address") and so sets no
# addresses at all, and the apiserver then has no way to its kubelet: no `kubectl logs`, exec
# or attach (restore-files --to-pvc streams through attach). The stack's kubelet listens on
# 127.0.0.1 only, so the address is set here; the kubelet leaves the field alone (its address
# setter fails before it writes).
kctl patch node "$NODE_NAME" --subresource=status --type=merge \
  -p '{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}]}}' > /dev/null
log "kubelet up: node $NODE_NAME Ready, CSINode lists $CSI_DRIVER"

# --- Velero server: the helm chart's objects, plugins through initContainers ---
velero_apply
log "velero up (Deployment velero/velero; features: '${VELERO_FEATURES:-}', node-agent: ${VELERO_NODE_AGENT:-false}), BSL default Available"
if store_on gcs; then
  # The seed's GCS location, as users write it (provider gcp, the key in a secret); nothing in it points
  # at the emulator: Velero's Deployment has STORAGE_EMULATOR_HOST (velero.yaml).
  kctl apply -f - > /dev/null << EOF
apiVersion: velero.io/v1
kind: BackupStorageLocation
metadata: {name: $GCS_BSL, namespace: velero}
spec:
  provider: velero.io/gcp
  default: false
  accessMode: ReadWrite
  credential: {name: gcs-credentials, key: cloud}
  objectStorage: {bucket: $GCS_BUCKET, prefix: velero}
EOF
  if ! waitfor "Velero to validate BSL $GCS_BSL" 120 sh -c "'$STACK_BIN/kubectl' -n velero get bsl $GCS_BSL -o jsonpath='{.status.phase}' | grep -qx Available"; then
    kctl -n velero get bsl "$GCS_BSL" -o yaml >&2 || true
    tail -20 "$RUN/logs/fake-gcs-server.log" >&2 || true
    die "BSL $GCS_BSL did not become Available (Velero's log: /var/log/pods/velero_velero-*/)"
  fi
  log "BSL $GCS_BSL Available (provider velero.io/gcp, bucket $GCS_BUCKET on fake-gcs-server)"
fi
if store_on azure; then
  # An Azure location as users write it for a storage account key, with the account's blob endpoint given
  # (storageAccountURI, which Velero and snapmove both honour). Velero marks it Unavailable (no Azure
  # plugin: it is not on the module proxy), so no Velero backup goes to it; snapmove's mover does not look
  # at the phase, and its DataUploads and DataDownloads to it are what the stack can run.
  kctl apply -f - > /dev/null << EOF
apiVersion: velero.io/v1
kind: BackupStorageLocation
metadata: {name: $AZURE_BSL, namespace: velero}
spec:
  provider: velero.io/azure
  default: false
  accessMode: ReadWrite
  credential: {name: azure-credentials, key: cloud}
  objectStorage: {bucket: $AZURE_CONTAINER, prefix: velero}
  config:
    resourceGroup: snapmove-stack
    storageAccount: $AZURE_ACCOUNT
    storageAccountKeyEnvVar: AZURE_STORAGE_ACCOUNT_ACCESS_KEY
    storageAccountURI: http://$AZURE_HOST:$AZURE_PORT
EOF
  log "BSL $AZURE_BSL created (provider velero.io/azure, container $AZURE_CONTAINER on Azurite; Unavailable to Velero)"
fi

cat > "$RUN/env" << EOF
export KUBECONFIG=$KUBECONFIG
export VELERO_NAMESPACE=velero
export VELERO=$STACK_BIN/velero
export KOPIA=$STACK_BIN/kopia
export KUBECTL=$STACK_BIN/kubectl
export HELM=$STACK_BIN/helm
export S3_ENDPOINT=127.0.0.1:9000
export AWS_ACCESS_KEY_ID=minioadmin
export AWS_SECRET_ACCESS_KEY=minioadmin
export BUCKET=velero
export BSL_PREFIX=backups
export CSI_STATEDIR=$RUN/csi-data
export CSI_DRIVER=$CSI_DRIVER
export STACK_RUN=$RUN
export STACK_BIN=$STACK_BIN
export STORAGE_CLASS=$STORAGE_CLASS
export SNAPSHOT_CLASS=$SNAPSHOT_CLASS
export NODE_NAME=$NODE_NAME
EOF
if store_on gcs; then
  # Not STORAGE_EMULATOR_HOST itself: a test or user gives it to the commands that should reach GCS.
  cat >> "$RUN/env" << EOF
export SNAPMOVE_GCS_EMULATOR=$GCS_EMULATOR
export SNAPMOVE_GCS_CREDENTIALS=$RUN/velero/gcs-credentials.json
EOF
fi
if store_on irsa; then
  cat >> "$RUN/env" << EOF
export SNAPMOVE_IRSA_ROLE_ARN=$(irsa_role_arn)
export SNAPMOVE_IRSA_STS_ENDPOINT=$IRSA_STS_ENDPOINT
EOF
fi
if store_on azure; then
  cat >> "$RUN/env" << EOF
export SNAPMOVE_AZURE_ACCOUNT=$AZURE_ACCOUNT
export SNAPMOVE_AZURE_KEY=$(cat "$RUN/velero/azure-key")
export SNAPMOVE_AZURE_DOMAIN=$AZURE_DOMAIN
EOF
fi
log "stack up; environment: . $RUN/env"
