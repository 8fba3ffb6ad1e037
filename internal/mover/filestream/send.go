package filestream

import (
	"archive/tar"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pkg/errors"
)

// Owners gives the owner of the entry at rel (slash-separated, relative to the tree
// sent), or ok false to send the owner it has on disk.
type Owners func(rel string) (uid, gid int, ok bool)

// Send writes the tree under dir (not dir itself) to w as a tar stream: directories,
// regular files and symlinks with their modes, owners (from owners, when not nil) and
// modification times, parents before their children, then the end marker. Other file
// types fail. It does not close w.
func Send(ctx context.Context, dir string, w io.Writer, owners Owners) error {
	tw := tar.NewWriter(w)
	entries := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode().IsDir(), fi.Mode().IsRegular():
		default:
			return errors.Errorf("%s: cannot send a %s", rel, fi.Mode().Type())
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return errors.Wrapf(err, "describing %s", rel)
		}
		hdr.Name = filepath.ToSlash(rel)
		if owners != nil {
			if uid, gid, ok := owners(hdr.Name); ok {
				hdr.Uid, hdr.Gid = uid, gid
			}
		}
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return errors.Wrapf(err, "sending %s", rel)
		}
		entries++
		if fi.Mode().IsRegular() {
			if err := sendFile(tw, p); err != nil {
				return errors.Wrapf(err, "sending %s", rel)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	end := &tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "end", Format: tar.FormatPAX,
		PAXRecords: map[string]string{endRecord: strconv.Itoa(entries)}}
	if err := tw.WriteHeader(end); err != nil {
		return errors.Wrap(err, "ending the stream")
	}
	return errors.Wrap(tw.Close(), "ending the stream")
}

func sendFile(w io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// Throttle limits writes to w to about bytesPerSecond (none when it is not positive):
// each write returns no sooner than the bytes written so far allow.
func Throttle(w io.Writer, bytesPerSecond int64) io.Writer {
	if bytesPerSecond <= 0 {
		return w
	}
	return &throttled{w: w, rate: bytesPerSecond, start: time.Now()}
}

type throttled struct {
	w       io.Writer
	rate    int64
	start   time.Time
	written int64
}

// throttleChunk is the most a throttled write passes on at once, so that a large write
// is spread over time rather than sent in a burst after a long sleep.
const throttleChunk = 16 << 10

func (t *throttled) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n := min(len(p)-done, throttleChunk)
		m, err := t.w.Write(p[done : done+n])
		done += m
		t.written += int64(m)
		if err != nil {
			return done, err
		}
		due := t.start.Add(time.Duration(float64(t.written) / float64(t.rate) * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
	}
	return done, nil
}
