//go:build perf

package kopia

// TestVerifyCost times what verification adds to a backup, on datagen's postgres-like set
// (seed 42; PERF_SCALE, default 1: 2,500 files, 1.15 GB) generated once into PERF_DATA
// (default $TMPDIR/snapmove-perf), in one process against a filesystem repository:
//
//	go test -tags perf -run '^TestVerifyCost$' ./internal/mover/kopia/ -v
//
// Steps (verifyCostSteps): a first backup without verification; VerifySnapshot at each
// level on the same open repository (as Backup runs it: index loaded, kopia's cache warm
// with the metadata the backup wrote); the same from a newly opened read-only repository
// without a cache (as a CLI would); a no-op incremental backup and its metadata
// verification. Source and repository files are in the page cache, so content reads cost
// CPU (decrypt and hash), not disk.
//
// BenchmarkVerifyCost runs the same steps for hack/bench.sh, with the benchmarks' settings
// (PERF_DATA, PERF_SCALE, PERF_PARALLEL, PERF_DROP_CACHES), and reports each step's wall
// and CPU time as metrics:
//
//	go test -tags perf -run '^$' -bench '^BenchmarkVerifyCost$/^pg$' -benchtime 1x ./internal/mover/kopia/

import (
	"context"
	"fmt"
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

// verifyCostStep is one timed step of verifyCostSteps.
type verifyCostStep struct {
	key   string // short name, for metrics: backup, metadata, full-new, ...
	label string // what the step did, for logs
	wall  time.Duration
	cpu   time.Duration // user+system CPU of this process during the step
	what  string        // the backup's size or the verification's summary
}

// verifyCostSteps backs src up into a new filesystem repository at repoDir (created if
// missing) with cacheDir as its cache, verifies the snapshot at each level, backs up
// again (nothing changed) and verifies that, timing each step in this process. parallel
// is the backup's BackupRequest.Parallel (0: the data path's default).
func verifyCostSteps(tb testing.TB, src, repoDir, cacheDir string, parallel int) []verifyCostStep {
	tb.Helper()
	ctx := context.Background()
	if err := os.MkdirAll(repoDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	loc := repository.Location{Provider: repository.ProviderFilesystem, Path: repoDir, Prefix: repository.RepositoryPrefix("", "perf")}
	r, err := Open(ctx, loc, perfPassword, Options{Create: true, CacheDir: cacheDir})
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close(ctx) //nolint:errcheck

	var steps []verifyCostStep
	step := func(key, label string, f func() string) {
		var ru0, ru1 syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		start := time.Now()
		what := f()
		wall := time.Since(start)
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
		steps = append(steps, verifyCostStep{key: key, label: label, wall: wall, cpu: cpu, what: what})
	}
	req := datapath.BackupRequest{SourceNamespace: "perf", SourcePVC: "pg", Path: src, Parallel: parallel,
		Verify: datapath.VerifyMode{Level: datapath.VerifyNone}}
	var id string
	step("backup", "backup (first, verify none)", func() string {
		res, err := r.Backup(ctx, req)
		if err != nil {
			tb.Fatal(err)
		}
		id = res.SnapshotID
		return fmt.Sprintf("%d bytes", res.TotalBytes)
	})
	verify := func(rep *Repository, snapshotID string, mode datapath.VerifyMode) func() string {
		return func() string {
			res, err := rep.VerifySnapshot(ctx, snapshotID, mode, nil)
			if err != nil {
				tb.Fatal(err)
			}
			return fmt.Sprintf("verified (%s): %d files, %d bytes; %d files (%d bytes) read back in %s", res.Mode, res.Checked.Files, res.Checked.Bytes, res.FilesRead, res.BytesRead, res.Duration)
		}
	}
	levels := []struct {
		key, name string
		mode      datapath.VerifyMode
	}{
		{"metadata", "metadata", datapath.VerifyMode{Level: datapath.VerifyMetadata}},
		{"sample10", "sample:10", datapath.VerifyMode{Level: datapath.VerifySample, Percent: 10}},
		{"full", "full", datapath.VerifyMode{Level: datapath.VerifyFull}},
	}
	for _, l := range levels {
		step(l.key, "verify "+l.name+" (backup's repository)", verify(r, id, l.mode))
	}
	ro, err := Open(ctx, loc, perfPassword, Options{ReadOnly: true, CacheLimitMB: -1})
	if err != nil {
		tb.Fatal(err)
	}
	defer ro.Close(ctx) //nolint:errcheck
	for _, l := range levels {
		step(l.key+"-new", "verify "+l.name+" (new, no cache)", verify(ro, id, l.mode))
	}
	step("noop", "backup (no-op, verify none)", func() string {
		res, err := r.Backup(ctx, req)
		if err != nil {
			tb.Fatal(err)
		}
		id = res.SnapshotID
		return fmt.Sprintf("%d bytes incremental", res.IncrementalBytes)
	})
	step("noop-metadata", "verify metadata (no-op backup)", verify(r, id, levels[0].mode))
	return steps
}

func TestVerifyCost(t *testing.T) {
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
	for _, s := range verifyCostSteps(t, src, t.TempDir(), t.TempDir(), 0) {
		t.Logf("%-34s wall %8s  cpu %8s  %s", s.label, s.wall.Round(time.Millisecond), s.cpu.Round(time.Millisecond), s.what)
	}
}

// BenchmarkVerifyCost runs verifyCostSteps on pg in this process, its repository and cache
// below PERF_DATA, after reading the source once (or dropping the page cache:
// PERF_DROP_CACHES=1). Metrics: src-MB (logical source bytes), and for each step's key
// <key>-s (wall time) and <key>-cpu-s (this process's user+system CPU during the step).
func BenchmarkVerifyCost(b *testing.B) {
	env := loadPerfEnv(b)
	b.Run("pg", func(b *testing.B) {
		b.StopTimer()
		src := env.shared(b, "pg")
		run := newPerfRun(b, env)
		wall := map[string]time.Duration{}
		cpu := map[string]time.Duration{}
		var keys []string
		for range b.N {
			if env.drop {
				dropCaches(b)
			} else {
				readAll(b, src.path)
			}
			repoDir, cacheDir := run.newDir("repo"), run.newDir("cache")
			b.StartTimer()
			steps := verifyCostSteps(b, src.path, repoDir, cacheDir, env.parallel)
			b.StopTimer()
			keys = keys[:0]
			for _, s := range steps {
				keys = append(keys, s.key)
				wall[s.key] += s.wall
				cpu[s.key] += s.cpu
				b.Logf("%-38s wall %8s  cpu %8s  %s", s.label, s.wall.Round(time.Millisecond), s.cpu.Round(time.Millisecond), s.what)
			}
			_ = os.RemoveAll(repoDir)
			_ = os.RemoveAll(cacheDir)
		}
		n := float64(b.N)
		b.ReportMetric(float64(src.bytes)/1e6, "src-MB")
		for _, k := range keys {
			b.ReportMetric(wall[k].Seconds()/n, k+"-s")
			b.ReportMetric(cpu[k].Seconds()/n, k+"-cpu-s")
		}
	})
}
