package tree

import (
	"context"
	stderrors "errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/manifest"
	"github.com/kopia/kopia/repo/object"
	"github.com/kopia/kopia/snapshot"
	"github.com/pkg/errors"
)

// Path selection: a path of a snapshot looked up by exact names (Lookup, for browsing)
// or matched by patterns (Match, for restoring chosen files). Both read directories
// through a Reader, each once, and refuse a directory that the restore would refuse.

// ErrNotFound is wrapped by the errors for a snapshot that does not exist, a path that is
// not in the snapshot, and a pattern that matches nothing; test with errors.Is. The
// message names the snapshot and the path.
var ErrNotFound = stderrors.New("not found")

// notFoundError is an error that wraps ErrNotFound with its own message.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string        { return e.msg }
func (e *notFoundError) Is(target error) bool { return target == ErrNotFound }

func notFound(format string, args ...any) error {
	return &notFoundError{msg: fmt.Sprintf(format, args...)}
}

// LoadSnapshot loads snapshot id, which must have a root entry, from rep (at where, for
// errors). An unknown ID wraps ErrNotFound.
func LoadSnapshot(ctx context.Context, rep repo.Repository, id string, where fmt.Stringer) (*snapshot.Manifest, error) {
	if id == "" {
		return nil, errors.New("empty snapshot ID")
	}
	man, err := snapshot.LoadSnapshot(ctx, rep, manifest.ID(id))
	if stderrors.Is(err, snapshot.ErrSnapshotNotFound) {
		return nil, notFound("snapshot %s not found in repository at %s", id, where)
	}
	if err != nil {
		return nil, errors.Wrapf(err, "loading snapshot %s from repository at %s", id, where)
	}
	if man.RootEntry == nil {
		return nil, errors.Errorf("snapshot %s has no root entry", id)
	}
	return man, nil
}

// CleanPath cleans a slash-separated path relative to a snapshot's root: "", "/" and "."
// are the root, returned as "."; leading slashes are dropped. A path that leaves the root
// ("..") is refused.
func CleanPath(p string) (string, error) {
	c := path.Clean(strings.TrimLeft(p, "/"))
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", errors.Errorf("path %q leaves the snapshot's root", p)
	}
	return c, nil
}

// Components splits a cleaned path into its components; the root has none.
func Components(clean string) []string {
	if clean == "." {
		return nil
	}
	return strings.Split(clean, "/")
}

// Reader lists directories of one snapshot, each once, and refuses a directory that the
// restore would refuse (CheckNames). It is not safe for concurrent use.
type Reader struct {
	rep      repo.Repository
	id       string
	lists    map[object.ID][]*snapshot.DirEntry // without colliding names
	all      map[object.ID][]*snapshot.DirEntry
	collided map[object.ID][]Collision
	// matchedCollisions are the colliding names that Match's patterns matched.
	matchedCollisions []Collision
}

// NewReader reads snapshot id of rep.
func NewReader(rep repo.Repository, id string) *Reader {
	return &Reader{rep: rep, id: id, lists: map[object.ID][]*snapshot.DirEntry{}, all: map[object.ID][]*snapshot.DirEntry{},
		collided: map[object.ID][]Collision{}}
}

