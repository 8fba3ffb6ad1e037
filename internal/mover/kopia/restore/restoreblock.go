package restore

import (
	"context"
	"io"
	"os"
	"path/filepath"

	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"

	"github.com/snapmove/snapmove/internal/mover/kopia/tree"
)

// restoreBlock writes the one file of a block volume snapshot to the device.
func (rs *restorer) restoreBlock(ctx context.Context, root *snapshot.DirEntry, device string) error {
	file, err := tree.BlockFile(ctx, rs.rep, root)
	if err != nil {
		return err
	}
	device, err = filepath.EvalSymlinks(device)
	if err != nil {
		return errors.Wrapf(err, "resolving %s", device)
	}
	st, err := os.Stat(device)
	if err != nil {
		return errors.Wrapf(err, "reading %s", device)
	}
	size := file.FileSize
	var f *os.File
	switch {
	case tree.IsBlockDevice(st):
		if f, err = os.OpenFile(device, os.O_WRONLY, 0); err != nil {
			return errors.Wrapf(err, "opening %s", device)
		}
		devSize, err := f.Seek(0, io.SeekEnd)
		if err == nil && devSize < size {
			err = errors.Errorf("device %s has %d bytes, the snapshot %d", device, devSize, size)
		}
		if err != nil {
			_ = f.Close()
			return err
		}
	case st.Mode().IsRegular():
		if f, err = os.OpenFile(device, os.O_WRONLY|os.O_TRUNC, 0); err != nil {
			return errors.Wrapf(err, "opening %s", device)
		}
		if err := f.Truncate(size); err != nil {
			_ = f.Close()
			return errors.Wrapf(err, "sizing %s", device)
		}
	default:
		return errors.Errorf("%s is not a block device", device)
	}
	defer f.Close() //nolint:errcheck

	chunks, err := rs.chunks(ctx, file.ObjectID, size)
	if err != nil {
		return err
	}
	t := &fileTarget{path: device, size: size, mode: writeAll, f: f, keep: true}
	err = rs.run(ctx, func(ctx context.Context, jobs chan<- job) error {
		return rs.enqueue(ctx, jobs, t, chunks)
	})
	if err != nil {
		return err
	}
	return errors.Wrapf(f.Sync(), "syncing %s", device)
}
