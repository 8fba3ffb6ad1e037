// Package operation owns what the backup and restore actions' Progress and Cancel share:
// finding the DataUpload or DataDownload of an async operation by its label
// velero.io/async-operation-id, translating its status into Velero's OperationProgress,
// and asking the mover to cancel it.
//
// Everything is computed from the cluster on each call (Velero starts a fresh plugin
// process for every poll). It must not create objects or change anything but spec.cancel.
package operation
