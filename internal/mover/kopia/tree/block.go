package tree

import (
	"context"
	"os"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"
)

// A block volume is backed up as Velero's data mover does: a directory holding one file,
// the device's bytes.

// IsBlockDevice reports whether st is a block device (not a character device): a volume
// whose bytes are backed up and restored as one file.
func IsBlockDevice(st os.FileInfo) bool {
	m := st.Mode()
	return m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0
}

// BlockFile finds the device file in a block volume snapshot: the only entry of the root
// directory (Velero's layout), or the root itself when it is a file.
func BlockFile(ctx context.Context, rep repo.Repository, root *snapshot.DirEntry) (*snapshot.DirEntry, error) {
	switch root.Type {
	case snapshot.EntryTypeFile:
		return root, nil
	case snapshot.EntryTypeDirectory:
	default:
		return nil, errors.Errorf("not a block volume snapshot: the root has type %q", root.Type)
	}
	entries, err := ReadDir(ctx, rep, root.ObjectID)
	if err != nil {
		return nil, errors.Wrap(err, "listing snapshot root")
	}
	if len(entries) != 1 || entries[0].Type != snapshot.EntryTypeFile {
		return nil, errors.Errorf("not a block volume snapshot: the root holds %d entries, not one file", len(entries))
	}
	return entries[0], nil
}
