// Package filestream carries restored files from the CLI into a live PVC without the
// pod that writes them ever holding a repository secret: the CLI reads the repository
// (with Velero's credentials, as `restore-files --to DIR` does) and Send writes the
// restored tree as a tar stream; the writer pod, which mounts the PVC and has no secret
// and no API token, reads it on stdin with Receive.
//
// Receive treats the stream as hostile: no entry leaves the target (absolute names and
// ".." are refused), no symlink found in the target is followed, each file and symlink
// is written beside its place and renamed into it (a stream cut mid-file leaves the
// original), and a stream without the sender's end marker fails.
//
// It knows nothing of Kubernetes and of the repository; it must not import kopia.
package filestream

// endRecord is the PAX record of the global header Send ends a stream with: the number
// of entries sent. A stream cut between two entries looks complete to a tar reader; the
// marker tells it apart.
const endRecord = "SNAPMOVE.entries"

// Result is what Receive wrote.
type Result struct {
	Files, Dirs, Symlinks int
	Bytes                 int64
}
