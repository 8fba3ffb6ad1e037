// Package driver is snapmove's test CSI driver: a hostpath-style Container Storage
// Interface plugin used ONLY by this project's local Kubernetes stack and tests.
// It is a test fixture, not a production driver: it keeps every volume on the local
// disk of the one node it runs on, has no quotas (capacity is recorded, not enforced,
// for filesystem volumes), and takes snapshots by plainly copying files while the
// volume may still be in use, so a snapshot is neither atomic nor crash-consistent.
//
// It owns the CSI Identity, Controller and Node services (ControllerGetCapabilities
// and NodeGetCapabilities say exactly what is advertised), optionally the
// SnapshotMetadata service (changed block tracking: snapmeta.go), the kubelet
// plugin-registration service (RegistrationServer, which replaces node-driver-registrar
// in the local stack), and its state directory. The directory's layout is part of its
// contract with the stack scripts and the e2e tests:
//
//	<statedir>/state.json                  volumes, snapshots and publications (JSON)
//	<statedir>/volumes/<volumeID>/         data of a filesystem volume (a plain directory)
//	<statedir>/volumes/<volumeID>.img      data of a block volume (a sparse image file)
//	<statedir>/snapshots/<snapshotID>/     copy of a filesystem volume
//	<statedir>/snapshots/<snapshotID>.img  copy of a block volume
//	<statedir>/snapshots/<snapshotID>.sums block hashes of a block snapshot (blocks.go)
//
// A PV's spec.csi.volumeHandle is the volume ID and a VolumeSnapshotContent's
// status.snapshotHandle is the snapshot ID, so a test finds a volume's data at
// <statedir>/volumes/<spec.csi.volumeHandle>/.
//
// It must not talk to the Kubernetes API, or touch any path outside its state
// directory other than the target paths that NodePublishVolume and
// NodeUnpublishVolume are given and the loop devices it attaches itself.
package driver
