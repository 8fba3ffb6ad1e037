//go:build perf

package kopia

// Benchmarks of snapmove's data path (perf-anchors §9): backups and restores of
// datagen's data sets against a filesystem repository, driven through this package's
// API as the worker drives it. hack/bench.sh runs them interleaved with the same steps
// of the kopia CLI and prints ratios; run one benchmark per process so the peak RSS
// belongs to it:
//
//	go test -tags perf -run '^$' -bench '^BenchmarkBackupFirst$/^pg$' -benchtime 1x ./internal/mover/kopia/
//
// Benchmarks: BenchmarkBackupFirst (new repository), BenchmarkBackupNoop (nothing
// changed since the parent), BenchmarkBackup5pct (datagen's 5% mutation since the
// parent) and BenchmarkRestore (parallel NumCPU, WriteSparse off as Velero's default,
// including the final sync), each for
//
//	pg     datagen.GenPG seed 42 (scale 1: 1.15 GB, 2,500 files)
//	large  a directory holding one datagen.GenLarge file, seed 7 (scale 1: 2 GiB, 21% holes)
//	block  the same file backed up and restored as a block volume (Block: true), with no
//	       changed block metadata: every block is read
//	cbt    the same block volume with a CSI SnapshotMetadata service's answers (allocated
//	       ranges, changes since the parent), computed before the timed step as a driver
//	       computes its block hashes when it cuts a snapshot (cbt_perf_test.go)
//
// BenchmarkCompression backs up pg and large with each of datapath.Compressors into a new
// repository and restores the snapshot (sub-benchmarks pg/<compressor> and
// large/<compressor>); it reports the repository's size and each step's wall and CPU time
// (see its doc comment). BenchmarkVerifyCost (verify_perf_test.go) times verification
// after a backup of pg.
//
// Each timed step runs in a new process of this test binary (TestPerf in perf_test.go),
// which opens the repository as the worker does, runs, and closes it, like one CLI
// command or one worker pod: its wall time includes starting the process, and its CPU
// time and peak RSS are the child's own. The repository is created and parents are
// written outside the timer, in the benchmark process.
//
// Environment: PERF_DATA holds the data sets (default $TMPDIR/snapmove-perf; generated
// once, reused while their datagen stamps match) and the scratch repositories;
// PERF_SCALE (default 1) shrinks pg and large; PERF_PARALLEL (default NumCPU);
// PERF_DROP_CACHES=1 drops the page cache before each timed step (cold; root only),
// otherwise the source is read once before it (warm); PERF_VERIFY=0 skips checking
// restored data; PERF_FRESH_FS=1 restores onto a new ext4 filesystem each time (root
// and loop devices; see restoreTarget).
//
// Metrics besides ns/op and MB/s (logical source bytes): cpu-s/GB (user+system CPU of
// the step's process per 10^9 source bytes), peak-RSS-MiB (the step's process's maximum
// RSS), base-RSS-MiB (its RSS before it opened the repository: binary and Go runtime,
// included in the peak), repo-MB (file bytes in the repository afterwards), hashed-MB
// (bytes the backup read because the parent did not cover them; must be 0 for a no-op).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/repository"
	"github.com/snapmove/snapmove/test/datagen"
	"github.com/snapmove/snapmove/test/treecheck"
)

const (
	perfPassword     = "perf-password"
	perfPGSeed       = 42
	perfLargeSeed    = 7
	perfPGMutSeed    = 101
	perfLargeMutSeed = 201
	perfMutPct       = 5
)

var perfDatasets = []string{"pg", "large", "block", "cbt"}

// perfEnv is the benchmark configuration read from the environment.
type perfEnv struct {
	data     string
	scale    float64
	parallel int
	drop     bool
	verify   bool
	freshFS  bool
}

func loadPerfEnv(b *testing.B) perfEnv {
	b.Helper()
	e := perfEnv{
		data:     os.Getenv("PERF_DATA"),
		scale:    1,
		parallel: runtime.NumCPU(),
		drop:     os.Getenv("PERF_DROP_CACHES") == "1",
		verify:   os.Getenv("PERF_VERIFY") != "0",
		freshFS:  os.Getenv("PERF_FRESH_FS") == "1",
	}
	if e.data == "" {
		e.data = filepath.Join(os.TempDir(), "snapmove-perf")
	}
	if s := os.Getenv("PERF_SCALE"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 || v > 1 {
			b.Fatalf("PERF_SCALE %q: want a number in (0, 1]", s)
		}
		e.scale = v
	}
	if s := os.Getenv("PERF_PARALLEL"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("PERF_PARALLEL %q: want a positive integer", s)
		}
		e.parallel = v
	}
	if err := os.MkdirAll(e.data, 0o755); err != nil {
		b.Fatal(err)
	}
	return e
}

