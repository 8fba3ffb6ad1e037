// imgtool builds a single-layer docker-archive image tarball from local files, without a registry, for
// `ctr images import`.
//
//	usage: imgtool -ref REF -out FILE.tar [-entrypoint a,b] [-env K=V,...] SRC=DST [SRC=DST ...]
//
// Each SRC file is copied to DST (absolute path in the image) with mode 0755. The image also gets empty
// /tmp (1777), /etc, /proc, /sys, /dev and /data directories unless a file already created them.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// epoch gives every tar entry the same timestamp, so the same inputs give the same image ID.
var epoch = time.Unix(0, 0)

func main() {
	ref := flag.String("ref", "", "image reference, e.g. docker.io/snapmove/snapmove:dev")
	out := flag.String("out", "", "output tarball (docker-archive)")
	entrypoint := flag.String("entrypoint", "", "comma-separated entrypoint")
	env := flag.String("env", "PATH=/bin:/usr/bin", "comma-separated environment")
	arch := flag.String("arch", "amd64", "the image's architecture (the binaries' GOARCH)")
	user := flag.String("user", "", "the image's USER (uid:gid), as the Dockerfile's")
	flag.Parse()
	if *ref == "" || *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: imgtool -ref REF -out FILE.tar [-entrypoint a,b] [-env K=V,...] [-arch A] [-user U] SRC=DST ...")
		os.Exit(2)
	}
	if err := build(*ref, *out, *entrypoint, *env, *arch, *user, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "imgtool:", err)
		os.Exit(1)
	}
}

func build(ref, out, entrypoint, env, arch, user string, files []string) error {
	layerBytes, err := layer(files)
	if err != nil {
		return err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	})
	if err != nil {
		return fmt.Errorf("creating layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return fmt.Errorf("appending layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("reading image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.User = user
	cf.Created.Time = epoch
	if entrypoint != "" {
		cf.Config.Entrypoint = strings.Split(entrypoint, ",")
	}
	if env != "" {
		cf.Config.Env = strings.Split(env, ",")
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return fmt.Errorf("setting image config: %w", err)
	}
	tag, err := name.ParseReference(ref)
	if err != nil {
		return fmt.Errorf("parsing reference %s: %w", ref, err)
	}
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return nil
}

// layer returns an uncompressed tar holding the files (SRC=DST pairs) and the base directories.
func layer(files []string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	mkdir := func(d string, mode int64) error {
		if dirs[d] {
			return nil
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: mode, ModTime: epoch})
	}
	for _, f := range files {
		src, dst, ok := strings.Cut(f, "=")
		if !ok || src == "" || !strings.HasPrefix(dst, "/") {
			return nil, fmt.Errorf("argument %q: want SRC=/absolute/DST", f)
		}
		dst = strings.TrimPrefix(dst, "/")
		parts := strings.Split(dst, "/")
		for i := 1; i < len(parts); i++ {
			if err := mkdir(strings.Join(parts[:i], "/")+"/", 0o755); err != nil {
				return nil, err
			}
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", src, err)
		}
		hdr := &tar.Header{Name: dst, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data)), ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	base := map[string]int64{"tmp/": 0o1777, "etc/": 0o755, "proc/": 0o755, "sys/": 0o755, "dev/": 0o755, "data/": 0o755}
	names := make([]string, 0, len(base))
	for d := range base {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		if err := mkdir(d, base[d]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
