// benchreport prints hack/bench.sh's report (make bench): the medians of one run's rows, snapmove
// against the kopia CLI, then the compression, verification, resume and many-files tables.
//
//	usage: benchreport -results results.<time>.tsv -extra results.<time>.extra.tsv [flags]
//
// bench.sh runs the benchmarks and writes the rows; this program only reads them. The rows file has
// bench.sh's header line and the columns time, rep, tool, dataset, step, wall_s, cpu_s_per_gb, rss_mib,
// repo_mb, bytes, load1, base_rss_mib; the extra file time, rep, table, dataset, variant, metric, value,
// load1. "-" is a missing value. The other flags describe the run (bench.sh's settings and machine) for
// the report's text. Medians and number formats are those of the awk this replaced: an odd count's
// median is the middle value as written, an even count's the mean of the middle two (%.6g).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// run is what the report says about the run besides its rows.
type run struct {
	Results, Logs, Out   string // this run's rows file (as printed), logs and bench.sh's directories
	Reps                 int
	Scale                string
	Cold, FreshFS, Block bool // BENCH_DROP_CACHES=1, BENCH_FRESH_FS=1, BENCH_BLOCK=1
	Hash                 string
	KopiaVersion         string
	CPUs                 int
	CPUModel             string
	LoadStart, LoadEnd   string // /proc/loadavg's first three fields
	Compressors          []string
	VerifyCost, Resume   bool
	ManyFiles            int
}

func main() {
	var r run
	var extra, compressors string
	flag.StringVar(&r.Results, "results", "", "this run's rows (TSV with a header line)")
	flag.StringVar(&extra, "extra", "", "this run's rows of the compression, verification, resume and many-files tables")
	flag.StringVar(&r.Logs, "logs", "", "the logs' directory (printed)")
	flag.StringVar(&r.Out, "out", "", "BENCH_OUT (printed when restores go to a directory of it)")
	flag.IntVar(&r.Reps, "reps", 1, "repetitions")
	flag.StringVar(&r.Scale, "scale", "1", "data set scale (printed as given)")
	flag.BoolVar(&r.Cold, "cold", false, "the page cache was dropped before every step")
	flag.BoolVar(&r.FreshFS, "fresh-fs", true, "restores went to a new ext4 filesystem each")
	flag.BoolVar(&r.Block, "block", true, "the rows include snapmove's block-volume series")
	flag.StringVar(&r.Hash, "hash", "", "content hash of snapmove's repositories; empty: snapmove's default")
	flag.StringVar(&r.KopiaVersion, "kopia-version", "", "the kopia CLI's version")
	flag.IntVar(&r.CPUs, "cpus", 0, "the machine's CPUs")
	flag.StringVar(&r.CPUModel, "cpu-model", "", "the machine's CPU model")
	flag.StringVar(&r.LoadStart, "load-start", "", "load average at the start")
	flag.StringVar(&r.LoadEnd, "load-end", "", "load average at the end")
	flag.StringVar(&compressors, "compressors", "", "the compression table's compressors, space-separated; empty: no table")
	flag.BoolVar(&r.VerifyCost, "verify", true, "print the verification table")
	flag.BoolVar(&r.Resume, "resume", true, "print the resume table")
	flag.IntVar(&r.ManyFiles, "many", 0, "the many-files table's file count; 0: no table")
	flag.Parse()
	if r.Results == "" || extra == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	r.Compressors = strings.Fields(compressors)
	res, err := readRows(r.Results)
	if err != nil {
		log.Fatal(err)
	}
	ext, err := readRows(extra)
	if err != nil {
		log.Fatal(err)
	}
	w := bufio.NewWriter(os.Stdout)
	report(w, r, res, ext)
	if err := w.Flush(); err != nil {
		log.Fatal(err)
	}
}

// rows are a TSV file's lines after its header, split at tabs.
type rows [][]string

func readRows(path string) (rows, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	var rs rows
	for _, l := range lines[1:] {
		rs = append(rs, strings.Split(l, "\t"))
	}
	return rs, nil
}

// col is column c of row r, 1-based as awk's $c; "" past the row's end.
func col(r []string, c int) string {
	if c > len(r) {
		return ""
	}
	return r[c-1]
}

// med is the median of column c of the main rows of tool, dataset and step, "-" values left out.
func (rs rows) med(tool, ds, step string, c int) string {
	var vs []string
	for _, r := range rs {
		if col(r, 3) == tool && col(r, 4) == ds && col(r, 5) == step && col(r, c) != "-" {
			vs = append(vs, col(r, c))
		}
	}
	return median(vs)
}

