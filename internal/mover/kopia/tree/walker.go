package tree

import (
	"context"

	"github.com/kopia/kopia/snapshot"
	"golang.org/x/sync/errgroup"
)

// MaxPath bounds the paths of a snapshot below its root: what a backup could read
// (PATH_MAX). It keeps the directories a walk holds open, and a restore's openat2 path,
// bounded.
const MaxPath = 4095

// Dir is a directory of a snapshot that a walk reached.
type Dir struct {
	Entry *snapshot.DirEntry
	// Rel is the slash-separated path below the snapshot's root; "." is the root.
	Rel string
	// Depth is the number of components of Rel; 0 for the root.
	Depth int
}

// Root is the walk's start: the snapshot's root directory e.
func Root(e *snapshot.DirEntry) Dir { return Dir{Entry: e, Rel: "."} }

// Child is subdirectory e of d.
func (d Dir) Child(e *snapshot.DirEntry) Dir {
	return Dir{Entry: e, Rel: Join(d.Rel, e.Name), Depth: d.Depth + 1}
}

// Join is the path of entry name of directory dir ("." for the root).
func Join(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// Walker runs the jobs of one walk of a snapshot tree (a directory to list, a file to
// check or queue): up to parallel at once, and a job that finds no free walker runs
// inline on the caller's. So a walk never waits for a walker while it holds what it
// has open (a target directory, a listing), and the depth of the tree bounds nothing
// but the stack. The restore and the verification walk with it; path selection, which
// reads few directories, walks inline (a nil *Walker).
type Walker struct{ group *errgroup.Group }

// NewWalker returns a walker of up to parallel jobs and the context they run in, which
// ends when a job fails.
func NewWalker(ctx context.Context, parallel int) (*Walker, context.Context) {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	return &Walker{group: g}, ctx
}

// Go runs job on a free walker, or inline when none is free (or w is nil); it returns
// the error of a job run inline. It does not block on other jobs.
func (w *Walker) Go(job func() error) error {
	if w != nil && w.group.TryGo(job) {
		return nil
	}
	return job()
}

// Walk runs job, the walk's start, as Go does, then waits for every job (Wait): it
// returns the first error of any.
func (w *Walker) Walk(job func() error) error {
	err := w.Go(job)
	if waitErr := w.Wait(); err == nil {
		err = waitErr
	}
	return err
}

// Wait blocks until every job has returned, and returns the first error of a job that
// ran on a walker.
func (w *Walker) Wait() error { return w.group.Wait() }
