package backup

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/compression"
	"github.com/kopia/kopia/repo/object"
	"github.com/kopia/kopia/snapshot"
	"github.com/kopia/kopia/snapshot/snapshotfs"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/blockobj"
	"github.com/snapmove/snapmove/internal/mover/kopia/store"
	"github.com/snapmove/snapmove/internal/mover/kopia/tree"
)

// blockPermissions are the modes of the block snapshot's directory and file, those of
// kopia's virtual entries that the streaming upload of a device wrote before.
const blockPermissions = 0o777

// blockDevice is an open device (or, in tests, a regular file) and its size.
type blockDevice struct {
	f    *os.File
	name string
	size int64
}

func openBlockDevice(p string) (*blockDevice, error) {
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, errors.Wrapf(err, "resolving %s", p)
	}
	st, err := os.Stat(resolved)
	if err != nil {
		return nil, errors.Wrapf(err, "reading %s", resolved)
	}
	if !tree.IsBlockDevice(st) && !st.Mode().IsRegular() {
		return nil, errors.Errorf("%s is not a block device", p)
	}
	f, err := os.Open(resolved)
	if err != nil {
		return nil, errors.Wrapf(err, "opening %s", resolved)
	}
	size, err := f.Seek(0, io.SeekEnd) // a block device's Stat size is 0
	if err != nil {
		_ = f.Close()
		return nil, errors.Wrapf(err, "sizing %s", resolved)
	}
	return &blockDevice{f: f, name: filepath.Base(resolved), size: size}, nil
}

// backupBlock writes the block device of req as a snapshot in the layout Velero 1.18
// and the kopia CLI read (a directory holding one file of exactly the device's size, at
// the volume's source, with Velero's tags), whose file is a blockobj object of aligned
// 1 MiB blocks. What it reads is the least that req.BlockSource allows (planBlockRead):
// the blocks changed since the parent, else the allocated ones, else all. The snapshot
// is tagged with the source's change and volume IDs, so that the next backup can ask
// what changed since this one.
//
// Unlike a filesystem upload it writes no checkpoints: an interrupted block backup's
// retry reads its blocks again (and uploads none that reached the store).
func backupBlock(ctx context.Context, r *store.Repository, req datapath.BackupRequest, si snapshot.SourceInfo, tags map[string]string, parallel int, log logrus.FieldLogger) (datapath.BackupResult, *snapshot.Manifest, error) {
	dev, err := openBlockDevice(req.Path)
	if err != nil {
		return datapath.BackupResult{}, nil, err
	}
	defer dev.f.Close() //nolint:errcheck
	src := req.BlockSource
	if src.ChangeID != "" {
		tags[store.TagChangeID] = src.ChangeID
	}
	if src.VolumeID != "" {
		tags[store.TagVolumeID] = src.VolumeID
	}
	progress := newUploadProgress(req.OnProgress, req.ProgressInterval, dev.size, log)

	var (
		result datapath.BackupResult
		man    *snapshot.Manifest
	)
	err = repo.WriteSession(ctx, r.Direct(), repo.WriteSessionOptions{Purpose: "snapmove block backup " + si.Path},
		func(ctx context.Context, w repo.RepositoryWriter) error {
			if _, err := setupPolicy(ctx, w, si, parallel, req.Compression); err != nil {
				return err
			}
			parent, _, err := FindPreviousSnapshot(ctx, w, si, tags)
			if err != nil {
				return err
			}
			start := time.Now()
			plan, err := planBlockRead(ctx, w, parent, src)
			if err != nil {
				return err
			}
			breq := plan.request
			breq.Device, breq.Size = dev.f, dev.size
			res, err := blockobj.Write(ctx, w, breq, blockobj.Options{
				Parallel:   parallel,
				Compressor: compression.Name(orNone(req.Compression)),
				OnProgress: func(p blockobj.Progress) { progress.hashed.Store(p.Done); progress.maybeReport() },
			})
			if err != nil {
				if ctx.Err() != nil {
					return errors.Wrap(context.Cause(ctx), "writing the device's blocks")
				}
				return errors.Wrap(err, "writing the device's blocks")
			}
			read := plan.read
			read.BytesRead, read.DeviceBytes = res.BytesRead, dev.size
			read.BlocksRead, read.BlocksReused, read.BlocksZero = res.BlocksWritten, res.BlocksReused, res.BlocksZero

			man, err = blockManifest(ctx, w, si, dev, res.ObjectID, start)
			if err != nil {
				return err
			}
			man.Tags = tags
			id, verification, err := verifyAndSave(ctx, r, w, man, parent, req, parallel, log)
			if err != nil {
				return err
			}
			if err := deleteCheckpoints(ctx, w, si, log); err != nil {
				return err
			}
			result = datapath.BackupResult{
				SnapshotID:       string(id),
				TotalBytes:       dev.size,
				IncrementalBytes: res.BytesRead,
				Empty:            dev.size == 0,
				Block:            &read,
				Verification:     verification,
			}
			return nil
		})
	if err != nil {
		return datapath.BackupResult{}, nil, err
	}
	progress.finish(result.TotalBytes)
	log.WithFields(logrus.Fields{
		"readMethod":   result.Block.Method,
		"fallback":     result.Block.Fallback,
		"parent":       result.Block.Parent,
		"bytesRead":    result.Block.BytesRead,
		"blocksRead":   result.Block.BlocksRead,
		"blocksReused": result.Block.BlocksReused,
		"blocksZero":   result.Block.BlocksZero,
	}).Info("read the block device")
	return result, man, nil
}

