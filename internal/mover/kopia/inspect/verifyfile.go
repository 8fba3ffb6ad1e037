package inspect

// The checks of one file or symlink that a verification walk reaches.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/object"
	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/tree"
)

// selected says whether file rel's content is read back, and keeps the sample's fallback.
func (v *verifier) selected(rel string, e *snapshot.DirEntry) bool {
	switch v.mode.Level {
	case datapath.VerifyFull:
		return true
	case datapath.VerifySample:
	default:
		return false
	}
	d := sha256.Sum256([]byte(v.seed + "\x00" + rel)) // FNV's low bits follow similar names
	sum := binary.BigEndian.Uint64(d[:8])
	in := sum%10000 < uint64(v.mode.Percent)*100 //nolint:gosec // 1..100
	if e.FileSize > 0 {
		v.mu.Lock()
		if in {
			v.sampledFiles++
		} else if c := v.fallback; c == nil || sum < c.hash || (sum == c.hash && rel < c.rel) {
			v.fallback = &sampleCandidate{hash: sum, rel: rel, e: e}
		}
		v.mu.Unlock()
	}
	return in
}

// checkFile checks that file rel's chunks are in the index, contiguous and as long as the
// file, and with read reads them back (parts of a large file on other walkers when one
// is free; a nil walkers reads inline).
func (v *verifier) checkFile(ctx context.Context, walkers *tree.Walker, rel string, e *snapshot.DirEntry, read bool) error {
	var chunks []object.IndirectObjectEntry
	err := retry(ctx, func() (err error) {
		chunks, err = tree.Chunks(ctx, v.cr, e.ObjectID, e.FileSize)
		return err
	})
	if err != nil {
		return v.failed(ctx, rel, err, "reading the file's seek table")
	}
	for _, c := range chunks {
		if err := retry(ctx, func() error { return v.checkIndexed(ctx, rel, c) }); err != nil {
			return v.failed(ctx, rel, err, "looking up bytes %d-%d", c.Start, c.Start+c.Length)
		}
	}
	if !read {
		return nil
	}
	v.filesRead.Add(1)
	for len(chunks) > 0 {
		n, size := 0, int64(0)
		for n < len(chunks) && (n == 0 || size < verifyPartBytes) {
			size += chunks[n].Length
			n++
		}
		part := chunks[:n]
		chunks = chunks[n:]
		job := func() error { return v.readChunks(ctx, rel, part) }
		if len(chunks) == 0 { // the last part: on this walker
			walkers = nil
		}
		if err := walkers.Go(job); err != nil {
			return err
		}
	}
	return nil
}

// checkIndexed checks that chunk c of file rel is in the index, not deleted, and (when
// not compressed at the object level) as long as the chunk, and notes its pack blob.
func (v *verifier) checkIndexed(ctx context.Context, rel string, c object.IndirectObjectEntry) error {
	cid, compressed, direct := c.Object.ContentID()
	if !direct {
		_, err := v.rep.VerifyObject(ctx, c.Object)
		return err
	}
	info, err := v.rep.ContentInfo(ctx, cid)
	if err != nil {
		return err
	}
	if info.Deleted {
		return errors.Errorf("content %v is marked deleted", cid)
	}
	if !compressed && int64(info.OriginalLength) != c.Length {
		return errors.Errorf("content %v holds %d bytes, the seek table says %d", cid, info.OriginalLength, c.Length)
	}
	end := int64(info.PackOffset) + int64(info.PackedLength)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.packs == nil {
		v.packs = map[blob.ID]packUse{}
	}
	if use, ok := v.packs[info.PackBlobID]; !ok || end > use.end {
		if ok {
			rel = use.rel
		}
		v.packs[info.PackBlobID] = packUse{end: end, rel: rel}
	}
	return nil
}

// readChunks reads chunks of file rel back in full.
func (v *verifier) readChunks(ctx context.Context, rel string, chunks []object.IndirectObjectEntry) error {
	for _, c := range chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		var n int64
		err := retry(ctx, func() (err error) {
			n, err = readAllOf(ctx, v.rep, c.Object)
			return err
		})
		if err == nil && n != c.Length {
			err = errors.Errorf("read %d bytes, expected %d", n, c.Length)
		}
		if err != nil {
			return v.failed(ctx, rel, err, "reading bytes %d-%d", c.Start, c.Start+c.Length)
		}
		v.bytesRead.Add(n)
	}
	return nil
}

// readAllOf reads object oid to its end and returns its length.
func readAllOf(ctx context.Context, rep repo.Repository, oid object.ID) (int64, error) {
	rd, err := rep.OpenObject(ctx, oid)
	if err != nil {
		return 0, err
	}
	defer rd.Close() //nolint:errcheck
	return io.Copy(io.Discard, rd)
}

// checkSymlink checks that symlink rel's target is in the index.
func (v *verifier) checkSymlink(ctx context.Context, rel string, e *snapshot.DirEntry) error {
	err := retry(ctx, func() error {
		_, err := v.rep.VerifyObject(ctx, e.ObjectID)
		return err
	})
	if err != nil {
		return v.failed(ctx, rel, err, "looking up the symlink's target")
	}
	return nil
}
