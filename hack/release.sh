#!/usr/bin/env bash
# release.sh: build a release's artifacts into dist/VERSION, publishing nothing.
#
#   hack/release.sh [VERSION]     (default: naming.Version, v0.1.0; `make release VERSION=v0.2.0`)
#   PLATFORMS=linux/amd64 hack/release.sh   # only these platforms (make test: the host's, see
#                                           # `make release-check`; the others are the same commands)
#
# - snapmove_VERSION_OS_ARCH.tar.gz for linux and darwin on amd64 and arm64: the static binary
#   (`snapmove`, which is also the kubectl plugin: link or copy it as kubectl-snapmove on PATH),
#   README.md and docs/settings.md;
# - snapmove-image_VERSION_linux_ARCH.tar for amd64 and arm64: the Dockerfile's final stage (the binary,
#   the CA bundle, USER 65532:65532, entrypoint `snapmove install /target`) as docker-archive tarballs
#   (`docker load -i` / `ctr images import`), built without a Docker engine by hack/tools/imgtool;
#   `docker build -t ghcr.io/snapmove/snapmove:VERSION .` builds the same from the Dockerfile;
# - snapmove_VERSION.spdx.json: the SBOM of the linux/amd64 binary (hack/tools/sbom: every Go module
#   linked in, from the binary's own build information);
# - snapmove.yaml: the krew plugin manifest (`kubectl krew install --manifest=snapmove.yaml
#   --archive=snapmove_VERSION_OS_ARCH.tar.gz` installs it from the files);
# - snapmove-CHART_VERSION.tgz: the chart (charts/snapmove) at version VERSION without its "v", whose
#   image defaults to this release's (appVersion VERSION), by `helm package` (helm: $HELM, else built
#   from hack/tools/kube, the stack's helm);
# - SHA256SUMS of all of them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version=${1:-$(sed -n 's/^var Version = "\(.*\)"$/\1/p' internal/naming/naming.go)}
[ -n "$version" ] || { echo "release.sh: no version" >&2; exit 1; }
out=dist/$version
rm -rf "$out" && mkdir -p "$out/tools"
export GOFLAGS="-mod=readonly -buildvcs=false"
ldflags="-s -w -X github.com/snapmove/snapmove/internal/naming.Version=$version"
(cd hack/tools && go build -trimpath -o "../../$out/tools/" ./imgtool ./sbom)

platforms=${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64}
case " $platforms " in *" linux/amd64 "*) ;; *) echo "release.sh: PLATFORMS must include linux/amd64 (the SBOM's)" >&2; exit 2 ;; esac
for platform in $platforms; do
  os=${platform%/*} arch=${platform#*/} dir=snapmove_${version}_${os}_${arch}
  mkdir -p "$out/$dir"
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -ldflags="$ldflags" -o "$out/$dir/snapmove" .
  cp README.md "$out/$dir/" && cp docs/settings.md "$out/$dir/"
  tar -C "$out" --owner=0 --group=0 --mtime=@0 -czf "$out/$dir.tar.gz" "$dir"
  if [ "$os" = linux ]; then
    "$out/tools/imgtool" -ref "ghcr.io/snapmove/snapmove:$version" -out "$out/snapmove-image_${version}_linux_$arch.tar" \
      -arch "$arch" -user 65532:65532 -env "" -entrypoint /snapmove,install,/target \
      "$out/$dir/snapmove=/snapmove" /etc/ssl/certs/ca-certificates.crt=/etc/ssl/certs/ca-certificates.crt
  fi
  echo "built $out/$dir.tar.gz"
done
"$out/tools/sbom" -name snapmove -version "$version" "$out/snapmove_${version}_linux_amd64/snapmove" > "$out/snapmove_$version.spdx.json"

. hack/stack/lib.sh # STACK_BIN: the stack's helm, when it was built
helm=${HELM:-$STACK_BIN/helm}
if [ ! -x "$helm" ]; then
  (cd hack/tools/kube && go build -trimpath -o "../../../$out/tools/helm" helm.sh/helm/v4/cmd/helm)
  helm=$out/tools/helm
fi
"$helm" package charts/snapmove --version "${version#v}" --app-version "$version" -d "$out"

sha() { sha256sum "$out/$1" | cut -d' ' -f1; }
{
  cat << EOF2
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: snapmove
spec:
  version: $version
  homepage: https://github.com/snapmove/snapmove
  shortDescription: See and restore the volumes in Velero backups that snapmove moved
  description: |
    The repository commands of snapmove, Velero's data mover: list the moved volumes of backups, browse
    them (ls), restore chosen files without a full restore, verify, report, cancel, hand over, doctor.
  platforms:
EOF2
  for platform in $platforms; do
    os=${platform%/*} arch=${platform#*/} dir=snapmove_${version}_${os}_${arch}
    cat << EOF2
    - selector: {matchLabels: {os: $os, arch: $arch}}
      uri: https://github.com/snapmove/snapmove/releases/download/$version/$dir.tar.gz
      sha256: $(sha "$dir.tar.gz")
      bin: $dir/snapmove
EOF2
  done
} > "$out/snapmove.yaml"

rm -rf "$out/tools"
for platform in $platforms; do rm -rf "$out/snapmove_${version}_${platform/\//_}"; done
(cd "$out" && sha256sum -- * > SHA256SUMS)
echo "release $version in $out:"
ls -l "$out"
