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
// Tests that use only objects of their own call parallel(t) and run together once the
// others, which reconfigure what every test shares (Velero, the mover, the object store),
// have run one at a time; each checks for leftovers of its own objects only, and the
// suite checks for anything left at all at its end.
//
// The helpers, by job: stack_test.go (the stack read from the environment, the per-test
// context, parallel), process_test.go (running CLIs), fixtures_test.go (namespaces,
// volumes, pods, hand-made DataUploads), velero_test.go (driving Velero: backups,
// restores, their movements, the round trip), waits_test.go (polls), leftovers_test.go
// (what a test left behind, the worker's rights), reconfigure_test.go (switching Velero's
// setup, the mover's settings and replicas) and repository_test.go (the repository as the
// kopia CLI and S3 see it). The other files hold only tests.
//
//	make stack-up && make e2e
package e2e
