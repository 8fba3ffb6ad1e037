//go:build perf

package kopia

// A command-line entry point for benchmarks against the kopia CLI, kept out of normal test
// runs by the perf build tag. Build once, run one operation per process so peak RSS is
// per operation, as in a worker pod (bench_test.go runs its timed steps this way):
//
//	go test -tags perf -c -o /tmp/moverbench ./internal/mover/kopia/
//	PERF_OP=backup  PERF_REPO=/data/repo PERF_SRC=/data/pg               /tmp/moverbench -test.run '^TestPerf$'
//	PERF_OP=restore PERF_REPO=/data/repo PERF_SNAPSHOT=<id> PERF_DST=/x  /tmp/moverbench -test.run '^TestPerf$'
//
// The repository is opened as the worker opens it: a backup creates it when missing and
// uses a cache (PERF_CACHE_DIR, default a temporary one; PERF_CACHE_MB, default 5000);
// a restore opens it read-only without a cache unless PERF_CACHE_MB says otherwise. The
// process is tuned as the worker tunes itself (tuneLikeWorker): this package leaves the
// garbage collector alone.
// Optional: PERF_BLOCK=1 (block volume), PERF_SPARSE=1 (WriteSparse), PERF_PARALLEL=N,
// PERF_COMPRESSION=name (a backup's compressor, one of datapath.Compressors; default none),
// PERF_PVC=name, PERF_CBT=file (a block backup's changed block metadata: cbtAnswer), PERF_CHECKPOINT=duration (a backup's CheckpointInterval),
// PERF_KILL_AT=fraction (a backup prints {"killedAtBytes":N} and kills itself with
// SIGKILL once it has moved that fraction of the source: BenchmarkResume), PERF_CPUPROFILE=file, PERF_MEMPROFILE=file (heap profile after the
// operation: go tool pprof -sample_index=alloc_space). The result is one JSON line on
// stdout: op, snapshotID, totalBytes, incrementalBytes, wallSeconds, openSeconds,
// cpuSeconds, maxRSSMiB (peak: VmHWM) and startRSSMiB (before opening: binary and runtime).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/repository"
)

func TestPerf(t *testing.T) {
	op := os.Getenv("PERF_OP")
	if op == "" {
		t.Skip("PERF_OP not set")
	}
	ctx := context.Background()
	num := func(k string) int64 {
		v, _ := strconv.ParseInt(os.Getenv(k), 10, 64)
		return v
	}
	pvc := os.Getenv("PERF_PVC")
	if pvc == "" {
		pvc = "data"
	}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	loc := repository.Location{Provider: repository.ProviderFilesystem, Path: os.Getenv("PERF_REPO"), Prefix: repository.RepositoryPrefix("", "perf")}

	if p := os.Getenv("PERF_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	startRSS := procStatusKiB("VmRSS")
	opts := Options{Create: op == "backup", ReadOnly: op == "restore", CacheDir: os.Getenv("PERF_CACHE_DIR"), CacheLimitMB: num("PERF_CACHE_MB"), Log: log}
	if _, set := os.LookupEnv("PERF_CACHE_MB"); !set && op == "restore" {
		opts.CacheLimitMB = -1 // the worker's restore: every content is read once
	}
	r, err := Open(ctx, loc, "perf-password", opts)
	if err != nil {
		t.Fatal(err)
	}
	tuneLikeWorker()
	opened := time.Since(start)
	out := map[string]any{"op": op}
	switch op {
	case "backup":
		req := datapath.BackupRequest{SourceNamespace: "perf", SourcePVC: pvc, Path: os.Getenv("PERF_SRC"),
			Block: os.Getenv("PERF_BLOCK") == "1", Parallel: int(num("PERF_PARALLEL")), Compression: os.Getenv("PERF_COMPRESSION"),
			OnProgress: func(datapath.Progress) {}}
		if v := os.Getenv("PERF_CBT"); v != "" {
			a, err := readCBT(v)
			if err != nil {
				t.Fatal(err)
			}
			req.BlockSource = a.source()
		}
		if v := os.Getenv("PERF_CHECKPOINT"); v != "" {
			if req.CheckpointInterval, err = time.ParseDuration(v); err != nil {
				t.Fatal(err)
			}
		}
		if v := os.Getenv("PERF_KILL_AT"); v != "" {
			at, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			req.ProgressInterval = 10 * time.Millisecond
			req.OnProgress = func(p datapath.Progress) {
				if p.TotalBytes > 0 && float64(p.BytesDone) >= at*float64(p.TotalBytes) {
					fmt.Printf("{\"killedAtBytes\":%d}\n", p.BytesDone)
					_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
					select {} // the signal is on its way
				}
			}
		}
		res, err := r.Backup(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		out["snapshotID"], out["totalBytes"], out["incrementalBytes"] = res.SnapshotID, res.TotalBytes, res.IncrementalBytes
	case "restore":
		res, err := r.Restore(ctx, datapath.RestoreRequest{SnapshotID: os.Getenv("PERF_SNAPSHOT"), Path: os.Getenv("PERF_DST"),
			Block: os.Getenv("PERF_BLOCK") == "1", WriteSparse: os.Getenv("PERF_SPARSE") == "1", Parallel: int(num("PERF_PARALLEL")), OnProgress: func(datapath.Progress) {}})
		if err != nil {
			t.Fatal(err)
		}
		out["totalBytes"] = res.TotalBytes
	default:
		t.Fatalf("unknown PERF_OP %q", op)
	}
	if p := os.Getenv("PERF_MEMPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := func(u syscall.Rusage) float64 {
		return float64(u.Utime.Nano()+u.Stime.Nano()) / 1e9
	}
	out["wallSeconds"] = time.Since(start).Seconds()
	out["openSeconds"] = opened.Seconds()
	out["cpuSeconds"] = cpu(ru) - cpu(ru0)
	out["maxRSSMiB"] = peakRSSKiB() / 1024
	out["startRSSMiB"] = startRSS / 1024
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}

// workerGCPercent is the collector target the worker sets while a backup or a restore
// runs (its dataPathGCPercent): the data path's garbage is mostly pointer-free chunk
// data, and Go's default of 100 added half the peak RSS of a restore.
const workerGCPercent = 25

// tuneLikeWorker does what the worker process does after opening a repository, so that
// the peak RSS measured here is a worker's: it returns the garbage of the password key
// derivation (scrypt, 64 MiB) to the operating system, and lowers the collector's target
// to workerGCPercent unless GOGC set a lower one (or turned the collector off).
func tuneLikeWorker() {
	debug.FreeOSMemory()
	if old := debug.SetGCPercent(workerGCPercent); old < workerGCPercent {
		debug.SetGCPercent(old)
	}
}