// List returns the entries of directory d, without those whose names collide (CheckNames).
func (sr *Reader) List(ctx context.Context, d Dir) ([]*snapshot.DirEntry, error) {
	if entries, ok := sr.lists[d.Entry.ObjectID]; ok {
		return entries, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	entries, err := ReadDir(ctx, sr.rep, d.Entry.ObjectID)
	if err != nil {
		return nil, errors.Wrapf(err, "listing %q of snapshot %s", d.Rel, sr.id)
	}
	all := entries
	entries, collisions, err := CheckNames(entries, fmt.Sprintf("%q of snapshot %s", d.Rel, sr.id))
	if err != nil {
		return nil, err
	}
	sr.lists[d.Entry.ObjectID] = entries
	sr.all[d.Entry.ObjectID] = all
	sr.collided[d.Entry.ObjectID] = collisions
	return entries, nil
}

// ListAll returns the entries of directory d, a name it holds more than once as often as
// it holds it (what `ls` shows).
func (sr *Reader) ListAll(ctx context.Context, d Dir) ([]*snapshot.DirEntry, error) {
	if _, err := sr.List(ctx, d); err != nil {
		return nil, err
	}
	return sr.all[d.Entry.ObjectID], nil
}

// Collisions are the names that the patterns of Match matched in a directory holding
// them more than once (CheckNames): no match stands for them, and a restore of the
// matches fails naming them once it has written the rest.
func (sr *Reader) Collisions() []Collision { return sr.matchedCollisions }

// Lookup returns the entry at clean (CleanPath) below root, by exact names.
func (sr *Reader) Lookup(ctx context.Context, root *snapshot.DirEntry, clean string) (*snapshot.DirEntry, error) {
	d := Root(root)
	for _, name := range Components(clean) {
		if d.Entry.Type != snapshot.EntryTypeDirectory {
			return nil, notFound("%q not found in snapshot %s: %q is not a directory", clean, sr.id, d.Rel)
		}
		entries, err := sr.List(ctx, d)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(entries, func(e *snapshot.DirEntry) bool { return e.Name == name })
		if c := slices.IndexFunc(sr.collided[d.Entry.ObjectID], func(c Collision) bool { return c.Name == name }); i < 0 && c >= 0 {
			return nil, errors.Errorf("%q of snapshot %s: %q holds %d entries named %q, one cannot be told from the other",
				clean, sr.id, d.Rel, sr.collided[d.Entry.ObjectID][c].Count, name)
		}
		if i < 0 {
			return nil, notFound("%q not found in snapshot %s", clean, sr.id)
		}
		d = d.Child(entries[i])
	}
	return d.Entry, nil
}

// Match is an entry of a snapshot that a pattern matched.
type Match struct {
	Rel   string // slash-separated, relative to the snapshot's root; "." for the root
	Entry *snapshot.DirEntry
	Chain []*snapshot.DirEntry // the entry of each component of Rel; the last is Entry
}

// Match resolves paths below root: each is cleaned, and each of its components is a
// path.Match pattern matched against the names of the directory at that level (only
// directories are descended into). Every pattern is checked, and every path must match,
// before anything is returned: a bad pattern, a path leaving the root or a path matching
// nothing (which wraps ErrNotFound) is an error, as is a match longer than MaxPath. The
// matches are returned once each, sorted by path.
func (sr *Reader) Match(ctx context.Context, root *snapshot.DirEntry, paths []string) ([]Match, error) {
	patterns := make([][]string, len(paths))
	for i, p := range paths {
		clean, err := CleanPath(p)
		if err != nil {
			return nil, err
		}
		patterns[i] = Components(clean)
		for _, c := range patterns[i] {
			if _, err := path.Match(c, ""); err != nil {
				return nil, errors.Wrapf(err, "path %q", p)
			}
		}
	}
	found := map[string]Match{}
	for i, p := range paths {
		n, collided := 0, len(sr.matchedCollisions)
		err := sr.expand(ctx, Root(root), nil, patterns[i], func(m Match) {
			n++
			found[m.Rel] = m
		})
		if err != nil {
			return nil, err
		}
		if n == 0 && len(sr.matchedCollisions) == collided {
			return nil, notFound("path %q matches nothing in snapshot %s", p, sr.id)
		}
	}
	matches := make([]Match, 0, len(found))
	for _, m := range found {
		if len(m.Rel) > MaxPath {
			return nil, errors.Errorf("refusing %q: longer than %d bytes", m.Rel, MaxPath)
		}
		matches = append(matches, m)
	}
	sort.Slice(matches, func(i, j int) bool { return matches[i].Rel < matches[j].Rel })
	return matches, nil
}

// expand calls emit for every entry below d (reached through chain) that the components
// of pattern match.
func (sr *Reader) expand(ctx context.Context, d Dir, chain []*snapshot.DirEntry, pattern []string, emit func(Match)) error {
	if len(pattern) == 0 {
		emit(Match{Rel: d.Rel, Entry: d.Entry, Chain: chain})
		return nil
	}
	if d.Entry.Type != snapshot.EntryTypeDirectory {
		return nil
	}
	entries, err := sr.List(ctx, d)
	if err != nil {
		return err
	}
	for _, c := range sr.collided[d.Entry.ObjectID] {
		if ok, _ := path.Match(pattern[0], c.Name); ok { // CollisionsError names each once
			sr.matchedCollisions = append(sr.matchedCollisions, c)
		}
	}
	for _, e := range entries {
		if ok, _ := path.Match(pattern[0], e.Name); !ok { // patterns were checked
			continue
		}
		if err := sr.expand(ctx, d.Child(e), append(slices.Clip(chain), e), pattern[1:], emit); err != nil {
			return err
		}
	}
	return nil
}
