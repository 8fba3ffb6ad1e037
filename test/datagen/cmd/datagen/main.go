// Command datagen writes snapmove's deterministic test and benchmark data sets (package
// test/datagen) for scripts: hack/bench.sh, hack/demo.sh, and by hand.
//
//	datagen pg DIR SEED [SCALE]           postgres-like tree (scale 1: 1.15 GB, 2,500 files)
//	datagen large FILE SEED [SIZE]        one file with holes (default 2G; SIZE in bytes or with K/M/G)
//	datagen many DIR SEED N               N small files (0-2 KiB), 1,000 to a directory
//	datagen tricky DIR                    awkward cases for restore checks (needs root)
//	datagen mutate-pg DIR SEED PCT        rewrite pages in PCT% of the files
//	datagen mutate-large FILE SEED PCT    overwrite PCT% of the 1 MiB blocks
//	datagen ensure-pg DIR SEED SCALE      generate unless DIR.stamp matches
//	datagen ensure-large DIR/FILE SEED SIZE  generate unless DIR.stamp matches
//	datagen ensure-many DIR SEED N        generate unless DIR.stamp matches
//	datagen stats PATH                    files, directories, bytes, allocated bytes
//
// One summary line goes to stdout; errors go to stderr with exit status 1.
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/snapmove/snapmove/test/datagen"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "datagen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: datagen pg|large|many|tricky|mutate-pg|mutate-large|ensure-pg|ensure-large|ensure-many|stats PATH [ARGS]")
	}
	cmd, path, rest := args[0], args[1], args[2:]
	arg := func(i int, def string) string {
		if i < len(rest) {
			return rest[i]
		}
		return def
	}
	started := time.Now()
	var (
		m      datagen.Mutation
		reused bool
		err    error
	)
	switch cmd {
	case "pg", "ensure-pg":
		seed, scale, perr := seedAnd(arg(0, ""), arg(1, "1"), parseFloat)
		if perr != nil {
			return perr
		}
		if cmd == "pg" {
			err = datagen.GenPG(path, seed, scale)
		} else {
			reused, err = datagen.EnsurePG(path, seed, scale)
		}
	case "large", "ensure-large":
		seed, size, perr := seedAnd(arg(0, ""), arg(1, "2G"), parseSize)
		if perr != nil {
			return perr
		}
		if cmd == "large" {
			err = datagen.GenLarge(path, seed, size)
		} else {
			reused, err = datagen.EnsureLarge(path, seed, size)
		}
	case "many", "ensure-many":
		seed, n, perr := seedAnd(arg(0, ""), arg(1, ""), strconv.Atoi)
		if perr != nil {
			return perr
		}
		if cmd == "many" {
			err = datagen.GenMany(path, seed, n)
		} else {
			reused, err = datagen.EnsureMany(path, seed, n)
		}
	case "tricky":
		err = datagen.GenTricky(path)
	case "mutate-pg", "mutate-large":
		seed, pct, perr := seedAnd(arg(0, ""), arg(1, ""), strconv.Atoi)
		if perr != nil {
			return perr
		}
		if cmd == "mutate-pg" {
			m, err = datagen.MutatePG(path, seed, pct)
		} else {
			m, err = datagen.MutateLarge(path, seed, pct)
		}
		if err == nil {
			fmt.Printf("%s: %s: %d files touched (%d bytes), %d bytes rewritten\n", cmd, path, m.Files, m.FileBytes, m.Bytes)
			return nil
		}
	case "stats":
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		return err
	}
	s, err := datagen.Measure(path)
	if err != nil {
		return err
	}
	note := ""
	if reused {
		note = " (reused)"
	}
	fmt.Printf("%s: %s: %d files, %d dirs, %d symlinks, %d other, %d bytes, %d allocated, %.1fs%s\n",
		cmd, path, s.Files, s.Dirs, s.Symlinks, s.Other, s.Bytes, s.Allocated, time.Since(started).Seconds(), note)
	return nil
}

// seedAnd parses a seed and one more argument.
func seedAnd[T any](seed, second string, parse func(string) (T, error)) (int64, T, error) {
	var zero T
	s, err := strconv.ParseInt(seed, 10, 64)
	if err != nil {
		return 0, zero, fmt.Errorf("bad seed %q", seed)
	}
	v, err := parse(second)
	if err != nil {
		return 0, zero, fmt.Errorf("bad argument %q: %w", second, err)
	}
	return s, v, nil
}

func parseFloat(s string) (float64, error) { return strconv.ParseFloat(s, 64) }

// parseSize reads bytes, optionally with a binary K, M or G suffix.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"):
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}
