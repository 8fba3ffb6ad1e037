//go:build perf

package kopia

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kopia/kopia/snapshot"

	"github.com/snapmove/snapmove/internal/mover/kopia/store"
	"github.com/snapmove/snapmove/internal/mover/repository"
	"github.com/snapmove/snapmove/test/datagen"
)

const (
	// resumeSize is the resume benchmark's volume at PERF_SCALE 1: 4 GiB, as the issue
	// asks, in datagen.SegmentSize files (a volume of postgres WAL segments, or media).
	resumeSize = 4 << 30
	resumeSeed = 9
	// resumeKillAt is how far the interrupted upload gets before its process is killed.
	resumeKillAt = 0.75
)

// resumeSource is the resume benchmark's volume below PERF_DATA (datagen.EnsureSegments:
// generated once, kept while its stamp matches).
func (e perfEnv) resumeSource(b *testing.B) perfSource {
	b.Helper()
	dir := filepath.Join(e.data, "resume")
	if _, err := datagen.EnsureSegments(dir, resumeSeed, int64(float64(resumeSize)*e.scale)); err != nil {
		b.Fatal(err)
	}
	s, err := datagen.Measure(dir)
	if err != nil {
		b.Fatal(err)
	}
	return perfSource{name: "resume", path: dir, bytes: s.Bytes}
}

// killedStep runs a backup in its own process that kills itself (SIGKILL, as the kubelet
// kills a worker, or as a node dies: nothing is closed or flushed) once it has moved
// killAt of the source, saving a checkpoint every interval. It returns the bytes moved
// when it was killed.
func (r *perfRun) killedStep(b *testing.B, loc repository.Location, cacheDir string, src perfSource, killAt float64, interval time.Duration) int64 {
	b.Helper()
	cmd := r.childCmd("PERF_OP=backup", "PERF_REPO="+loc.Path, "PERF_CACHE_DIR="+cacheDir, "PERF_SRC="+src.path,
		fmt.Sprintf("PERF_KILL_AT=%g", killAt), "PERF_CHECKPOINT="+interval.String())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		b.Fatalf("the interrupted backup was not killed (%v)\n%s%s", err, stdout.Bytes(), stderr.Bytes())
	}
	for _, line := range strings.Split(stdout.String(), "\n") {
		var killed struct {
			KilledAtBytes int64 `json:"killedAtBytes"`
		}
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &killed) == nil && killed.KilledAtBytes > 0 {
			return killed.KilledAtBytes
		}
	}
	b.Fatalf("the interrupted backup did not say where it was killed\n%s%s", stdout.Bytes(), stderr.Bytes())
	return 0
}

// BenchmarkResume measures what an interrupted upload costs the next attempt (a worker
// killed at 75% of a 4 GiB volume, then the mover's retry in a new pod: a new process
// with an empty cache), against an uninterrupted upload of the same volume into a new
// repository. Each step runs in its own process, like a worker pod. The resumed
// snapshot is restored and compared with the source (PERF_VERIFY), and no checkpoint may
// be left in the repository.
//
// PERF_RESUME_CHECKPOINT (default 1s) is the interrupted upload's checkpointInterval:
// what the retry reads again is what was moved since the last checkpoint plus the files
// in flight, so the interval that matters is in bytes (interval × throughput); the
// metric checkpoint-MB is that product at the full upload's throughput.
//
// Metrics: src-MB; full-s, full-cpu-s (the uninterrupted upload); killed-at-MB; resumed-s,
// resumed-cpu-s and resumed-read-MB (bytes the retry read and hashed because no
// checkpoint covered them); checkpoint-s and checkpoint-MB.
func BenchmarkResume(b *testing.B) {
	env := loadPerfEnv(b)
	interval := time.Second
	if v := os.Getenv("PERF_RESUME_CHECKPOINT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("PERF_RESUME_CHECKPOINT %q: want a positive duration", v)
		}
		interval = d
	}
	b.Run("files", func(b *testing.B) {
		b.StopTimer()
		src := env.resumeSource(b)
		run := newPerfRun(b, env)
		var fullWall, fullCPU, resumedWall, resumedCPU time.Duration
		var killedAt, read int64
		for range b.N {
			// The uninterrupted upload.
			loc := run.createRepository(b)
			readAll(b, src.path)
			start := time.Now()
			full, ru := run.backupStep(b, loc, run.newDir("cache"), src)
			fullWall += time.Since(start)
			fullCPU += rusageCPU(ru)
			if full.IncrementalBytes != src.bytes {
				b.Fatalf("the full upload read %d bytes of %d", full.IncrementalBytes, src.bytes)
			}
			_ = os.RemoveAll(loc.Path)

			// Killed at 75%, then the retry.
			loc = run.createRepository(b)
			readAll(b, src.path)
			killedAt += run.killedStep(b, loc, run.newDir("cache"), src, resumeKillAt, interval)
			readAll(b, src.path)
			start = time.Now()
			resumed, ru := run.backupStep(b, loc, run.newDir("cache"), src)
			resumedWall += time.Since(start)
			resumedCPU += rusageCPU(ru)
			read += resumed.IncrementalBytes
			b.Logf("full %s; killed at %d MB; resumed in %s reading %d MB",
				fullWall.Round(time.Millisecond), killedAt>>20, resumedWall.Round(time.Millisecond), resumed.IncrementalBytes>>20)

			rep := run.open(b, loc, run.newDir("cache"), false)
			mans, err := snapshot.ListSnapshots(context.Background(), rep.st.Direct(), snapshot.SourceInfo{UserName: "default", Host: "default", Path: store.SourcePath("perf", "data")})
			if err != nil {
				b.Fatal(err)
			}
			for _, m := range mans {
				if m.IncompleteReason != "" {
					b.Errorf("checkpoint %s left after the resumed upload completed", m.ID)
				}
			}
			_ = rep.Close(context.Background())
			if env.verify {
				target, remove := run.restoreTarget(b, src)
				run.restoreStep(b, loc, resumed.SnapshotID, target, false)
				verifyRestore(b, src, target)
				remove()
			}
			_ = os.RemoveAll(loc.Path)
		}
		n := float64(b.N)
		b.ReportMetric(float64(src.bytes)/1e6, "src-MB")
		b.ReportMetric(fullWall.Seconds()/n, "full-s")
		b.ReportMetric(fullCPU.Seconds()/n, "full-cpu-s")
		b.ReportMetric(float64(killedAt)/1e6/n, "killed-at-MB")
		b.ReportMetric(resumedWall.Seconds()/n, "resumed-s")
		b.ReportMetric(resumedCPU.Seconds()/n, "resumed-cpu-s")
		b.ReportMetric(float64(read)/1e6/n, "resumed-read-MB")
		b.ReportMetric(interval.Seconds(), "checkpoint-s")
		b.ReportMetric(float64(src.bytes)/1e6/(fullWall.Seconds()/n)*interval.Seconds(), "checkpoint-MB")
	})
}
