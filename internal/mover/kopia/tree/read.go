package tree

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/kopia/kopia/fs"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/content"
	"github.com/kopia/kopia/repo/object"
	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"
)

// directoryStreamType marks kopia directory objects (snapshotfs/dir_reader.go).
const directoryStreamType = "kopia:directory"

// ReadDir reads the entries of a snapshot directory object, their names decoded
// (names.go): every reader of a snapshot sees the names the backup read. It does not use
// snapshotfs, which reports a directory's modification time as the newest one below it;
// the entries hold the directory's own. The names are not checked (CheckNames, SafeName).
func ReadDir(ctx context.Context, rep repo.Repository, oid object.ID) ([]*snapshot.DirEntry, error) {
	rd, err := rep.OpenObject(ctx, oid)
	if err != nil {
		return nil, err
	}
	defer rd.Close() //nolint:errcheck
	var dm snapshot.DirManifest
	if err := json.NewDecoder(rd).Decode(&dm); err != nil {
		return nil, errors.Wrap(err, "decoding directory object")
	}
	if dm.StreamType != directoryStreamType {
		return nil, errors.Errorf("not a directory object (stream %q)", dm.StreamType)
	}
	for _, e := range dm.Entries {
		if e.Name, err = originalName(e.Name); err != nil {
			return nil, err
		}
	}
	return dm.Entries, nil
}

// SafeName reports whether name is one path component: not empty, ".", or "..", and
// without "/" or NUL.
func SafeName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

// CheckNames rejects a directory listing holding a name that is not one path component,
// which kopia never writes: the snapshot is hostile or corrupt. dirPath names the
// directory in errors.
//
// It returns the entries without those whose name the directory holds more than once,
// and those names. kopia writes a name twice when names that are not UTF-8 collapse
// into one (encoding/json stores each invalid byte as U+FFFD, and Velero's node-agent
// and the kopia CLI store names as they are: "caf\xe9" and "caf\xe8" both become
// "caf\uFFFD"); a hostile snapshot may hold any name twice. A restore that wrote them
// all would have them race for one name in its target (a symlink out of the target and
// a directory beneath it, say), so a restore writes none of them, restores everything
// else, and then fails naming them (CollisionError): nothing is lost silently.
func CheckNames(entries []*snapshot.DirEntry, dirPath string) ([]*snapshot.DirEntry, []Collision, error) {
	sorted := true // as kopia writes them: no duplicates if strictly ascending
	for i, e := range entries {
		if !SafeName(e.Name) {
			return nil, nil, errors.Errorf("refusing entry name %q in %s", e.Name, dirPath)
		}
		if i > 0 && entries[i-1].Name >= e.Name {
			sorted = false
		}
	}
	if sorted {
		return entries, nil, nil
	}
	count := make(map[string]int, len(entries))
	for _, e := range entries {
		count[e.Name]++
	}
	if len(count) == len(entries) {
		return entries, nil, nil
	}
	var (
		unique     = make([]*snapshot.DirEntry, 0, len(count))
		collisions []Collision
	)
	for _, e := range entries {
		switch n := count[e.Name]; {
		case n == 1:
			unique = append(unique, e)
		case n > 1:
			collisions = append(collisions, Collision{Dir: dirPath, Name: e.Name, Count: n})
			count[e.Name] = 0 // named once
		}
	}
	return unique, collisions, nil
}

// Collision is a name that a snapshot directory holds more than once (CheckNames).
type Collision struct {
	Dir   string // the directory, as the caller named it to CheckNames
	Name  string
	Count int
}

// maxCollisionsReported bounds the collisions a CollisionError lists.
const maxCollisionsReported = 10

// CollisionError is the error of a restore that wrote everything but the entries whose
// names collide.
type CollisionError struct{ Collisions []Collision }

func (e *CollisionError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "restored everything but the entries of %d colliding names (names that were not UTF-8 become one when the snapshot is written by Velero's node-agent or the kopia CLI): ", len(e.Collisions))
	for i, c := range e.Collisions {
		if i == maxCollisionsReported {
			fmt.Fprintf(&b, "; and %d more", len(e.Collisions)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s holds %d entries named %q, none restored", c.Dir, c.Count, c.Name)
	}
	return b.String()
}

// CollisionsError is a *CollisionError listing collisions sorted, or nil when there are none.
func CollisionsError(collisions []Collision) error {
	if len(collisions) == 0 {
		return nil
	}
	cs := slices.Clone(collisions)
	slices.SortFunc(cs, func(a, b Collision) int {
		if c := strings.Compare(a.Dir, b.Dir); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	cs = slices.CompactFunc(cs, func(a, b Collision) bool { return a.Dir == b.Dir && a.Name == b.Name })
	return &CollisionError{Collisions: cs}
}

// ReadObject reads a small object in full: a symlink's target.
func ReadObject(ctx context.Context, rep repo.Repository, oid object.ID) ([]byte, error) {
	rd, err := rep.OpenObject(ctx, oid)
	if err != nil {
		return nil, err
	}
	defer rd.Close() //nolint:errcheck
	data := make([]byte, rd.Length())
	_, err = io.ReadFull(rd, data)
	return data, err
}

// ContentReader is what object.LoadIndexObject needs from a repository.
type ContentReader struct {
	content.Reader
	Rep repo.Repository
}

// NewContentReader is the ContentReader of rep.
func NewContentReader(rep repo.DirectRepository) ContentReader {
	return ContentReader{Reader: rep.ContentReader(), Rep: rep}
}

// PrefetchContents is the repository's.
func (c ContentReader) PrefetchContents(ctx context.Context, ids []content.ID, hint string) []content.ID {
	return c.Rep.PrefetchContents(ctx, ids, hint)
}

// Chunks is the seek table of a file object of size bytes: where each chunk of its
// content goes. The chunks must be contiguous and hold size bytes.
func Chunks(ctx context.Context, cr ContentReader, oid object.ID, size int64) ([]object.IndirectObjectEntry, error) {
	indexID, indirect := oid.IndexObjectID()
	if !indirect {
		return []object.IndirectObjectEntry{{Start: 0, Length: size, Object: oid}}, nil
	}
	entries, err := object.LoadIndexObject(ctx, cr, indexID)
	if err != nil {
		return nil, errors.Wrapf(err, "loading index of object %v", oid)
	}
	var next int64
	for _, e := range entries {
		if e.Start != next {
			return nil, errors.Errorf("object %v: a chunk starts at %d, expected %d", oid, e.Start, next)
		}
		next += e.Length
	}
	if next != size {
		return nil, errors.Errorf("object %v: the chunks hold %d bytes, the directory says %d", oid, next, size)
	}
	return entries, nil
}

// Perm is the permission, setuid, setgid and sticky bits of e, as the restore sets them
// and os.Lstat reports them (kopia keeps os.FileMode's bits, fs.ModBits).
func Perm(e *snapshot.DirEntry) os.FileMode {
	return os.FileMode(e.Permissions) & fs.ModBits //nolint:gosec
}
