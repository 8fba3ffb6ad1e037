//go:build perf

package kopia

// TestVerifyCost times what verification adds to a backup, on datagen's postgres-like set
// (seed 42; PERF_SCALE, default 1: 2,500 files, 1.15 GB) generated once into PERF_DATA
// (default $TMPDIR/snapmove-perf), in one process against a filesystem repository:
//
//	go test -tags perf -run '^TestVerifyCost$' ./internal/mover/kopia/ -v
//
// Steps: a first backup without verification; VerifySnapshot at each level on the same
// open repository (as Backup runs it: index loaded, kopia's cache warm with the metadata
// the backup wrote); the same from a newly opened read-only repository without a cache
// (as a CLI would); a no-op incremental backup and its metadata verification. Source and
// repository files are in the page cache, so content reads cost CPU (decrypt and hash),
// not disk.

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/repository"
	"github.com/snapmove/snapmove/test/datagen"
)

func TestVerifyCost(t *testing.T) {
	ctx := context.Background()
	data := os.Getenv("PERF_DATA")
	if data == "" {
		data = filepath.Join(os.TempDir(), "snapmove-perf")
	}
	scale := 1.0
	if s := os.Getenv("PERF_SCALE"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		scale = v
	}
	src := filepath.Join(data, "pg")
	if _, err := datagen.EnsurePG(src, perfPGSeed, scale); err != nil {
		t.Fatal(err)
	}
	loc := repository.Location{Provider: repository.ProviderFilesystem, Path: t.TempDir(), Prefix: repository.RepositoryPrefix("", "perf")}
	r, err := Open(ctx, loc, "perf-password", Options{Create: true, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx) //nolint:errcheck

	step := func(name string, f func() string) {
		var ru0, ru1 syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		start := time.Now()
		what := f()
		wall := time.Since(start)
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
		t.Logf("%-34s wall %8s  cpu %8s  %s", name, wall.Round(time.Millisecond), cpu.Round(time.Millisecond), what)
	}
	req := datapath.BackupRequest{SourceNamespace: "perf", SourcePVC: "pg", Path: src, Verify: datapath.VerifyMode{Level: datapath.VerifyNone}}
	var id string
	step("backup (first, verify none)", func() string {
		res, err := r.Backup(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		id = res.SnapshotID
		return formatBytes(res.TotalBytes)
	})
	verify := func(rep *Repository, snapshotID string, mode datapath.VerifyMode) func() string {
		return func() string {
			res, err := rep.VerifySnapshot(ctx, snapshotID, mode, nil)
			if err != nil {
				t.Fatal(err)
			}
			return res.Summary
		}
	}
	levels := []struct {
		name string
		mode datapath.VerifyMode
	}{
		{"metadata", datapath.VerifyMode{Level: datapath.VerifyMetadata}},
		{"sample:10", datapath.VerifyMode{Level: datapath.VerifySample, Percent: 10}},
		{"full", datapath.VerifyMode{Level: datapath.VerifyFull}},
	}
	for _, l := range levels {
		step("verify "+l.name+" (backup's repository)", verify(r, id, l.mode))
	}
	ro, err := Open(ctx, loc, "perf-password", Options{ReadOnly: true, CacheLimitMB: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close(ctx) //nolint:errcheck
	for _, l := range levels {
		step("verify "+l.name+" (new, no cache)", verify(ro, id, l.mode))
	}
	step("backup (no-op, verify none)", func() string {
		res, err := r.Backup(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		id = res.SnapshotID
		return formatBytes(res.IncrementalBytes) + " incremental"
	})
	step("verify metadata (no-op backup)", verify(r, id, levels[0].mode))
}
