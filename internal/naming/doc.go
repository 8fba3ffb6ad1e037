// Package naming owns every name that the Velero plugins (internal/plugin) and the bundled
// mover (internal/mover) must agree on: the data mover name written into
// DataUpload/DataDownload spec.datamover, the registered plugin names, the labels and
// annotations either side reads back, the operation-ID format, and the snapshot delete
// request that the delete plugin hands to the mover.
//
// It must stay small and free of behaviour: no API calls, no kopia, no logging. If a
// constant is only used on one side, it belongs on that side.
package naming