// xmed is the median of one metric of the extra rows of table, dataset and variant.
func (rs rows) xmed(table, ds, variant, metric string) string {
	var vs []string
	for _, r := range rs {
		if col(r, 3) == table && col(r, 4) == ds && col(r, 5) == variant && col(r, 6) == metric {
			vs = append(vs, col(r, 7))
		}
	}
	return median(vs)
}

// median of numbers as written: "-" for none, the middle one as written for an odd count, the mean
// of the middle two for an even one.
func median(vs []string) string {
	if len(vs) == 0 {
		return "-"
	}
	vs = append([]string(nil), vs...)
	sort.SliceStable(vs, func(i, j int) bool { return atof(vs[i]) < atof(vs[j]) })
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	m := (atof(vs[n/2-1]) + atof(vs[n/2])) / 2
	if m == math.Trunc(m) && math.Abs(m) < 1e15 { // awk prints integral values as integers
		return strconv.FormatFloat(m, 'f', 0, 64)
	}
	return strconv.FormatFloat(m, 'g', 6, 64)
}

// atof reads a number as awk does: its longest numeric prefix, 0 if none.
func atof(s string) float64 {
	s = strings.TrimSpace(s)
	for i := len(s); i > 0; i-- {
		if f, err := strconv.ParseFloat(s[:i], 64); err == nil {
			return f
		}
	}
	return 0
}

func missing(s string) bool { return s == "-" || s == "" }

// num formats x with the printf verb f ("%.2f"; "%g" is C's, six significant digits), "-" if missing.
func num(x, f string) string {
	if missing(x) {
		return "-"
	}
	if f == "%g" {
		return strconv.FormatFloat(atof(x), 'g', 6, 64)
	}
	return fmt.Sprintf(f, atof(x))
}

// ratio is b / a (snapmove / CLI), "-" if either is missing or a is 0.
func ratio(a, b string) string {
	if missing(a) || missing(b) || atof(a) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", atof(b)/atof(a))
}

// pct is a as a percentage of b, "-" if either is missing or b is 0.
func pct(a, b string) string {
	if missing(a) || missing(b) || atof(b) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", 100*atof(a)/atof(b))
}

func report(w io.Writer, r run, res, ext rows) {
	reportMain(w, r, res)
	reportCompression(w, r, ext)
	reportVerify(w, r, ext)
	reportResume(w, r, ext)
	reportMany(w, r, ext)
}

func reportMain(w io.Writer, r run, res rows) {
	cache, restores := "warm", "a directory of "+r.Out
	if r.Cold {
		cache = "cold"
	}
	if r.FreshFS {
		restores = "a new ext4 filesystem each"
	}
	hash := r.Hash
	if hash == "" {
		hash = "BLAKE3-256-128 (what snapmove creates)"
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "snapmove vs kopia CLI %s, medians of %d run(s), scale %s, %s page cache, restores to %s\n", r.KopiaVersion, r.Reps, r.Scale, cache, restores)
	fmt.Fprintf(w, "repositories: the CLI with kopia's defaults (BLAKE2B-256-128, as Velero creates them), snapmove with %s\n", hash)
	fmt.Fprintf(w, "machine: %d CPUs, %s, load average at start %s, at end %s\n", r.CPUs, r.CPUModel, r.LoadStart, r.LoadEnd)
	const row = "%-16s %-8s %8s %8s %6s %9s %9s %8s %8s %9s %9s\n"
	fmt.Fprintf(w, row, "dataset", "step", "CLI s", "snap s", "ratio", "CLI cpu", "snap cpu", "CLI RSS", "snap RSS", "CLI repo", "snap repo")
	fmt.Fprintf(w, row, "", "", "wall", "wall", "snap/CLI", "s/GB", "s/GB", "MiB", "MiB", "MB", "MB")
	sets := []string{"pg", "large"}
	if r.Block {
		sets = append(sets, "block", "cbt")
	}
	for _, ds := range sets {
		cds, label := ds, ds // the CLI's rows it is compared with
		switch ds {
		case "block":
			cds, label = "large", "block (vs large)"
		case "cbt":
			cds, label = "large", "cbt (vs large)"
			if res.med("snapmove", ds, "first", 6) == "-" {
				continue // rows from before the cbt data set
			}
		}
		for _, step := range []string{"first", "noop", "5pct", "restore"} {
			cw, sw := res.med("cli", cds, step, 6), res.med("snapmove", ds, step, 6)
			cc, sc := res.med("cli", cds, step, 7), res.med("snapmove", ds, step, 7)
			cr, sr := res.med("cli", cds, step, 8), res.med("snapmove", ds, step, 8)
			crepo, srepo := res.med("cli", cds, step, 9), res.med("snapmove", ds, step, 9)
			if step == "restore" {
				crepo, srepo = "-", "-"
			}
			fmt.Fprintf(w, row, label, step, num(cw, "%.2f"), num(sw, "%.2f"), ratio(cw, sw), num(cc, "%.2f"), num(sc, "%.2f"),
				num(cr, "%.0f"), num(sr, "%.0f"), num(crepo, "%.1f"), num(srepo, "%.1f"))
		}
	}
	var base []string
	for _, row := range res {
		if col(row, 3) == "snapmove" && col(row, 12) != "-" {
			base = append(base, col(row, 12))
		}
	}
	fmt.Fprintf(w, "CLI repository create: %s s, %s MiB peak RSS (scrypt); not part of any step.\n", res.med("cli", "pg", "create", 6), res.med("cli", "pg", "create", 8))
	fmt.Fprintf(w, "snapmove's peak RSS includes the benchmark process's own RSS when the step starts: median %s MiB.\n", median(base))
	fmt.Fprintf(w, "Rows: %s; logs: %s.\n", r.Results, r.Logs)
	fmt.Fprintln(w, "Targets (issue 4): first backup and no-op ratio ≤ 1.00, restore ratio ≤ 0.67 (1.5x faster than the CLI), snapmove peak RSS ≤ 256 MiB.")
}