func orNone(c string) string {
	if c == datapath.CompressionNone {
		return ""
	}
	return c
}

// blockPlan is what a block backup reads: the request for blockobj.Write (without the
// device) and how it was chosen.
type blockPlan struct {
	request blockobj.Request
	read    datapath.BlockRead
}

// planBlockRead chooses what to read, from the cheapest: the ranges changed since the
// parent (its blocks reused), when the parent is usable and the metadata service
// answers; else the allocated ranges; else the whole device. Each step down says why in
// read.Fallback. It fails only when ctx ends: an answer that cannot be had means reading
// more, never less.
func planBlockRead(ctx context.Context, rep repo.Repository, parent *snapshot.Manifest, src datapath.BlockSource) (blockPlan, error) {
	if src.Changes == nil {
		why := src.NoChanges
		if why == "" {
			why = "no changed block metadata service"
		}
		return blockPlan{request: blockobj.Request{Kind: blockobj.ReadAll}, read: datapath.BlockRead{Method: datapath.BlockReadAll, Fallback: why}}, nil
	}
	var whys []string
	parentObj, why, err := usableParent(ctx, rep, parent, src)
	if err != nil {
		return blockPlan{}, err
	}
	if why == "" {
		base := parent.Tags[store.TagChangeID]
		ranges, err := src.Changes.Delta(ctx, base)
		if err == nil {
			return blockPlan{
				request: blockobj.Request{Kind: blockobj.ChangedSinceParent, Parent: parentObj, Ranges: blockRanges(ranges)},
				read:    datapath.BlockRead{Method: datapath.BlockReadChanged, Parent: string(parent.ID)},
			}, nil
		}
		if ctx.Err() != nil {
			return blockPlan{}, errors.Wrap(context.Cause(ctx), "asking what changed")
		}
		why = fmt.Sprintf("the changes since parent snapshot %s could not be had: %v", parent.ID, err)
	}
	whys = append(whys, why)

	ranges, err := src.Changes.Allocated(ctx)
	if err == nil {
		return blockPlan{
			request: blockobj.Request{Kind: blockobj.Allocated, Ranges: blockRanges(ranges)},
			read:    datapath.BlockRead{Method: datapath.BlockReadAllocated, Fallback: strings.Join(whys, "; ")},
		}, nil
	}
	if ctx.Err() != nil {
		return blockPlan{}, errors.Wrap(context.Cause(ctx), "asking what is allocated")
	}
	whys = append(whys, fmt.Sprintf("the allocated ranges could not be had: %v", err))
	return blockPlan{request: blockobj.Request{Kind: blockobj.ReadAll}, read: datapath.BlockRead{Method: datapath.BlockReadAll, Fallback: strings.Join(whys, "; ")}}, nil
}

