package datagen

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
)

// Version identifies the generators' output; bump it whenever any output byte changes.
const Version = 1

const (
	page = 8192 // PostgreSQL's page size; pg files are whole pages

	pgDirs        = 30      // base/<oid> directories
	pgSmallFiles  = 2490    // files at scale 1
	pgSmallMax    = 1 << 20 // largest small file at scale 1
	pgWALSegments = 6
	pgWALSize     = 16 << 20

	// pgCountExponent: the number of small files grows as scale^0.2, so a 1/20 tree
	// still has more than a thousand files; their sizes shrink to keep bytes ∝ scale.
	pgCountExponent = 0.2
)

// pgBigSizes are the four large relation files in base/16384 at scale 1.
var pgBigSizes = []int64{100 << 20, 120 << 20, 140 << 20, 160 << 20}

func newRand(seed int64) *rand.Rand {
	s := uint64(seed)
	return rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15))
}

// newPool returns 1 MiB of compressible "tuple text".
func newPool(r *rand.Rand) []byte {
	words := []string{"INSERT", "public", "orders", "customer_id", "2026-11-25", "status", "shipped",
		"pending", "amount", "0.00", "NULL", "true", "false", "id", "name", "Smith", "Jones", "street",
		"Berlin", "Paris", "London", "sku-", "qty", "price", "tax", "eur", "usd", "note", "lorem", "ipsum"}
	var pool []byte
	for len(pool) < 1<<20 {
		w := words[r.IntN(len(words))]
		pool = append(pool, w...)
		pool = append(pool, '|')
		pool = strconv.AppendInt(pool, int64(r.IntN(100000)), 10)
		pool = append(pool, ' ')
	}
	return pool
}

// fillPage writes one page: a 24-byte header, 70–90% used (half random bytes, half pool
// text), the rest zeros (free space).
func fillPage(r *rand.Rand, pool, p []byte) {
	clear(p)
	rnd := r.Uint64()
	for i := 0; i < 24; i += 8 {
		for j := 0; j < 8; j++ {
			p[i+j] = byte(rnd >> (8 * j))
		}
	}
	used := page*70/100 + r.IntN(page*20/100)
	randPart := used / 2
	fillRandom(r, p[24:24+randPart])
	off := r.IntN(len(pool) - page)
	copy(p[24+randPart:used], pool[off:])
}

func fillRandom(r *rand.Rand, b []byte) {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		b[i], b[i+1], b[i+2], b[i+3], b[i+4], b[i+5], b[i+6], b[i+7] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24), byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56)
	}
	for ; i < len(b); i++ {
		b[i] = byte(r.Uint32())
	}
}

// writePages creates path with size bytes of pages (a partial last page is random).
func writePages(r *rand.Rand, pool []byte, path string, size int64, buf []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	for size > 0 {
		n := min(int64(len(buf)), size)
		for o := int64(0); o < n; o += page {
			end := min(o+page, n)
			if end-o == page {
				fillPage(r, pool, buf[o:end])
			} else {
				fillRandom(r, buf[o:end])
			}
		}
		if _, err := f.Write(buf[:n]); err != nil {
			_ = f.Close()
			return fmt.Errorf("writing %s: %w", path, err)
		}
		size -= n
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", path, err)
	}
	return nil
}

// pgPlan is the shape of a pg tree at one scale.
type pgPlan struct {
	smallFiles int
	smallMax   int64 // small files are log-uniform in [page, smallMax], page aligned
	bigs       []int64
	walSize    int64
}

func planPG(scale float64) (pgPlan, error) {
	if !(scale > 0 && scale <= 1) {
		return pgPlan{}, fmt.Errorf("pg scale %v out of range (0, 1]", scale)
	}
	p := pgPlan{smallFiles: pgSmallFiles, smallMax: pgSmallMax, walSize: pgWALSize}
	p.bigs = append(p.bigs, pgBigSizes...)
	if scale == 1 {
		return p, nil
	}
	p.smallFiles = max(1, int(math.Round(pgSmallFiles*math.Pow(scale, pgCountExponent))))
	// Mean size that keeps the small files' bytes ∝ scale, then the log-uniform upper
	// bound with that mean: (b-a)/ln(b/a) = mean, found by bisection on ln(b).
	mean := logUniformMean(page, pgSmallMax) * scale * pgSmallFiles / float64(p.smallFiles)
	if mean <= page {
		p.smallMax = page
	} else {
		lo, hi := math.Log(page), math.Log(pgSmallMax)
		for range 100 {
			mid := (lo + hi) / 2
			if logUniformMean(page, math.Exp(mid)) < mean {
				lo = mid
			} else {
				hi = mid
			}
		}
		p.smallMax = max(page, int64(math.Exp(lo))/page*page)
	}
	for i, b := range p.bigs {
		p.bigs[i] = scaledPages(b, scale)
	}
	p.walSize = scaledPages(pgWALSize, scale)
	return p, nil
}

func logUniformMean(a, b float64) float64 {
	if b <= a {
		return a
	}
	return (b - a) / math.Log(b/a)
}

// scaledPages scales n bytes, rounded down to whole pages, at least one page.
func scaledPages(n int64, scale float64) int64 {
	return max(page, int64(float64(n)*scale)/page*page)
}