// largeSize is GenLarge's size at this scale, in whole MiB.
func (e perfEnv) largeSize() int64 {
	return max(1, int64(float64(datagen.LargeSize)*e.scale)>>20) << 20
}

// perfSource is what a benchmark backs up.
type perfSource struct {
	name  string // pg, large or block
	path  string // the directory, or the file for a block volume
	block bool
	// cbt is the file holding what the metadata service answers about this source now
	// (cbtAnswer; "" for none), written by the benchmark before each backup.
	cbt   string
	bytes int64 // logical file bytes
	files int   // regular files, when more than a default ext4 restore target has inodes for
}

// shared returns data set name, generated once into PERF_DATA; it must not change.
func (e perfEnv) shared(b *testing.B, name string) perfSource {
	b.Helper()
	return e.generate(b, name, e.data, true)
}

// private generates data set name into dir, for mutation.
func (e perfEnv) private(b *testing.B, name, dir string) perfSource {
	b.Helper()
	return e.generate(b, name, dir, false)
}

// generate writes data set name below dir: pg into dir/pg, large and block into
// dir/large/disk.img. With reuse, a tree whose datagen stamp matches is kept.
func (e perfEnv) generate(b *testing.B, name, dir string, reuse bool) perfSource {
	b.Helper()
	src := perfSource{name: name, path: filepath.Join(dir, "large")}
	var err error
	switch name {
	case "pg":
		src.path = filepath.Join(dir, "pg")
		if reuse {
			_, err = datagen.EnsurePG(src.path, perfPGSeed, e.scale)
		} else {
			err = datagen.GenPG(src.path, perfPGSeed, e.scale)
		}
	case "large", "block", "cbt":
		img := filepath.Join(src.path, "disk.img")
		if reuse {
			_, err = datagen.EnsureLarge(img, perfLargeSeed, e.largeSize())
		} else if err = os.MkdirAll(src.path, 0o755); err == nil {
			err = datagen.GenLarge(img, perfLargeSeed, e.largeSize())
		}
	default:
		b.Fatalf("unknown data set %q", name)
	}
	if err != nil {
		b.Fatal(err)
	}
	s, err := datagen.Measure(src.path)
	if err != nil {
		b.Fatal(err)
	}
	src.bytes = s.Bytes
	if name == "block" || name == "cbt" {
		src.path, src.block = filepath.Join(src.path, "disk.img"), true
	}
	return src
}

