#!/usr/bin/env bash
# install-mover.sh: install snapmove's mover into the local stack the way a user does, with its
# chart (charts/snapmove) and helm:
#
#   helm upgrade --install snapmove charts/snapmove -n velero -f hack/stack/mover-values.yaml \
#     --set image.repository=...,image.tag=...
#
# hack/stack/mover-values.yaml says why the stack's values differ from the chart's defaults. Beside
# them, per store the stack was started with:
# - irsa: AWS_ENDPOINT_URL_STS (MinIO's STS) on the mover, as on Velero's server (velero.yaml);
# - gcs: STORAGE_EMULATOR_HOST on the mover, which opens repositories itself (checks, snapshot
#   deletes), so that Google's storage client reaches fake-gcs-server. Its workers get the variable
#   from Velero's server container, as they get its other settings (internal/mover/velerosrv).
#   With Azure (azure) nothing: the mover and the workers are hostNetwork pods, whose /etc/hosts is
#   the node's, where up.sh names Azurite (devstoreaccount1.blob.localhost).
# The mover's objects applied by an older install-mover.sh (`kubectl apply -f examples/mover.yaml`)
# are adopted by the release, as docs/operations.md tells users who move to the chart.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/stack/lib.sh"
# shellcheck source=/dev/null # written by up.sh
. "$RUN/env"

k() { "$KUBECTL" "$@"; }
image=${SNAPMOVE_IMAGE:-ghcr.io/snapmove/snapmove:v0.1.0}
env=()
if stack_has_store gcs; then env+=("{\"name\":\"STORAGE_EMULATOR_HOST\",\"value\":\"$GCS_EMULATOR\"}"); fi
if stack_has_store irsa; then env+=("{\"name\":\"AWS_ENDPOINT_URL_STS\",\"value\":\"$IRSA_STS_ENDPOINT\"}"); fi

# Adopt the objects of an install by kubectl apply: helm refuses objects no release owns.
for o in serviceaccount/snapmove-mover role/snapmove-mover rolebinding/snapmove-mover configmap/snapmove-mover deployment/snapmove-mover; do
  owner=$(k -n velero get "$o" --ignore-not-found -o 'jsonpath={.metadata.annotations.meta\.helm\.sh/release-name}|')
  [ "$owner" = "|" ] || continue # absent (""), or already a release's
  k -n velero annotate --overwrite "$o" meta.helm.sh/release-name=snapmove meta.helm.sh/release-namespace=velero > /dev/null
  k -n velero label --overwrite "$o" app.kubernetes.io/managed-by=Helm > /dev/null
done
k delete clusterrolebinding,clusterrole snapmove-mover --ignore-not-found > /dev/null # their names before the chart

"$STACK_BIN/helm" --kubeconfig "$RUN/kubeconfig" upgrade --install snapmove "$REPO_ROOT/charts/snapmove" -n velero \
  -f "$REPO_ROOT/hack/stack/mover-values.yaml" \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" --set-json "env=[$(IFS=,; echo "${env[*]}")]" > /dev/null
# A new image under the same tag does not change the pod template: restart explicitly.
k -n velero rollout restart deployment/snapmove-mover > /dev/null
k -n velero rollout status deployment/snapmove-mover --timeout=180s > /dev/null
log "snapmove mover running (helm release velero/snapmove, chart charts/snapmove)"