// GenPG writes a postgres-like tree into dir, which must not exist or be empty:
// base/<16384..16413>/<20000+i> small files (log-uniform sizes, whole 8 KiB pages), four
// large files base/16384/3000{0..3} and six WAL segments in pg_wal/, 33 directories
// including dir. The same seed and scale give the same bytes.
//
// scale is in (0, 1]. Scale 1 is perf-anchors' data set: 2,500 files holding
// 1,148,600,320 bytes (seed 42; the report's 1,148,735,488 is `du -sb`, which adds the
// directories). Below 1, bytes shrink ∝ scale while the number of small files shrinks
// only as scale^0.2 (their sizes shrink instead, down to one page each), so small trees
// keep over a thousand files. Seed 42:
//
//	scale    files   file bytes
//	1        2,500   1,148,600,320
//	0.5      2,178     572,334,080
//	0.25     1,897     289,447,936
//	0.1      1,581     108,871,680
//	0.0625   1,440      68,198,400   (1/16: BENCH_QUICK)
//	0.05     1,378      51,748,864
//	0.02     1,149      22,192,128
//	0.01     1,001      14,540,800   (small files are one page each from here down,
//	0.001      635       5,742,592    so bytes no longer shrink ∝ scale)
func GenPG(dir string, seed int64, scale float64) error {
	plan, err := planPG(scale)
	if err != nil {
		return err
	}
	if err := requireEmptyDir(dir); err != nil {
		return err
	}
	r := newRand(seed)
	pool := newPool(r)
	buf := make([]byte, 1<<20)
	logMax := math.Log(float64(plan.smallMax) / page)
	for i := 0; i < plan.smallFiles; i++ {
		d := filepath.Join(dir, "base", fmt.Sprintf("%05d", 16384+i%pgDirs))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
		sz := max(page, int64(math.Exp(math.Log(page)+r.Float64()*logMax))/page*page)
		if err := writePages(r, pool, filepath.Join(d, strconv.Itoa(20000+i)), sz, buf); err != nil {
			return err
		}
	}
	big := filepath.Join(dir, "base", "16384")
	if err := os.MkdirAll(big, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", big, err)
	}
	for i, sz := range plan.bigs {
		if err := writePages(r, pool, filepath.Join(big, strconv.Itoa(30000+i)), sz, buf); err != nil {
			return err
		}
	}
	wal := filepath.Join(dir, "pg_wal")
	if err := os.MkdirAll(wal, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", wal, err)
	}
	for i := 0; i < pgWALSegments; i++ {
		if err := writePages(r, pool, filepath.Join(wal, fmt.Sprintf("0000000100000000000000%02X", i)), plan.walSize, buf); err != nil {
			return err
		}
	}
	return nil
}

func requireEmptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return os.MkdirAll(dir, 0o755)
	case err != nil:
		return fmt.Errorf("reading %s: %w", dir, err)
	case len(ents) > 0:
		return fmt.Errorf("generating into %s: directory is not empty", dir)
	}
	return nil
}

// Mutation says what a Mutate* call changed.
type Mutation struct {
	Files int // files touched (MutatePG) or 1 (MutateLarge)
	// Bytes is the number of bytes rewritten.
	Bytes int64
	// FileBytes is the total size of the touched files: what a backup that detects
	// changes per file (size, mtime) must read again.
	FileBytes int64
}

// MutatePG rewrites 1–4 random pages in pct% of the regular files below dir (sorted
// walk, so deterministic per seed and tree); each touched file gets a new mtime. On the
// scale-1 tree, pct 5 touches 125 files, ≈2.5 MB of pages in ≈58 MB of files.
func MutatePG(dir string, seed int64, pct int) (Mutation, error) {
	var m Mutation
	r := newRand(seed)
	pool := newPool(r)
	files, err := regularFiles(dir)
	if err != nil {
		return m, err
	}
	n := len(files) * pct / 100
	p := make([]byte, page)
	for _, i := range r.Perm(len(files))[:n] {
		f, err := os.OpenFile(files[i], os.O_RDWR, 0)
		if err != nil {
			return m, fmt.Errorf("opening %s: %w", files[i], err)
		}
		st, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return m, fmt.Errorf("reading %s: %w", files[i], err)
		}
		pages := st.Size() / page
		k := 1 + r.IntN(4)
		for j := 0; j < k && pages > 0; j++ {
			fillPage(r, pool, p)
			if _, err := f.WriteAt(p, r.Int64N(pages)*page); err != nil {
				_ = f.Close()
				return m, fmt.Errorf("writing %s: %w", files[i], err)
			}
			m.Bytes += page
		}
		if err := f.Close(); err != nil {
			return m, fmt.Errorf("closing %s: %w", files[i], err)
		}
		m.Files++
		m.FileBytes += st.Size()
	}
	return m, nil
}

func regularFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	sort.Strings(files)
	return files, nil
}

// Stats describe a tree on disk.
type Stats struct {
	Files, Dirs, Symlinks, Other int
	// Bytes is the sum of regular file sizes; Allocated their st_blocks in bytes.
	Bytes, Allocated int64
}

// Measure walks root (not following symlinks) and counts what it holds; root itself is
// counted when it is a directory.
func Measure(root string) (Stats, error) {
	var s Stats
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch t := d.Type(); {
		case t.IsDir():
			s.Dirs++
		case t&fs.ModeSymlink != 0:
			s.Symlinks++
		case t.IsRegular():
			s.Files++
			fi, err := d.Info()
			if err != nil {
				return err
			}
			s.Bytes += fi.Size()
			s.Allocated += allocated(fi)
		default:
			s.Other++
		}
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("measuring %s: %w", root, err)
	}
	return s, nil
}

// allocated is the space fi's file occupies on disk (st_blocks × 512).
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