// usableParent returns the file object of parent when its blocks can be reused with a
// delta since its change ID, or why not. It fails only when ctx ends.
func usableParent(ctx context.Context, rep repo.Repository, parent *snapshot.Manifest, src datapath.BlockSource) (object.ID, string, error) {
	switch {
	case parent == nil:
		return object.EmptyID, "no earlier backup of the volume", nil
	case parent.Tags[store.TagChangeID] == "":
		return object.EmptyID, fmt.Sprintf("parent snapshot %s has no %s tag (not written with changed block tracking)", parent.ID, store.TagChangeID), nil
	case src.VolumeID == "":
		return object.EmptyID, "the volume handle of the snapshot is unknown", nil
	case parent.Tags[store.TagVolumeID] != src.VolumeID:
		return object.EmptyID, fmt.Sprintf("parent snapshot %s was taken of volume %q, this one of %q (another volume behind the PVC)",
			parent.ID, parent.Tags[store.TagVolumeID], src.VolumeID), nil
	case parent.RootEntry == nil || parent.RootEntry.Type != snapshot.EntryTypeDirectory:
		return object.EmptyID, fmt.Sprintf("parent snapshot %s is not a block volume snapshot", parent.ID), nil
	}
	file, why, err := onlyFile(ctx, rep, parent)
	if err != nil || why != "" {
		return object.EmptyID, why, err
	}
	// A resized device reuses the blocks both sizes share (blockobj's plan).
	if _, why, err := blockobj.LoadParent(ctx, rep, file); err != nil || why != "" {
		return object.EmptyID, why, err
	}
	return file, "", nil
}

// onlyFile returns the one file of a block volume snapshot's directory, or why there is
// none.
func onlyFile(ctx context.Context, rep repo.Repository, man *snapshot.Manifest) (object.ID, string, error) {
	root, err := snapshotfs.SnapshotRoot(rep, man)
	if err != nil {
		return object.EmptyID, fmt.Sprintf("parent snapshot %s cannot be read: %v", man.ID, err), nil
	}
	dir, ok := root.(fs.Directory)
	if !ok {
		return object.EmptyID, fmt.Sprintf("parent snapshot %s is not a block volume snapshot", man.ID), nil
	}
	entries, err := fs.GetAllEntries(ctx, dir)
	if err != nil {
		if ctx.Err() != nil {
			return object.EmptyID, "", errors.Wrapf(context.Cause(ctx), "reading parent snapshot %s", man.ID)
		}
		return object.EmptyID, fmt.Sprintf("parent snapshot %s cannot be read: %v", man.ID, err), nil
	}
	if len(entries) != 1 || entries[0].IsDir() {
		return object.EmptyID, fmt.Sprintf("parent snapshot %s is not a block volume snapshot (%d entries)", man.ID, len(entries)), nil
	}
	h, ok := entries[0].(object.HasObjectID)
	if !ok {
		return object.EmptyID, fmt.Sprintf("parent snapshot %s's file has no object", man.ID), nil
	}
	return h.ObjectID(), "", nil
}

func blockRanges(rs []datapath.ByteRange) []blockobj.Range {
	out := make([]blockobj.Range, len(rs))
	for i, r := range rs {
		out[i] = blockobj.Range{Offset: r.Offset, Length: r.Length}
	}
	return out
}

// blockManifest writes the directory of a block volume snapshot (one file, the device's
// object) and returns the snapshot's manifest, without tags and not yet saved.
func blockManifest(ctx context.Context, w repo.RepositoryWriter, si snapshot.SourceInfo, dev *blockDevice, id object.ID, start time.Time) (*snapshot.Manifest, error) {
	now := fs.UTCTimestampFromTime(time.Now())
	file := &snapshot.DirEntry{
		Name: dev.name, Type: snapshot.EntryTypeFile, Permissions: blockPermissions,
		FileSize: dev.size, ModTime: now, ObjectID: id,
	}
	summary := fs.DirectorySummary{TotalFileSize: dev.size, TotalFileCount: 1, TotalDirCount: 1, MaxModTime: now}
	dirID, err := snapshotfs.WriteDirManifest(ctx, w, ".", &snapshot.DirManifest{
		StreamType: directoryStreamType,
		Entries:    []*snapshot.DirEntry{file},
		Summary:    &summary,
	}, "")
	if err != nil {
		return nil, errors.Wrap(err, "writing the block snapshot's directory")
	}
	return &snapshot.Manifest{
		Source: si,
		RootEntry: &snapshot.DirEntry{
			Name: dev.name, Type: snapshot.EntryTypeDirectory, Permissions: blockPermissions,
			ModTime: now, ObjectID: dirID, DirSummary: &summary,
		},
		Description: store.Description,
		StartTime:   fs.UTCTimestampFromTime(start),
		EndTime:     now,
		Stats:       snapshot.Stats{TotalFileSize: dev.size, TotalFileCount: 1, TotalDirectoryCount: 1},
		Pins:        []string{store.Pin},
	}, nil
}

// directoryStreamType is the stream type of kopia's directory manifests
// (snapshot/snapshotfs/dir_manifest_builder.go).
const directoryStreamType = "kopia:directory"
