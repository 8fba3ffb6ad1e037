package datapath

import (
	"io/fs"
	"time"
)

// The types below are what the user's repository commands (list, browse, restore files,
// verify) read out of a repository. They never write to it.

// Snapshot describes one kopia snapshot of a moved volume.
type Snapshot struct {
	ID string
	// Namespace and PVC are read from the kopia source path,
	// snapshot-data-upload-download/kopia/<ns>/<pvc> (Velero's data mover and ours).
	Namespace, PVC string
	// Source is the kopia source as the kopia CLI prints it: user@host:path.
	Source             string
	StartTime, EndTime time.Time
	// Incomplete is kopia's reason for a checkpoint; "" for a complete snapshot.
	Incomplete string
	// Tags are the manifest's tags, without kopia's "tag:" prefix.
	Tags map[string]string
	// Counts come from the root directory's summary: what the backup stored.
	Counts TreeCounts
	// Errors is the number of entries the backup failed to read, fatal or ignored
	// (kopia's summary).
	Errors int
}

// Entry is one entry of a directory in a snapshot, as `ls -l` shows it.
type Entry struct {
	Name string
	// Mode carries the type bits (fs.ModeDir, fs.ModeSymlink, ...) and the permissions,
	// including setuid, setgid and sticky.
	Mode     fs.FileMode
	UID, GID uint32
	// Size is a file's size or a symlink's target length; 0 for a directory (kopia keeps
	// no directory size).
	Size    int64
	ModTime time.Time
	// LinkTarget is a symlink's target; empty otherwise.
	LinkTarget string
}

// FilesRequest asks for chosen paths of a snapshot to be restored into a directory.
type FilesRequest struct {
	SnapshotID string
	// Paths are slash-separated paths relative to the snapshot's root ("/" or "" is the
	// root itself); each component may be a path.Match pattern. Every path must match at
	// least one entry, or nothing is restored.
	Paths []string
	// Target is the directory that receives each match at its path relative to the
	// snapshot's root (data/a.txt is written to Target/data/a.txt). Missing parent
	// directories are created with the snapshot's attributes; existing ones are left as
	// they are, and anything else at a parent's place (a symlink, a file) fails the
	// request; entries in the way of a match are replaced; nothing outside the matched
	// entries is changed.
	Target string
	// Parallel is the number of concurrent writers; 0 means NumCPU.
	Parallel int
	// WriteSparse turns all-zero blocks into holes.
	WriteSparse bool
	// OnProgress, when set, is called every ProgressInterval (0: the data path's default)
	// and once at the end. It must not block.
	OnProgress       func(Progress)
	ProgressInterval time.Duration
}

// FilesResult says what a FilesRequest restored.
type FilesResult struct {
	// Matched are the snapshot paths the request's Paths matched, sorted; "." is the root.
	Matched []string
	// Restored counts the entries written, matched ones and everything beneath them.
	Restored TreeCounts
}
