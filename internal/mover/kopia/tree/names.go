package tree

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kopia/kopia/fs"
	"github.com/pkg/errors"
)

// Linux file names are bytes, but kopia stores names as JSON strings: a name that is not
// valid UTF-8 would come back with U+FFFD in place of its bad bytes, and two names that
// differ only there would become one. So a backup stores such names encoded, and every
// read of a snapshot directory (ReadDir) decodes them:
//
//   - a name that is valid UTF-8 and does not start with nameMarker is stored as it is
//     (every name kopia can hold, so snapshots look as they always did);
//   - any other name is stored as nameMarker followed by the name with each byte that is
//     not part of a valid UTF-8 sequence, and each '%', written as %XX (upper-case hex).
//
// The encoding is injective, so no two names collide, and readable: the kopia CLI and
// Velero's restore, which do not decode, restore a file named "\xff\xfe-not-utf8" as
// "\uFFFDsnapmove:%FF%FE-not-utf8".
const nameMarker = "\uFFFDsnapmove:"

// storedName is how a backup stores name.
func storedName(name string) string {
	if utf8.ValidString(name) && !strings.HasPrefix(name, nameMarker) {
		return name
	}
	var b strings.Builder
	b.WriteString(nameMarker)
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRuneInString(name[i:])
		if (r == utf8.RuneError && size == 1) || r == '%' {
			fmt.Fprintf(&b, "%%%02X", name[i])
		} else {
			b.WriteString(name[i : i+size])
		}
		i += size
	}
	return b.String()
}

// originalName decodes a stored name. A marked name whose escapes are malformed, or
// that decodes to a name the backup would have stored unmarked, was not written by a
// backup: the snapshot is corrupt or hostile, and this is an error.
func originalName(stored string) (string, error) {
	rest, marked := strings.CutPrefix(stored, nameMarker)
	if !marked {
		return stored, nil
	}
	var b strings.Builder
	for i := 0; i < len(rest); i++ {
		if rest[i] != '%' {
			b.WriteByte(rest[i])
			continue
		}
		if i+2 >= len(rest) {
			return "", errors.Errorf("malformed encoded name %q", stored)
		}
		v, err := strconv.ParseUint(rest[i+1:i+3], 16, 8)
		if err != nil || strings.ToUpper(rest[i+1:i+3]) != rest[i+1:i+3] {
			return "", errors.Errorf("malformed encoded name %q", stored)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	name := b.String()
	if storedName(name) != stored {
		return "", errors.Errorf("malformed encoded name %q", stored)
	}
	return name, nil
}

// EncodeNames returns dir as a backup reads it: every entry below it named as
// storedName says. Entries whose names need no encoding are kopia's own; directories are
// wrapped so that their children are encoded too.
func EncodeNames(dir fs.Directory) fs.Directory {
	return &encodedDir{Directory: dir, name: storedName(dir.Name())}
}

func encodeEntry(e fs.Entry) fs.Entry {
	name := storedName(e.Name())
	switch e := e.(type) {
	case fs.Directory:
		return &encodedDir{Directory: e, name: name}
	case fs.ErrorEntry:
		if name != e.Name() {
			return &encodedError{ErrorEntry: e, name: name}
		}
	case fs.File:
		if name != e.Name() {
			return &encodedFile{File: e, name: name}
		}
	case fs.Symlink:
		if name != e.Name() {
			return &encodedSymlink{Symlink: e, name: name}
		}
	case fs.StreamingFile:
		if name != e.Name() {
			return &encodedStreamingFile{StreamingFile: e, name: name}
		}
	}
	return e
}

type encodedDir struct {
	fs.Directory
	name string
}

func (d *encodedDir) Name() string { return d.name }

// Child looks up a stored name (kopia asks for the names it listed, and for the names of
// the previous snapshot's entries).
func (d *encodedDir) Child(ctx context.Context, stored string) (fs.Entry, error) {
	name, err := originalName(stored)
	if err != nil {
		return nil, fs.ErrEntryNotFound
	}
	e, err := d.Directory.Child(ctx, name)
	if err != nil {
		return nil, err //nolint:wrapcheck // kopia checks for fs.ErrEntryNotFound
	}
	return encodeEntry(e), nil
}

func (d *encodedDir) Iterate(ctx context.Context) (fs.DirectoryIterator, error) {
	it, err := d.Directory.Iterate(ctx)
	if err != nil {
		return nil, err //nolint:wrapcheck // kopia's own error, as the directory returned it
	}
	return encodedIterator{it}, nil
}

type encodedIterator struct{ fs.DirectoryIterator }

func (it encodedIterator) Next(ctx context.Context) (fs.Entry, error) {
	e, err := it.DirectoryIterator.Next(ctx)
	if e == nil || err != nil {
		return e, err //nolint:wrapcheck // the iterator contract: (nil, nil) ends it
	}
	return encodeEntry(e), nil
}

type encodedFile struct {
	fs.File
	name string
}

func (f *encodedFile) Name() string { return f.name }

type encodedSymlink struct {
	fs.Symlink
	name string
}

func (s *encodedSymlink) Name() string { return s.name }

type encodedStreamingFile struct {
	fs.StreamingFile
	name string
}

func (s *encodedStreamingFile) Name() string { return s.name }

type encodedError struct {
	fs.ErrorEntry
	name string
}

func (e *encodedError) Name() string { return e.name }
