#!/usr/bin/env bash
# build.sh: build every binary and image the local stack needs, from the Go module proxy and Debian apt only.
#
#   hack/stack/build.sh
#
# Output: $SNAPMOVE_CACHE/stack-<hash of versions.env>/{bin,images,manifests} (default cache
# $HOME/.cache/snapmove), outside the repo. Idempotent: pinned third-party binaries are built once per
# versions.env; the repo's own programs (test CSI driver, hack/tools, the kopia CLI from the snapmove
# module) are rebuilt every run, which costs seconds because go build skips up-to-date binaries.
# A cold build compiles for ~17 min on 2 cores and needs ~20 GB of disk (Go build + module cache).
# Builds run one at a time; each prints a heartbeat every 30 s. Build logs: $STACK_HOME/logs/build-*.log.
#
#   SNAPMOVE_STACK_STORES=gcs hack/stack/build.sh   # also the optional stores (lib.sh): gcs = fake-gcs-server,
#                                                   # velero-plugin-for-gcp and its image (a few minutes more)
#   SNAPMOVE_STACK_STORES="gcs azure" hack/stack/build.sh  # azure = Azurite (npm, into $STACK_HOME/azurite@VERSION)
#   SNAPMOVE_STACK_STORES="gcs azure irsa" ...              # irsa = EKS's pod identity webhook (hack/tools/kube)
#                                                   # and azmc (hack/tools); needs node and npm on PATH
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MIN_FREE_GB=${SNAPMOVE_MIN_FREE_GB:-20}
SRC=$STACK_HOME/src
mkdir -p "$STACK_BIN" "$STACK_IMAGES" "$STACK_MANIFESTS" "$SRC" "$STACK_HOME/logs"
exec 9> "$STACK_HOME/.build.lock"
flock -n 9 || die "another build.sh holds $STACK_HOME/.build.lock"
stores > /dev/null # dies on an unknown name in SNAPMOVE_STACK_STORES
log "stack $STACK_KEY: building into $STACK_HOME${SNAPMOVE_STACK_STORES:+ (stores: $(stores))}"

# --- apt ---
apt_install() {
  local missing=() p
  for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && { log "apt: all packages present"; return; }
  log "apt: installing ${missing[*]}"
  apt_get_install "$STACK_HOME/logs/apt.log" "${missing[@]}"
  log "apt: done"
}
apt_install
command -v go > /dev/null || die "go is not on PATH"

# --- helpers ---
need() { # need BIN...: true if any of the binaries is missing
  local b
  for b in "$@"; do [ -x "$STACK_BIN/$b" ] || return 0; done
  return 1
}

need_static() { # need_static BIN...: like need, and also true if one is dynamically linked (an older cache's)
  local b
  need "$@" && return 0
  for b in "$@"; do head -c 4096 "$STACK_BIN/$b" | grep -aq 'ld-linux' && return 0; done
  return 1
}

check_disk() {
  local d free
  for d in "$STACK_HOME" "$(go env GOCACHE)" "$(go env GOMODCACHE)"; do
    mkdir -p "$d"
    free=$(($(df --output=avail -k "$d" | tail -1) / 1024 / 1024))
    [ "$free" -ge "$MIN_FREE_GB" ] ||
      die "only ${free} GB free on the filesystem of $d; a cold stack build needs ~${MIN_FREE_GB} GB (set SNAPMOVE_MIN_FREE_GB to override)"
  done
}

# run_build NAME CMD...: run a build step with output to logs/build-NAME.log, a heartbeat every 30 s and
# a progress line with its duration at the end. On failure print the log tail and stop.
run_build() {
  local name=$1 logf=$STACK_HOME/logs/build-$1.log s rc=0 i=0
  shift
  s=$(date +%s)
  log "building $name ..."
  "$@" > "$logf" 2>&1 &
  local pid=$!
  while kill -0 $pid 2> /dev/null; do
    sleep 1
    i=$((i + 1))
    if ((i % 30 == 0)); then log "  ... still building $name ($((i / 60))m$((i % 60))s, log $logf)"; fi
  done
  wait $pid || rc=$?
  if [ $rc -ne 0 ]; then
    tail -30 "$logf" >&2
    die "building $name failed (exit $rc); full log: $logf"
  fi
  log "built $name in $(($(date +%s) - s))s"
}

