// Package mover is the root of the bundled data mover; it holds no code. Its packages:
//
//	controller  the phases of DataUploads, DataDownloads and snapshot delete requests
//	expose      pure builders of what a movement creates (snapshot, PVC, worker pod)
//	worker      what runs in a worker pod: wait, open the repository, move, report
//	snapmeta    the worker's client of a CSI SnapshotMetadata service (changed blocks)
//	connect     the one path from a BackupStorageLocation to an open repository
//	repository  BackupStorageLocation to repository location, and the password secret
//	kopia       the data path, the only packages that import kopia: a facade over its
//	            rooms store, backup, restore, inspect and the tree walker they share
//	datapath    the request, result and error types and the Repository interface that
//	            worker, connect and kopia share
//	config      the mover's settings ConfigMap
//	catalog     the user's repository commands: list, ls, restore-files, verify, report
//	orphans     forget-orphans: the snapshots of backups no longer in the bucket
//
// The commands that run the controller and the worker are in internal/cmd. Nothing here
// imports internal/plugin, nor does internal/plugin import anything here: what both
// sides agree on lives in internal/naming.
package mover
