// Package naming owns every name that the Velero plugins (internal/plugin) and the bundled
// mover (internal/mover) must agree on: the data mover names written into
// DataUpload/DataDownload spec.datamover (ours, and Velero's built-in one), the registered
// plugin names, the labels and annotations either side reads back, the operation-ID
// format, which of Velero's phases end a movement, and the snapshot delete request that
// the delete plugin hands to the mover. Phase names themselves are Velero's
// (velerov2alpha1): they are used as they are, not copied here.
//
// It must stay small and free of behaviour: no API calls, no kopia, no logging. If a
// constant is only used on one side, it belongs on that side.
package naming