func reportCompression(w io.Writer, r run, ext rows) {
	cs := r.Compressors
	if len(cs) == 0 {
		return
	}
	const row = "%-7s %-24s %8s %7s %8s %8s %8s %8s %8s %8s\n"
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Compression, snapmove: a first backup into a new repository (verify metadata, the worker's default) and a restore of it, each in its own process, medians of %d run(s)\n", r.Reps)
	fmt.Fprintf(w, row, "dataset", "compressor", "stored", "stored", "backup", "backup", "backup", "restore", "restore", "restore")
	fmt.Fprintf(w, row, "", "", "MB", "% src", "wall s", "cpu s", "RSS MiB", "wall s", "cpu s", "RSS MiB")
	for _, ds := range []string{"pg", "large"} {
		src := ext.xmed("compression", ds, cs[0], "src-MB")
		for _, c := range cs {
			m := func(metric string) string { return ext.xmed("compression", ds, c, metric) }
			repo := m("repo-MB")
			fmt.Fprintf(w, row, ds, c, num(repo, "%.1f"), pct(repo, src),
				num(m("backup-s"), "%.2f"), num(m("backup-cpu-s"), "%.2f"), num(m("backup-RSS-MiB"), "%.0f"),
				num(m("restore-s"), "%.2f"), num(m("restore-cpu-s"), "%.2f"), num(m("restore-RSS-MiB"), "%.0f"))
		}
	}
	fmt.Fprintf(w, "Sources: pg %s MB (8 KiB pages, half random bytes, half text); large %s MB (random 1 MiB blocks, which do not compress, with holes and written zero runs, which do; whole zero chunks are stored once in any case).\n",
		num(ext.xmed("compression", "pg", cs[0], "src-MB"), "%.1f"), num(ext.xmed("compression", "large", cs[0], "src-MB"), "%.1f"))
	fmt.Fprintln(w, "Stored: file bytes in the repository after the backup (data, index and metadata). Wall times include the step's process start and the repository's open (scrypt).")
}

// verifySteps are the verification table's rows: the metric's key, the label, and the key of the
// backup its percentages are of ("" for none).
var verifySteps = []struct{ key, label, base string }{
	{"backup", "backup (first, verify none)", ""},
	{"metadata", "verify metadata (backup's repository)", "backup"},
	{"sample10", "verify sample:10 (backup's repository)", "backup"},
	{"full", "verify full (backup's repository)", "backup"},
	{"metadata-new", "verify metadata (new, read-only, no cache)", "backup"},
	{"sample10-new", "verify sample:10 (new, read-only, no cache)", "backup"},
	{"full-new", "verify full (new, read-only, no cache)", "backup"},
	{"noop", "backup (no-op, verify none)", ""},
	{"noop-metadata", "verify metadata (no-op backup's repository)", "noop"},
}

func reportVerify(w io.Writer, r run, ext rows) {
	if !r.VerifyCost {
		return
	}
	m := func(metric string) string { return ext.xmed("verify", "pg", "-", metric) }
	const row = "%-48s %8s %8s %9s %9s\n"
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Verification cost, snapmove, pg (%s MB): one process, a backup with verify none then VerifySnapshot of its snapshot, medians of %d run(s)\n", num(m("src-MB"), "%.1f"), r.Reps)
	fmt.Fprintf(w, row, "step", "wall", "cpu", "wall", "cpu")
	fmt.Fprintf(w, row, "", "s", "s", "% backup", "% backup")
	for _, s := range verifySteps {
		wall, cpu := m(s.key+"-s"), m(s.key+"-cpu-s")
		pw, pc := "-", "-"
		if s.base != "" {
			pw, pc = pct(wall, m(s.base+"-s")), pct(cpu, m(s.base+"-cpu-s"))
		}
		fmt.Fprintf(w, row, s.label, num(wall, "%.2f"), num(cpu, "%.2f"), pw, pc)
	}
	fmt.Fprintln(w, "% backup: of the backup verified (the first, or the no-op for the last row). A backup at verify metadata or full costs the backup plus its 'backup's repository' row; 'new, read-only, no cache' opens the repository as a repository command (snapmove verify) does.")
}

func reportResume(w io.Writer, r run, ext rows) {
	if !r.Resume {
		return
	}
	m := func(metric string) string { return ext.xmed("resume", "files", "-", metric) }
	src, full, resumed, read, killed := m("src-MB"), m("full-s"), m("resumed-s"), m("resumed-read-MB"), m("killed-at-MB")
	const row = "%-22s %10s %10s %10s\n"
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Resume, snapmove: %s MB in 16 MiB files; an upload killed (SIGKILL) at %s%%, then retried by a new process with an empty cache, checkpoints every %s s (%s MB at the whole upload's speed); medians of %d run(s)\n",
		num(src, "%.0f"), pct(killed, src), num(m("checkpoint-s"), "%g"), num(m("checkpoint-MB"), "%.0f"), r.Reps)
	fmt.Fprintf(w, row, "step", "wall-s", "cpu-s", "read-MB")
	fmt.Fprintf(w, row, "whole upload", num(full, "%.2f"), num(m("full-cpu-s"), "%.2f"), num(src, "%.0f"))
	fmt.Fprintf(w, row, "resumed after the kill", num(resumed, "%.2f"), num(m("resumed-cpu-s"), "%.2f"), num(read, "%.0f"))
	fmt.Fprintf(w, "The resumed upload took %s%% of the whole one's time and read %s%% of the volume again (the rest came from the last checkpoint).\n", pct(resumed, full), pct(read, src))
}

func reportMany(w io.Writer, r run, ext rows) {
	if r.ManyFiles <= 0 {
		return
	}
	m := func(metric string) string { return ext.xmed("many", "files", "-", metric) }
	const row = "%-8s %8s %10s %6s %10s %10s %9s %9s\n"
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Many small files: %s files, %s MB (datagen many), kopia CLI and snapmove interleaved, once; page cache not warmed; restores onto a new ext4 (BENCH_FRESH_FS)\n", num(m("files"), "%.0f"), num(m("src-MB"), "%.0f"))
	fmt.Fprintf(w, row, "step", "CLI-s", "snapmove-s", "ratio", "CLI-cpu-s", "snap-cpu-s", "CLI-RSS", "snap-RSS")
	for _, step := range []string{"first", "noop", "restore"} {
		c, s := m("cli-"+step+"-s"), m("snapmove-"+step+"-s")
		fmt.Fprintf(w, row, step, num(c, "%.2f"), num(s, "%.2f"), ratio(c, s),
			num(m("cli-"+step+"-cpu-s"), "%.2f"), num(m("snapmove-"+step+"-cpu-s"), "%.2f"),
			num(m("cli-"+step+"-RSS-MiB"), "%.0f"), num(m("snapmove-"+step+"-RSS-MiB"), "%.0f"))
	}
	fmt.Fprintln(w, "ratio: snapmove / CLI wall time. RSS: peak MiB of the step's process.")
}
