// Package e2e is snapmove's end-to-end suite. It runs (build tag e2e) against the local
// stack that hack/stack/up.sh starts: a real kube-apiserver, etcd, controller-manager,
// scheduler and kubelet with containerd, the CSI snapshot controller and sidecars with the
// project's test CSI driver, a real Velero server with velero-plugin-for-aws and snapmove's
// plugins in its plugins folder, MinIO, and snapmove's mover installed from examples/.
//
// Tests drive it the way a user does (velero CLI, kubectl-equivalent API calls) and assert
// on what a user sees: Backup/Restore phases and logs, DataUpload/DataDownload status,
// restored bytes, the kopia CLI's listing. Each test uses its own namespaces and cleans up.
//
// framework_test.go holds the stack (read once from the environment), the per-test
// context, and every helper and wait; the other files hold only tests.
//
//	make stack-up && make e2e
package e2e
