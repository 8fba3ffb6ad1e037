//go:build perf

package kopia

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/snapmove/snapmove/internal/mover/datapath"
)

// cbtGranularity is the block of the changes the benchmark's metadata service reports:
// the test CSI driver's (test/csidriver, 64 KiB hashes).
const cbtGranularity = 64 << 10

// cbtAnswer is what a CSI SnapshotMetadata service answers about one snapshot of the cbt
// data set, computed by the benchmark before the timed step, as a driver computes its
// block hashes when it cuts the snapshot, and read by the step's process (PERF_CBT). It
// is a datapath.BlockChanges; asking it costs the step no more than reading a file,
// where a real service adds a gRPC stream of the same ranges.
type cbtAnswer struct {
	ChangeID  string               `json:"changeID"`
	Alloc     []datapath.ByteRange `json:"allocated"`
	Base      string               `json:"base,omitempty"`
	Changed   []datapath.ByteRange `json:"changed,omitempty"`
	HaveDelta bool                 `json:"haveDelta"`
}

func (a *cbtAnswer) Allocated(context.Context) ([]datapath.ByteRange, error) { return a.Alloc, nil }

func (a *cbtAnswer) Delta(_ context.Context, base string) ([]datapath.ByteRange, error) {
	if !a.HaveDelta || base != a.Base {
		return nil, fmt.Errorf("no delta since %q (have %q)", base, a.Base)
	}
	return a.Changed, nil
}

func (a *cbtAnswer) source() datapath.BlockSource {
	return datapath.BlockSource{ChangeID: a.ChangeID, VolumeID: "perf-volume", Changes: a}
}

func readCBT(path string) (*cbtAnswer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var a cbtAnswer
	return &a, json.Unmarshal(b, &a)
}

func (r *perfRun) writeCBT(b *testing.B, a cbtAnswer) string {
	b.Helper()
	out, err := json.Marshal(a)
	if err != nil {
		b.Fatal(err)
	}
	p := r.newDir("cbt") + ".json"
	if err := os.WriteFile(p, out, 0o600); err != nil {
		b.Fatal(err)
	}
	return p
}

// cbtFirst returns src with the metadata service's answer for its first snapshot
// (allocated ranges, no delta); other data sets are returned as they are.
func (r *perfRun) cbtFirst(b *testing.B, src perfSource) perfSource {
	b.Helper()
	if !r.isCBT(src) {
		return src
	}
	alloc, err := allocatedRanges(src.path)
	if err != nil {
		b.Fatal(err)
	}
	src.cbt = r.writeCBT(b, cbtAnswer{ChangeID: "snap-1", Alloc: alloc})
	return src
}

// cbtKeep copies the cbt volume as it is now (the parent's snapshot, for the delta); ""
// for other data sets.
func (r *perfRun) cbtKeep(b *testing.B, src perfSource) string {
	b.Helper()
	if !r.isCBT(src) {
		return ""
	}
	prev := r.newDir("snapshot") + ".img"
	if out, err := exec.Command("cp", "--sparse=always", src.path, prev).CombinedOutput(); err != nil {
		b.Fatalf("cp: %v\n%s", err, out)
	}
	return prev
}

// cbtNext returns src with the answer for its next snapshot: the changes since the
// first, computed against prev (cbtKeep's copy), or none when prev is "".
func (r *perfRun) cbtNext(b *testing.B, src perfSource, prev string) perfSource {
	b.Helper()
	if !r.isCBT(src) {
		return src
	}
	alloc, err := allocatedRanges(src.path)
	if err != nil {
		b.Fatal(err)
	}
	a := cbtAnswer{ChangeID: "snap-2", Alloc: alloc, Base: "snap-1", HaveDelta: true}
	if prev != "" {
		if a.Changed, err = changedRanges(prev, src.path); err != nil {
			b.Fatal(err)
		}
		_ = os.Remove(prev)
	}
	src.cbt = r.writeCBT(b, a)
	return src
}

func (r *perfRun) isCBT(src perfSource) bool { return src.name == "cbt" }

// allocatedRanges are the data extents of path (SEEK_DATA/SEEK_HOLE), as the test CSI
// driver answers GetMetadataAllocated.
func allocatedRanges(path string) ([]datapath.ByteRange, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var out []datapath.ByteRange
	for off := int64(0); off < st.Size(); {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err != nil {
			break // ENXIO: no data after off
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		out = append(out, datapath.ByteRange{Offset: data, Length: hole - data})
		off = hole
	}
	return out, nil
}

// changedRanges are the cbtGranularity blocks in which a and b differ (adjacent ones
// merged), as the test CSI driver answers GetMetadataDelta.
func changedRanges(a, b string) ([]datapath.ByteRange, error) {
	fa, err := os.Open(a)
	if err != nil {
		return nil, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return nil, err
	}
	defer fb.Close()
	ba, bb := make([]byte, cbtGranularity), make([]byte, cbtGranularity)
	var out []datapath.ByteRange
	for off := int64(0); ; off += cbtGranularity {
		nb, _ := io.ReadFull(fb, bb) // the new snapshot sets the length
		na, _ := io.ReadFull(fa, ba)
		if nb == 0 {
			break
		}
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			if n := len(out); n > 0 && out[n-1].Offset+out[n-1].Length == off {
				out[n-1].Length += int64(nb)
			} else {
				out = append(out, datapath.ByteRange{Offset: off, Length: int64(nb)})
			}
		}
		if nb < cbtGranularity {
			break
		}
	}
	return out, nil
}
