// Package snapclass owns one decision: which VolumeSnapshotClass snapmove uses to snapshot a
// PVC, and — when there is no single right answer — an error that names the classes or the
// annotation the user has to fix.
//
// The precedence is Velero's (pkg/util/csi GetVolumeSnapshotClass): PVC annotation
// velero.io/csi-volumesnapshot-class, backup annotation
// velero.io/csi-volumesnapshot-class_<driver>, the driver's class labelled
// velero.io/csi-volumesnapshot-class: "true", the driver's class annotated
// snapshot.storage.kubernetes.io/is-default-class: "true", the driver's only class. Where
// Velero silently falls through a bad annotation or picks the first of several labelled
// classes, Choose fails instead.
//
// Choose is pure; List is the only API call. The package must not create or delete
// anything.
package snapclass