# modcopy MODULE@VERSION DIR: a writable copy of a module out of the module cache.
modcopy() {
  local dir
  [ -d "$2" ] && return 0
  dir=$(go mod download -json "$1" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || die "go mod download $1 gave no Dir"
  cp -r "$dir" "$2.tmp"
  chmod -R u+w "$2.tmp"
  mv "$2.tmp" "$2"
}

# gobuild OUT ARGS...: go build -trimpath -o a temp file, then move it into place (no half-written binaries).
gobuild() {
  local out=$1
  shift
  go build -trimpath -o "$out.tmp" "$@" && mv "$out.tmp" "$out"
}

export GOFLAGS="-mod=mod -buildvcs=false" # third-party module copies: let go.mod/go.sum be completed

HEAVY="kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl snapshot-controller csi-snapshotter
csi-provisioner velero velero-plugin-for-aws minio"
# shellcheck disable=SC2086
if need $HEAVY; then check_disk; fi

# --- kubernetes: a scratch module requiring k8s.io/kubernetes with its staging repos pinned ---
build_k8s() {
  local d=$SRC/k8s gomod
  if [ ! -f "$d/go.sum" ]; then
    mkdir -p "$d"
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
    {
      printf 'module snapmove.local/stack/k8s\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
      grep -E '^\s*k8s.io/[a-z0-9-]+ => \./staging' "$gomod" | awk -v v="$K8S_STAGING_VERSION" '{print "\t"$1" => "$1" "v}'
      printf ')\n'
    } > "$d/go.mod"
    (cd "$d" && go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION")
  fi
  local ld="-s -w" p minor
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$K8S_BUILD_DATE"
  done
  cd "$d"
  case $1 in
    # kubectl goes into an image (smoke test of in-cluster API access), so it must be static. The
    # external linker links it statically: its packages then come out of the build cache of the
    # binaries above (CGO_ENABLED=0 would compile all of Kubernetes again, 3 of a cold build's minutes).
    kubectl) gobuild "$STACK_BIN/kubectl" -ldflags="$ld -linkmode=external -extldflags=-static" k8s.io/kubernetes/cmd/kubectl ;;
    *) gobuild "$STACK_BIN/$1" -ldflags="$ld" "k8s.io/kubernetes/cmd/$1" ;;
  esac
}
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
  if need $c; then run_build $c build_k8s $c; fi
done

# --- external-snapshotter: its nested ./client replace must point at the published client module ---
build_snapshotter() {
  local d=$SRC/external-snapshotter
  modcopy "github.com/kubernetes-csi/external-snapshotter/v8@$SNAPSHOTTER_VERSION" "$d"
  sed -i "s#^replace github.com/kubernetes-csi/external-snapshotter/client/v8 => ./client\$#replace github.com/kubernetes-csi/external-snapshotter/client/v8 => github.com/kubernetes-csi/external-snapshotter/client/v8 $SNAPSHOTTER_VERSION#" "$d/go.mod"
  cd "$d" && gobuild "$STACK_BIN/$1" -ldflags="-s -w -X main.version=$SNAPSHOTTER_VERSION" "./cmd/$1"
}
for c in snapshot-controller csi-snapshotter; do
  if need $c; then run_build $c build_snapshotter $c; fi