// mutate applies datagen's 5% step to a private source.
func (s perfSource) mutate(b *testing.B) datagen.Mutation {
	b.Helper()
	var (
		m   datagen.Mutation
		err error
	)
	switch s.name {
	case "pg":
		m, err = datagen.MutatePG(s.path, perfPGMutSeed, perfMutPct)
	case "large":
		m, err = datagen.MutateLarge(filepath.Join(s.path, "disk.img"), perfLargeMutSeed, perfMutPct)
	default:
		m, err = datagen.MutateLarge(s.path, perfLargeMutSeed, perfMutPct)
	}
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// perfRun is one benchmark's scratch space below PERF_DATA: repository, caches, restores.
type perfRun struct {
	env perfEnv
	dir string
	n   int
}

func newPerfRun(b *testing.B, env perfEnv) *perfRun {
	b.Helper()
	dir, err := os.MkdirTemp(env.data, "run-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(dir) })
	return &perfRun{env: env, dir: dir}
}

// newDir returns a new empty directory name (not created).
func (r *perfRun) newDir(what string) string {
	r.n++
	return filepath.Join(r.dir, fmt.Sprintf("%s-%d", what, r.n))
}

// restoreTarget returns the path a restore of src writes to (not created) and the
// function that removes it. With PERF_FRESH_FS=1 the path is on an ext4 filesystem made
// for this restore, as a worker restores into a newly provisioned volume: on a
// filesystem where the previous restore's files were just deleted, ext4's inode
// allocator steps over every recently freed inode (recently_deleted), which took more
// than half the CPU of restoring the 2,500-file tree, for the kopia CLI and snapmove
// alike. hack/bench.sh gives the CLI's restores the same kind of target.
func (r *perfRun) restoreTarget(b *testing.B, src perfSource) (string, func()) {
	b.Helper()
	dir := r.newDir("restore")
	if !r.env.freshFS {
		return dir, func() { _ = os.RemoveAll(dir) }
	}
	img := dir + ".img"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(img)
	if err == nil {
		// Twice the data, a block and an inode for each file (2 million files of 1 KiB
		// take 8 GB of blocks), and 1 GiB of room; sparse until written.
		err = errors.Join(f.Truncate(2*src.bytes+int64(src.files)*(4096+256)+1<<30), f.Close())
	}
	if err != nil {
		b.Fatal(err)
	}
	mkfs := []string{"mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"}
	if src.files > 0 {
		mkfs = append(mkfs, "-N", strconv.Itoa(src.files+src.files/8+1000))
	}
	for _, args := range [][]string{
		append(mkfs, img),
		{"mount", "-o", "loop", img, dir},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("PERF_FRESH_FS=1 (needs root and loop devices): %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return filepath.Join(dir, "target"), func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			b.Errorf("umount %s: %v\n%s", dir, err, out)
		}
		_ = os.Remove(img)
		_ = os.RemoveAll(dir)
	}
}

// createRepository creates an empty repository and returns its location.
func (r *perfRun) createRepository(b *testing.B) repository.Location {
	b.Helper()
	loc := repository.Location{Provider: repository.ProviderFilesystem, Path: r.newDir("repo"), Prefix: repository.RepositoryPrefix("", "perf")}
	if err := os.MkdirAll(loc.Path, 0o755); err != nil {
		b.Fatal(err)
	}
	rep := r.open(b, loc, r.newDir("cache"), true)
	if err := rep.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	return loc
}

func (r *perfRun) open(b *testing.B, loc repository.Location, cacheDir string, create bool) *Repository {
	b.Helper()
	// PERF_HASH: the hash of a repository this creates (hack/bench.sh BENCH_HASH)
	rep, err := Open(context.Background(), loc, perfPassword, Options{Create: create, CacheDir: cacheDir, Hash: os.Getenv("PERF_HASH")})
	if err != nil {
		b.Fatal(err)
	}
	return rep
}

// backup runs one backup in this process (setup: a parent snapshot) the way a worker
// does: open, back up, close.
func (r *perfRun) backup(b *testing.B, loc repository.Location, cacheDir string, src perfSource) datapath.BackupResult {
	b.Helper()
	ctx := context.Background()
	rep := r.open(b, loc, cacheDir, false)
	req := datapath.BackupRequest{
		SourceNamespace: "perf", SourcePVC: "data", Path: src.path, Block: src.block,
		Parallel: r.env.parallel, OnProgress: func(datapath.Progress) {},
	}
	if src.cbt != "" {
		a, err := readCBT(src.cbt)
		if err != nil {
			b.Fatal(err)
		}
		req.BlockSource = a.source()
	}
	res, err := rep.Backup(ctx, req)
	if err != nil {
		b.Fatal(err)
	}
	if err := rep.Close(ctx); err != nil {
		b.Fatal(err)
	}
	return res
}

// perfResult is what a step's process (TestPerf) reports.
type perfResult struct {
	SnapshotID       string `json:"snapshotID"`
	TotalBytes       int64  `json:"totalBytes"`
	IncrementalBytes int64  `json:"incrementalBytes"`
	MaxRSSMiB        int64  `json:"maxRSSMiB"`
	StartRSSMiB      int64  `json:"startRSSMiB"`
}

// child runs one operation in a new process of this test binary, as a worker pod runs
// one; env holds TestPerf's PERF_* settings.
func (r *perfRun) child(b *testing.B, env ...string) (perfResult, *syscall.Rusage) {
	b.Helper()
	cmd := r.childCmd(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("running %v: %v\n%s%s", env, err, stdout.Bytes(), stderr.Bytes())
	}
	var res perfResult
	for sc := bufio.NewScanner(&stdout); sc.Scan(); {
		if line := sc.Bytes(); bytes.HasPrefix(line, []byte("{")) {
			if err := json.Unmarshal(line, &res); err != nil {
				b.Fatal(err)
			}
			return res, cmd.ProcessState.SysUsage().(*syscall.Rusage)
		}
	}
	b.Fatalf("running %v: no result line\n%s%s", env, stdout.Bytes(), stderr.Bytes())
	return res, nil
}

// childCmd is the command of one TestPerf process with env's settings.
func (r *perfRun) childCmd(env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run", "^TestPerf$", "-test.count", "1", "-test.timeout", "2h")
	cmd.Env = append(os.Environ(), append([]string{fmt.Sprintf("PERF_PARALLEL=%d", r.env.parallel)}, env...)...)
	return cmd
}

// backupStep runs one backup in its own process; env adds TestPerf settings
// (PERF_COMPRESSION).
func (r *perfRun) backupStep(b *testing.B, loc repository.Location, cacheDir string, src perfSource, env ...string) (perfResult, *syscall.Rusage) {
	b.Helper()
	return r.child(b, append([]string{"PERF_OP=backup", "PERF_REPO=" + loc.Path, "PERF_CACHE_DIR=" + cacheDir, "PERF_SRC=" + src.path,
		"PERF_BLOCK=" + boolEnv(src.block), "PERF_CBT=" + src.cbt}, env...)...)
}

// restoreStep runs one restore in its own process, read-only and without a cache like the worker's.
func (r *perfRun) restoreStep(b *testing.B, loc repository.Location, snapshotID, target string, block bool) (perfResult, *syscall.Rusage) {
	b.Helper()
	return r.child(b, "PERF_OP=restore", "PERF_REPO="+loc.Path, "PERF_SNAPSHOT="+snapshotID, "PERF_DST="+target,
		"PERF_BLOCK="+boolEnv(block))
}

func boolEnv(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

// perfTotals accumulates the timed steps of one benchmark.
type perfTotals struct {
	cpuSeconds float64
	peakKiB    int64
	baseKiB    int64 // RSS of the step's process before it opened the repository
	repoBytes  int64
	hashed     int64
}

// timed runs step, which runs one operation in its own process, between StartTimer and
// StopTimer and adds the process's CPU time and peak RSS (as the process measured it:
// see peakRSSKiB). Before it, the page cache is dropped (PERF_DROP_CACHES=1) or warm is
// read.
func (t *perfTotals) timed(b *testing.B, env perfEnv, warm string, step func() (perfResult, *syscall.Rusage)) perfResult {
	b.Helper()
	if env.drop {
		dropCaches(b)
	} else if warm != "" {
		readAll(b, warm)
	}
	b.StartTimer()
	res, ru := step()
	b.StopTimer()
	t.cpuSeconds += float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	t.peakKiB = max(t.peakKiB, res.MaxRSSMiB<<10)
	t.baseKiB = max(t.baseKiB, res.StartRSSMiB<<10)
	return res
}

func (t *perfTotals) report(b *testing.B, bytes int64) {
	b.SetBytes(bytes)
	b.ReportMetric(t.cpuSeconds/(float64(bytes)*float64(b.N)/1e9), "cpu-s/GB")
	b.ReportMetric(float64(t.peakKiB)/1024, "peak-RSS-MiB")
	b.ReportMetric(float64(t.baseKiB)/1024, "base-RSS-MiB")
	b.ReportMetric(float64(t.repoBytes)/1e6, "repo-MB")
	b.ReportMetric(float64(t.hashed)/1e6, "hashed-MB")
}

func BenchmarkBackupFirst(b *testing.B) {
	env := loadPerfEnv(b)
	for _, name := range perfDatasets {
		b.Run(name, func(b *testing.B) {
			b.StopTimer()
			src := env.shared(b, name)
			run := newPerfRun(b, env)
			var t perfTotals
			for range b.N {
				loc := run.createRepository(b)
				cache := run.newDir("cache")
				src = run.cbtFirst(b, src)
				res := t.timed(b, env, src.path, func() (perfResult, *syscall.Rusage) { return run.backupStep(b, loc, cache, src) })
				t.repoBytes, t.hashed = treeBytes(b, loc.Path), res.IncrementalBytes
				_ = os.RemoveAll(loc.Path)
				_ = os.RemoveAll(cache)
			}
			t.report(b, src.bytes)
		})
	}
}

func BenchmarkBackupNoop(b *testing.B) {
	env := loadPerfEnv(b)
	for _, name := range perfDatasets {
		b.Run(name, func(b *testing.B) {
			b.StopTimer()
			src := env.shared(b, name)
			run := newPerfRun(b, env)
			var t perfTotals
			for range b.N {
				loc := run.createRepository(b)
				cache := run.newDir("cache")
				src = run.cbtFirst(b, src)
				run.backup(b, loc, cache, src)
				src = run.cbtNext(b, src, "") // nothing changed
				res := t.timed(b, env, src.path, func() (perfResult, *syscall.Rusage) { return run.backupStep(b, loc, cache, src) })
				t.repoBytes, t.hashed = treeBytes(b, loc.Path), res.IncrementalBytes
				if (!src.block || src.cbt != "") && res.IncrementalBytes != 0 {
					b.Errorf("no-op backup read %d bytes again, want 0", res.IncrementalBytes)
				}
				_ = os.RemoveAll(loc.Path)
				_ = os.RemoveAll(cache)
			}
			t.report(b, src.bytes)
		})
	}
}

func BenchmarkBackup5pct(b *testing.B) {
	env := loadPerfEnv(b)
	for _, name := range perfDatasets {
		b.Run(name, func(b *testing.B) {
			b.StopTimer()
			run := newPerfRun(b, env)
			var (
				t     perfTotals
				bytes int64
			)
			for range b.N {
				work := run.newDir("data")
				src := env.private(b, name, work)
				bytes = src.bytes
				loc := run.createRepository(b)
				cache := run.newDir("cache")
				src = run.cbtFirst(b, src)
				run.backup(b, loc, cache, src)
				before := treeBytes(b, loc.Path)
				prev := run.cbtKeep(b, src)
				m := src.mutate(b)
				src = run.cbtNext(b, src, prev)
				res := t.timed(b, env, src.path, func() (perfResult, *syscall.Rusage) { return run.backupStep(b, loc, cache, src) })
				t.repoBytes, t.hashed = treeBytes(b, loc.Path), res.IncrementalBytes
				b.ReportMetric(float64(t.repoBytes-before)/1e6, "repo-growth-MB")
				b.ReportMetric(float64(m.FileBytes)/1e6, "changed-files-MB")
				if !src.block && float64(res.IncrementalBytes) > 1.1*float64(m.FileBytes) {
					b.Errorf("5%% backup read %d bytes again, want at most 1.1 × %d (the changed files)", res.IncrementalBytes, m.FileBytes)
				}
				_ = os.RemoveAll(loc.Path)
				_ = os.RemoveAll(cache)
				_ = os.RemoveAll(work)
			}
			t.report(b, bytes)
		})
	}
}

func BenchmarkRestore(b *testing.B) {
	env := loadPerfEnv(b)
	for _, name := range perfDatasets {
		b.Run(name, func(b *testing.B) {
			b.StopTimer()
			src := env.shared(b, name)
			run := newPerfRun(b, env)
			loc := run.createRepository(b)
			src = run.cbtFirst(b, src)
			res := run.backup(b, loc, run.newDir("cache"), src)
			t := perfTotals{repoBytes: treeBytes(b, loc.Path)}
			for range b.N {
				target, remove := run.restoreTarget(b, src)
				if src.block {
					if err := os.WriteFile(target, nil, 0o600); err != nil {
						b.Fatal(err)
					}
				}
				t.timed(b, env, "", func() (perfResult, *syscall.Rusage) {
					return run.restoreStep(b, loc, res.SnapshotID, target, src.block)
				})
				if env.verify {
					verifyRestore(b, src, target)
				}
				remove()
			}
			t.report(b, src.bytes)
		})
	}
}

// BenchmarkCompression measures what each compressor snapmove offers (datapath.Compressors,
// BackupRequest.Compression) costs and saves, on pg (pages half random, half text) and on
// large (1 MiB random blocks, incompressible; its holes are zero chunks that deduplicate
// to one whatever the compressor): a first backup into a new repository and a restore of
// it, each in its own process as in the other benchmarks (backup verification at the
// worker's default, metadata; restore as BenchmarkRestore's). Run one data set and
// compressor per process, as hack/bench.sh does:
//
//	go test -tags perf -run '^$' -bench '^BenchmarkCompression$/^pg$/^zstd$' -benchtime 1x ./internal/mover/kopia/
//
// Metrics: repo-MB (file bytes in the repository after the backup), src-MB (logical
// source bytes), backup-s and restore-s (wall time, including the process's start and
// the repository's open), backup-cpu-s and restore-cpu-s (user+system CPU of the step's
// process), backup-RSS-MiB and restore-RSS-MiB (peak RSS of the step's process).
func BenchmarkCompression(b *testing.B) {
	env := loadPerfEnv(b)
	for _, name := range []string{"pg", "large"} {
		b.Run(name, func(b *testing.B) {
			for _, compressor := range datapath.Compressors {
				b.Run(compressor, func(b *testing.B) {
					b.StopTimer()
					src := env.shared(b, name)
					run := newPerfRun(b, env)
					var backupWall, restoreWall, backupCPU, restoreCPU time.Duration
					var repoBytes, backupRSS, restoreRSS int64
					for range b.N {
						loc := run.createRepository(b)
						cache := run.newDir("cache")
						if env.drop {
							dropCaches(b)
						} else {
							readAll(b, src.path)
						}
						b.StartTimer()
						start := time.Now()
						res, ru := run.backupStep(b, loc, cache, src, "PERF_COMPRESSION="+compressor)
						backupWall += time.Since(start)
						b.StopTimer()
						backupCPU += rusageCPU(ru)
						backupRSS = max(backupRSS, res.MaxRSSMiB)
						repoBytes = treeBytes(b, loc.Path)

						target, remove := run.restoreTarget(b, src)
						if env.drop {
							dropCaches(b)
						}
						b.StartTimer()
						start = time.Now()
						rres, ru := run.restoreStep(b, loc, res.SnapshotID, target, false)
						restoreWall += time.Since(start)
						b.StopTimer()
						restoreCPU += rusageCPU(ru)
						restoreRSS = max(restoreRSS, rres.MaxRSSMiB)
						if env.verify {
							verifyRestore(b, src, target)
						}
						remove()
						_ = os.RemoveAll(loc.Path)
						_ = os.RemoveAll(cache)
					}
					n := float64(b.N)
					b.ReportMetric(float64(repoBytes)/1e6, "repo-MB")
					b.ReportMetric(float64(src.bytes)/1e6, "src-MB")
					b.ReportMetric(backupWall.Seconds()/n, "backup-s")
					b.ReportMetric(backupCPU.Seconds()/n, "backup-cpu-s")
					b.ReportMetric(float64(backupRSS), "backup-RSS-MiB")
					b.ReportMetric(restoreWall.Seconds()/n, "restore-s")
					b.ReportMetric(restoreCPU.Seconds()/n, "restore-cpu-s")
					b.ReportMetric(float64(restoreRSS), "restore-RSS-MiB")
				})
			}
		})
	}
}

// rusageCPU is the user+system CPU time in ru.
func rusageCPU(ru *syscall.Rusage) time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// verifyRestore compares the restored tree (or block file) with the source.
func verifyRestore(b *testing.B, src perfSource, target string) {
	b.Helper()
	if src.block {
		if want, got := fileSHA256(b, src.path), fileSHA256(b, target); want != got {
			b.Errorf("restored block volume differs: sha256 %s, want %s", got, want)
		}
		return
	}
	want, err := treecheck.Manifest(src.path)
	if err != nil {
		b.Fatal(err)
	}
	got, err := treecheck.Manifest(target)
	if err != nil {
		b.Fatal(err)
	}
	if diffs := treecheck.Compare(want, got, treecheck.Options{ExactSymlinkMtime: true}); len(diffs) > 0 {
		b.Errorf("restored tree differs:\n%s", strings.Join(diffs, "\n"))
	}
}

func fileSHA256(b *testing.B, p string) string {
	b.Helper()
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close() //nolint:errcheck
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		b.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// treeBytes sums the sizes of the regular files below root (0 if it does not exist).
func treeBytes(b *testing.B, root string) int64 {
	b.Helper()
	var n int64
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// readAll reads every regular file below root (or root itself), to warm the page cache.
func readAll(b *testing.B, root string) {
	b.Helper()
	buf := make([]byte, 1<<20)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close() //nolint:errcheck
		_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
}

func dropCaches(b *testing.B) {
	b.Helper()
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		b.Fatalf("dropping the page cache (PERF_DROP_CACHES=1 needs root): %v", err)
	}
}

// peakRSSKiB is this process's peak RSS: VmHWM, not getrusage's maxrss, which a process
// started by a Go program inherits from its parent (Linux keeps the peak of the memory
// the exec replaced, and Go's fork shares the parent's).
func peakRSSKiB() int64 {
	if n := procStatusKiB("VmHWM"); n > 0 {
		return n
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss
}

// procStatusKiB reads a "Key: N kB" line of /proc/self/status; 0 if missing.
func procStatusKiB(key string) int64 {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
