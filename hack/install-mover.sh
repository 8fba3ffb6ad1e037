#!/usr/bin/env bash
# install-mover.sh: install snapmove's mover into the local stack the way a user does,
# `kubectl apply -f examples/mover.yaml`, then apply the only two differences the stack needs:
#
# - host networking for the controller and the worker pods: the stack has no pod network (no
#   CNI plugin with addresses: everything listens on 127.0.0.1, see hack/stack/up.sh), and the
#   controller's metrics/health endpoints are bound to 127.0.0.1 for the same reason (and,
#   sharing the host's ports, the old pod must be gone before the new one starts: Recreate);
# - a shorter prepareTimeout, so the e2e cases that must fail in preparation fail quickly;
# - on a stack started with irsa: env AWS_ENDPOINT_URL_STS (MinIO's STS) on the controller;
# - on a stack started with GCS (SNAPMOVE_STACK_STORES=gcs): env STORAGE_EMULATOR_HOST on the controller,
#   which opens repositories itself (checks, snapshot deletes), so that Google's storage client reaches
#   fake-gcs-server. Its workers get the variable from Velero's server container, as they get its other
#   settings (internal/mover/velerosrv).
#   With Azure (azure) nothing: the controller and the workers are hostNetwork pods, whose /etc/hosts is the
#   node's, where up.sh names Azurite (devstoreaccount1.blob.localhost).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/stack/lib.sh"
# shellcheck source=/dev/null # written by up.sh
. "$RUN/env"

k() { "$KUBECTL" "$@"; }
k apply -f "$REPO_ROOT/examples/mover.yaml" > /dev/null
k -n velero patch configmap snapmove-mover --type merge \
  -p '{"data":{"workerHostNetwork":"true","prepareTimeout":"3m"}}' > /dev/null
# shellcheck disable=SC2016 # $(VELERO_NAMESPACE) is the container's env reference, for Kubernetes to expand
k -n velero patch deployment snapmove-mover --type json -p '[
  {"op":"add","path":"/spec/template/spec/hostNetwork","value":true},
  {"op":"replace","path":"/spec/strategy","value":{"type":"Recreate"}},
  {"op":"remove","path":"/spec/template/spec/containers/0/ports"},
  {"op":"replace","path":"/spec/template/spec/containers/0/args","value":[
    "--namespace=$(VELERO_NAMESPACE)",
    "--worker-image='"${SNAPMOVE_IMAGE:-ghcr.io/snapmove/snapmove:v0.1.0}"'",
    "--leader-elect=true",
    "--metrics-bind-address=127.0.0.1:8086",
    "--health-probe-bind-address=127.0.0.1:8087"]},
  {"op":"replace","path":"/spec/template/spec/containers/0/livenessProbe/httpGet/port","value":8087},
  {"op":"replace","path":"/spec/template/spec/containers/0/readinessProbe/httpGet/port","value":8087}
]' > /dev/null
if stack_has_store gcs; then
  k -n velero set env deployment/snapmove-mover -c mover STORAGE_EMULATOR_HOST="$GCS_EMULATOR" > /dev/null
fi
if stack_has_store irsa; then # the AWS SDK's STS endpoint variable, as on Velero's server (velero.yaml)
  k -n velero set env deployment/snapmove-mover -c mover AWS_ENDPOINT_URL_STS="$IRSA_STS_ENDPOINT" > /dev/null
fi
# A new image under the same tag does not change the pod template: restart explicitly.
k -n velero rollout restart deployment/snapmove-mover > /dev/null
k -n velero rollout status deployment/snapmove-mover --timeout=180s > /dev/null
log "snapmove mover running (velero/snapmove-mover)"