done
if [ ! -f "$STACK_MANIFESTS/snapshot-crds/.done" ]; then
  crd=$(go mod download -json "github.com/kubernetes-csi/external-snapshotter/client/v8@$SNAPSHOTTER_VERSION" |
    sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')/config/crd
  mkdir -p "$STACK_MANIFESTS/snapshot-crds"
  cp "$crd"/*_*.yaml "$STACK_MANIFESTS/snapshot-crds/" # the kustomization.yaml there is not for kubectl apply
  touch "$STACK_MANIFESTS/snapshot-crds/.done"
  log "snapshot CRDs copied"
fi

# --- external-provisioner ---
build_provisioner() {
  modcopy "github.com/kubernetes-csi/external-provisioner/v5@$PROVISIONER_VERSION" "$SRC/external-provisioner"
  cd "$SRC/external-provisioner" &&
    gobuild "$STACK_BIN/csi-provisioner" -ldflags="-s -w -X main.version=$PROVISIONER_VERSION" ./cmd/csi-provisioner
}
if need csi-provisioner; then run_build csi-provisioner build_provisioner; fi

# --- velero: keeps its kopia replace; plus replaces for k8s patch releases the mirror lacks ---
velero_src() { # Velero's module, copied to $SRC/velero, with the replaces the mirror needs
  local d=$SRC/velero
  modcopy "github.com/vmware-tanzu/velero@$VELERO_VERSION" "$d"
  if ! grep -q 'snapmove stack: versions missing' "$d/go.mod"; then
    # shellcheck disable=SC2001 # sed prefixes every line of the multi-line value
    printf '\n// snapmove stack: versions missing from the module proxy mirror\nreplace (\n%s\n)\n' \
      "$(echo "$VELERO_EXTRA_REPLACES" | sed 's/^/\t/')" >> "$d/go.mod"
  fi
}
build_velero() {
  local d=$SRC/velero
  velero_src
  # Static, as Velero's own image has it: the same binary runs on the host (CLI) and in the image.
  cd "$d" && CGO_ENABLED=0 gobuild "$STACK_BIN/velero" -ldflags="$VELERO_LDFLAGS" ./cmd/velero &&
    echo "$VELERO_LDFLAGS" > "$STACK_BIN/velero.ldflags"
}
# The stack's one change to Velero: the controller-runtime metrics endpoint, which Velero leaves at its
# default :8080 on every interface (its own metrics are --metrics-address), is off. On the stack's host
# network the server and node-agent would both bind it, and the second would exit.
VELERO_BUILDINFO=github.com/vmware-tanzu/velero/pkg/buildinfo
VELERO_LDFLAGS="-s -w -X $VELERO_BUILDINFO.Version=$VELERO_VERSION -X $VELERO_BUILDINFO.GitSHA=$VELERO_VERSION \
-X $VELERO_BUILDINFO.GitTreeState=clean -X sigs.k8s.io/controller-runtime/pkg/metrics/server.DefaultBindAddress=0"
if need_static velero || [ "$(cat "$STACK_BIN/velero.ldflags" 2> /dev/null)" != "$VELERO_LDFLAGS" ]; then
  run_build velero build_velero
fi
build_velero_aws() {
  modcopy "github.com/vmware-tanzu/velero-plugin-for-aws@$VELERO_AWS_VERSION" "$SRC/velero-plugin-for-aws"
  cd "$SRC/velero-plugin-for-aws" && CGO_ENABLED=0 gobuild "$STACK_BIN/velero-plugin-for-aws" -ldflags="-s -w" ./velero-plugin-for-aws
}
if need_static velero-plugin-for-aws; then run_build velero-plugin-for-aws build_velero_aws; fi
if [ ! -s "$STACK_MANIFESTS/velero-crds.yaml" ]; then
  KUBECONFIG=/dev/null "$STACK_BIN/velero" install --crds-only --dry-run -o yaml > "$STACK_MANIFESTS/velero-crds.yaml.tmp"
  mv "$STACK_MANIFESTS/velero-crds.yaml.tmp" "$STACK_MANIFESTS/velero-crds.yaml"
  log "velero CRDs rendered"
fi

# --- MinIO ---
build_minio() {
  modcopy "github.com/minio/minio@$MINIO_VERSION" "$SRC/minio"
  cd "$SRC/minio" && gobuild "$STACK_BIN/minio" -ldflags="-s -w" .
}
if need minio; then run_build minio build_minio; fi

# --- optional stores (SNAPMOVE_STACK_STORES, versions in versions-stores.env): built only when asked for ---
# Their versions are not in STACK_KEY, so each binary is checked against the version recorded beside it.
built_at() { # built_at BIN VERSION: BIN is there, static, and was built at VERSION
  ! need_static "$1" && [ "$(cat "$STACK_BIN/$1.version" 2> /dev/null)" = "$2" ]
}
build_fake_gcs() {
  local d=$SRC/fake-gcs-server@$FAKE_GCS_VERSION
  modcopy "github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION" "$d"
  cd "$d" && CGO_ENABLED=0 gobuild "$STACK_BIN/fake-gcs-server" -ldflags="-s -w" . &&
    echo "$FAKE_GCS_VERSION" > "$STACK_BIN/fake-gcs-server.version"
}
# The GCP plugin is built in a scratch module that starts from Velero's go.mod (its requirements and
# replaces, velero_src), so that the modules the two share (Google's storage client,
# grpc, k8s.io, ...) are at Velero's versions and their packages come out of the build cache of Velero's
# build: 2 minutes of a cold build less.
build_velero_gcp() {
  local d=$SRC/velero-plugin-for-gcp@$VELERO_GCP_VERSION
  velero_src
  rm -rf "$d" && mkdir -p "$d"
  # every module Velero requires, held at Velero's version (the plugin asks for newer golang.org/x
  # releases, which would recompile everything above them)
  {
    sed 's#^module .*#module snapmove.local/stack/velero-plugin-for-gcp#' "$SRC/velero/go.mod"
    printf '\nreplace (\n'
    (cd "$SRC/velero" && go mod edit -json) | sed -n 's/^\t\t\t"Path": "\(.*\)",$/\1/p; s/^\t\t\t"Version": "\([^"]*\)".*$/\1/p' |
      paste - - | while read -r m v; do grep -Eq "(^|\s)$m =>" "$SRC/velero/go.mod" || printf '\t%s => %s %s\n' "$m" "$m" "$v"; done
    printf ')\n'
  } > "$d/go.mod"
  cp "$SRC/velero/go.sum" "$d/go.sum"
  cd "$d" && go get "github.com/vmware-tanzu/velero@$VELERO_VERSION" "github.com/vmware-tanzu/velero-plugin-for-gcp@$VELERO_GCP_VERSION" &&
    CGO_ENABLED=0 gobuild "$STACK_BIN/velero-plugin-for-gcp" -ldflags="-s -w" \
      github.com/vmware-tanzu/velero-plugin-for-gcp/velero-plugin-for-gcp &&
    echo "$VELERO_GCP_VERSION" > "$STACK_BIN/velero-plugin-for-gcp.version"
}
if store_on gcs; then
  if ! built_at fake-gcs-server "$FAKE_GCS_VERSION"; then run_build fake-gcs-server build_fake_gcs; fi
  if ! built_at velero-plugin-for-gcp "$VELERO_GCP_VERSION"; then run_build velero-plugin-for-gcp build_velero_gcp; fi
fi
# Azurite from the npm registry (its package, with its dependencies, in a directory of its own per version),
# $STACK_BIN/azurite-blob a link to its blob-only server. It declares node >= 22 since 3.36 but runs on 20:
# npm warns (EBADENGINE) and installs; the stack's use of it was tried on Node v20.20.2 (docs/stores-on-the-stack.md).
install_azurite() {
  local d=$STACK_HOME/azurite@$AZURITE_VERSION
  rm -rf "$d" && mkdir -p "$d" &&
    npm install --prefix "$d" --omit=dev --no-fund --no-audit "azurite@$AZURITE_VERSION" &&
    [ -x "$d/node_modules/.bin/azurite-blob" ] &&
    ln -sfn "$d/node_modules/.bin/azurite-blob" "$STACK_BIN/azurite-blob" &&
    echo "$AZURITE_VERSION" > "$STACK_BIN/azurite-blob.version"
}
if store_on azure; then
  for b in node npm; do command -v $b > /dev/null || die "$b is not on PATH (SNAPMOVE_STACK_STORES=azure runs Azurite, a Node.js program)"; done
  if [ ! -x "$STACK_BIN/azurite-blob" ] || [ "$(cat "$STACK_BIN/azurite-blob.version" 2> /dev/null)" != "$AZURITE_VERSION" ]; then
    run_build azurite install_azurite
  fi
fi

# --- the repo's own programs: rebuilt every run (go build skips up-to-date binaries) ---
export GOFLAGS="-mod=readonly -buildvcs=false" # never touch the repo's go.mod/go.sum
# kopia CLI from the snapmove module (go.mod: `tool github.com/kopia/kopia`, so go.sum covers the CLI's
# packages), so it is exactly the kopia (Velero's fork, via replace) snapmove links.
run_build kopia sh -c "cd '$REPO_ROOT' && go build -trimpath -ldflags='-s -w' -o '$STACK_BIN/kopia' github.com/kopia/kopia"
run_build tools sh -c "cd '$REPO_ROOT/hack/tools' && go build -trimpath -ldflags='-s -w' -o '$STACK_BIN/' ./imgtool ./s3mb ./hostnet &&
  CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o '$STACK_BIN/pause' ./pause"
if store_on azure; then # azmc: creates up.sh's blob container (Azurite makes none, kopia neither)
  run_build azmc sh -c "cd '$REPO_ROOT/hack/tools' && go build -trimpath -ldflags='-s -w' -o '$STACK_BIN/' ./azmc"
fi
# helm (installs the mover's chart, charts/snapmove), EKS's pod identity webhook (irsa: served on a
# loopback address) and the CSI snapshot metadata sidecar (changed block tracking, external-snapshot-metadata
# with its client module, both v1.0.0: go.mod's tool lines): a module of their own, as they need k8s.io
# modules newer than snapmove's, built by one go build so that they compile the k8s.io packages they share once.
# -X main.version is the sidecar's version (it logs it); the other two main packages have no such variable.
SMS_MODULE=github.com/kubernetes-csi/external-snapshot-metadata
# The stack's one change to the snapshot metadata sidecar: its gRPC server listens on 127.0.0.1, not on
# every interface (v1.0.0 binds ":PORT" and has no flag for the host: pkg/internal/server/grpc/server.go).
# The build takes the module from a patched copy through a go.mod of its own (-modfile, a replace), so
# that hack/tools/kube/go.mod stays the proxy's versions.
build_kube() {
  local v sv ov=$SRC/kube-modfile
  cd "$REPO_ROOT/hack/tools/kube" && v=$(go list -m -f '{{.Version}}' helm.sh/helm/v4) &&
    sv=$(go list -m -f '{{.Version}}' $SMS_MODULE) || return 1
  mkdir -p "$ov" && cp go.mod "$ov/kube.mod" && cp go.sum "$ov/kube.sum"
  rm -rf "$ov/sms" && modcopy "$SMS_MODULE@$sv" "$ov/sms"
  sed -i 's/net\.Listen("tcp", ":"+strconv\.Itoa(/net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(/' "$ov/sms/pkg/internal/server/grpc/server.go"
  grep -q 'net.Listen("tcp", "127.0.0.1:"' "$ov/sms/pkg/internal/server/grpc/server.go" ||
    { echo "the sidecar's listen call changed: $ov/sms/pkg/internal/server/grpc/server.go" >&2; return 1; }
  go mod edit -modfile="$ov/kube.mod" -replace="$SMS_MODULE=$ov/sms"
  go build -modfile="$ov/kube.mod" -trimpath \
    -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$v -X main.version=$sv" \
    -o "$STACK_BIN/" ./podidentity helm.sh/helm/v4/cmd/helm $SMS_MODULE/cmd/csi-snapshot-metadata
}
run_build kube build_kube
# The SnapshotMetadataService CRD (cbt.storage.k8s.io, v1beta1), from the client module the sidecar links.
sms_crd_version=$(cd "$REPO_ROOT/hack/tools/kube" && go list -m -f '{{.Version}}' $SMS_MODULE/client)
if [ "$(cat "$STACK_MANIFESTS/sms-crd/.done" 2> /dev/null)" != "$sms_crd_version" ]; then
  crd=$(cd "$REPO_ROOT/hack/tools/kube" && go mod download -json "$SMS_MODULE/client@$sms_crd_version" |
    sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')/config/crd
  rm -rf "$STACK_MANIFESTS/sms-crd" && mkdir -p "$STACK_MANIFESTS/sms-crd"
  cp "$crd"/cbt.storage.k8s.io_*.yaml "$STACK_MANIFESTS/sms-crd/"
  echo "$sms_crd_version" > "$STACK_MANIFESTS/sms-crd/.done"
  log "SnapshotMetadataService CRD copied ($SMS_MODULE/client $sms_crd_version)"
fi
if [ "$(cd "$REPO_ROOT/test/csidriver" && go list -f '{{.Name}}' . 2> /dev/null)" = main ]; then
  run_build csidriver sh -c "cd '$REPO_ROOT/test/csidriver' && go build -trimpath -o '$STACK_BIN/csidriver' ."
else
  log "WARNING: test/csidriver has no main package yet; csidriver not built (up.sh needs it)"
fi

# --- images (docker-archive tarballs for ctr import); cheap, redone when an input is newer ---
image() { # image REF TAR ENTRYPOINT SRC=DST...
  local ref=$1 tar=$2 ep=$3 f stale=0
  shift 3
  [ -s "$tar" ] || stale=1
  for f in "${@%%=*}" "$STACK_BIN/imgtool"; do [ "$f" -nt "$tar" ] && stale=1; done
  [ $stale = 1 ] || return 0
  "$STACK_BIN/imgtool" -ref "$ref" -out "$tar.tmp" -entrypoint "$ep" "$@" && mv "$tar.tmp" "$tar"
  log "image $ref -> $tar"
}
image "$PAUSE_IMAGE" "$STACK_IMAGES/pause.tar" /pause "$STACK_BIN/pause=/pause"
image "$BUSYBOX_IMAGE" "$STACK_IMAGES/busybox.tar" /bin/busybox,sh /bin/busybox=/bin/busybox
image "$KUBECTL_IMAGE" "$STACK_IMAGES/kubectl.tar" /kubectl "$STACK_BIN/kubectl=/kubectl"
# Velero's images as its Dockerfiles lay them out: the server image runs /velero (the chart sets the
# command); the AWS plugin image copies its binary into the plugins volume and exits.
image "$VELERO_IMAGE" "$STACK_IMAGES/velero.tar" /velero "$STACK_BIN/velero=/velero"
image "$VELERO_AWS_IMAGE" "$STACK_IMAGES/velero-plugin-for-aws.tar" \
  /bin/busybox,cp,/plugins/velero-plugin-for-aws,/target/. \
  "$STACK_BIN/velero-plugin-for-aws=/plugins/velero-plugin-for-aws" /bin/busybox=/bin/busybox
if store_on gcs; then # the GCP plugin's image, laid out as the AWS one's (its Dockerfile: the same cp-plugin step)
  image "$VELERO_GCP_IMAGE" "$STACK_IMAGES/velero-plugin-for-gcp.tar" \
    /bin/busybox,cp,/plugins/velero-plugin-for-gcp,/target/. \
    "$STACK_BIN/velero-plugin-for-gcp=/plugins/velero-plugin-for-gcp" /bin/busybox=/bin/busybox
fi

log "all built: bin $STACK_BIN, images $STACK_IMAGES"
