// Package worker is the code that runs in a worker pod (`snapmove mover worker backup|
// restore`): it waits until the controller has set its DataUpload or DataDownload to
// InProgress, opens the kopia repository, moves the volume's bytes, reports progress into
// its report, the ConfigMap of the movement's name (expose.ProgressReport: a merge patch,
// at most every ProgressInterval), stops when the object is canceled, and leaves its
// result in the container's termination message (JSON on success, the error text on
// failure). The controller reads both and copies them onto the object's status.
//
// It only reads its DataUpload or DataDownload, and may not write it (expose.WorkerIdentity):
// with no status subresource, a write would be a write of the spec the controller acts on. It reaches the repository only through the Opener interface, which returns a
// datapath.Repository (internal/cmd wires connect.Connector), so it does not import kopia;
// the line its result carries about a backup's verification is the printer's
// (DescribeVerification, wired by internal/cmd). It keeps no buffers of
// its own beyond a progress value.
package worker
