//go:build perf

package kopia

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/snapmove/snapmove/test/datagen"
)

const (
	manySeed = 11
	// manyFiles is BenchmarkManyFiles' file count unless PERF_MANY_FILES says otherwise:
	// the volume of Velero's sizing guide on which its node agent needs more than 1 GiB.
	manyFiles = 2_000_000
)

// manyStep is one timed step of BenchmarkManyFiles.
type manyStep struct {
	wall, cpu time.Duration
	rssMiB    int64
}

func (s *manyStep) add(wall time.Duration, ru *syscall.Rusage, rssMiB int64) {
	s.wall += wall
	s.cpu += rusageCPU(ru)
	s.rssMiB = max(s.rssMiB, rssMiB)
}

// BenchmarkManyFiles backs up (first and no-op) and restores datagen.GenMany's volume of
// PERF_MANY_FILES (default 2,000,000) small files, with snapmove (each step in its own
// process, as elsewhere here) and with the kopia CLI at PERF_KOPIA (hack/bench.sh builds
// it from this module; skipped when unset) with Velero's settings, interleaved: the
// CLI first in odd iterations. PERF_MANY_RESTORE=0 runs the backups only. Restores go where restoreTarget says (PERF_FRESH_FS=1: a
// new ext4 with inodes enough), and each restored tree must hold the source's file count
// and bytes. The page cache is not
// warmed: reading 2 million files takes as long as the steps. Metrics, per tool
// (snapmove, cli): <tool>-<step>-s, -cpu-s and -RSS-MiB for first, noop and restore;
// files and src-MB.
func BenchmarkManyFiles(b *testing.B) {
	env := loadPerfEnv(b)
	n := manyFiles
	if v := os.Getenv("PERF_MANY_FILES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("PERF_MANY_FILES %q: want a positive integer", v)
		}
	}
	kopiaCLI := os.Getenv("PERF_KOPIA")
	restores := os.Getenv("PERF_MANY_RESTORE") != "0" // 0: backups only
	b.Run("files", func(b *testing.B) {
		b.StopTimer()
		dir := filepath.Join(env.data, "many")
		if _, err := datagen.EnsureMany(dir, manySeed, n); err != nil {
			b.Fatal(err)
		}
		want, err := datagen.Measure(dir)
		if err != nil {
			b.Fatal(err)
		}
		src := perfSource{name: "many", path: dir, bytes: want.Bytes, files: want.Files}
		run := newPerfRun(b, env)
		steps := map[string]*manyStep{}
		step := func(tool, name string) *manyStep {
			k := tool + "-" + name
			if steps[k] == nil {
				steps[k] = &manyStep{}
			}
			return steps[k]
		}
		checkRestore := func(tool, target string) {
			got, err := datagen.Measure(target)
			if err != nil {
				b.Fatal(err)
			}
			if got.Files != want.Files || got.Bytes != want.Bytes {
				b.Errorf("%s restored %d files, %d bytes; want %d files, %d bytes", tool, got.Files, got.Bytes, want.Files, want.Bytes)
			}
		}
		snapmove := func() {
			loc := run.createRepository(b)
			cache := run.newDir("cache")
			var id string
			for _, name := range []string{"first", "noop"} {
				start := time.Now()
				res, ru := run.backupStep(b, loc, cache, src)
				step("snapmove", name).add(time.Since(start), ru, res.MaxRSSMiB)
				id = res.SnapshotID
			}
			if !restores {
				_ = os.RemoveAll(loc.Path)
				_ = os.RemoveAll(cache)
				return
			}
			target, remove := run.restoreTarget(b, src)
			start := time.Now()
			res, ru := run.restoreStep(b, loc, id, target, false)
			step("snapmove", "restore").add(time.Since(start), ru, res.MaxRSSMiB)
			checkRestore("snapmove", target)
			remove()
			_ = os.RemoveAll(loc.Path)
			_ = os.RemoveAll(cache)
		}
		cli := func() {
			if kopiaCLI == "" {
				return
			}
			work := run.newDir("cli")
			repoDir, cache := filepath.Join(work, "repo"), filepath.Join(work, "cache")
			if err := os.MkdirAll(repoDir, 0o755); err != nil {
				b.Fatal(err)
			}
			kopia := func(args ...string) (string, time.Duration, *syscall.Rusage) {
				cmd := exec.Command(kopiaCLI, args...)
				cmd.Env = append(os.Environ(), "KOPIA_PASSWORD="+perfPassword, "KOPIA_CHECK_FOR_UPDATES=false",
					"KOPIA_CONFIG_PATH="+filepath.Join(work, "repository.config"), "KOPIA_LOG_DIR="+filepath.Join(work, "logs"))
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				start := time.Now()
				if err := cmd.Run(); err != nil {
					b.Fatalf("kopia %v: %v\n%s", args, err, out.Bytes())
				}
				return out.String(), time.Since(start), cmd.ProcessState.SysUsage().(*syscall.Rusage)
			}
			// Velero's settings, as hack/bench.sh gives the CLI.
			kopia("repository", "create", "filesystem", "--path="+repoDir, "--cache-directory="+cache,
				"--content-cache-size-mb=4000", "--metadata-cache-size-mb=1000")
			kopia("policy", "set", "--global", "--compression=none", "--parallel-upload-above-size-mib=8388608")
			kopia("maintenance", "set", "--enable-quick=false", "--enable-full=false")
			par := fmt.Sprintf("--parallel=%d", env.parallel)
			for _, name := range []string{"first", "noop"} {
				_, wall, ru := kopia("snapshot", "create", dir, par)
				step("cli", name).add(wall, ru, ru.Maxrss>>10)
			}
			if !restores {
				_ = os.RemoveAll(work)
				return
			}
			out, _, _ := kopia("snapshot", "list", dir, "--json")
			ids := regexp.MustCompile(`"id": *"([0-9a-f]+)"`).FindAllStringSubmatch(out, -1)
			if len(ids) == 0 {
				b.Fatalf("no snapshot of %s:\n%s", dir, out)
			}
			target, remove := run.restoreTarget(b, src)
			_, wall, ru := kopia("snapshot", "restore", ids[0][1], target, par)
			start := time.Now()
			if out, err := exec.Command("sync", "-f", target).CombinedOutput(); err != nil { // snapmove's restore ends with a syncfs
				b.Fatalf("sync -f %s: %v\n%s", target, err, out)
			}
			step("cli", "restore").add(wall+time.Since(start), ru, ru.Maxrss>>10)
			checkRestore("cli", target)
			remove()
			_ = os.RemoveAll(work)
		}
		for i := range b.N {
			if i%2 == 0 {
				cli()
				snapmove()
			} else {
				snapmove()
				cli()
			}
		}
		nf := float64(b.N)
		b.ReportMetric(float64(want.Files), "files")
		b.ReportMetric(float64(want.Bytes)/1e6, "src-MB")
		for k, s := range steps {
			b.ReportMetric(s.wall.Seconds()/nf, k+"-s")
			b.ReportMetric(s.cpu.Seconds()/nf, k+"-cpu-s")
			b.ReportMetric(float64(s.rssMiB), k+"-RSS-MiB")
		}
	})
}
