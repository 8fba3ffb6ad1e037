//go:build e2e

package e2e

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"time"
)

// keepPodLogs copies the containers' logs under /var/log/pods into dir every two seconds
// until ctx ends, as dir/<namespace>_<pod>_<uid>/<container>.log. The kubelet deletes a
// pod's logs with the pod, and the mover deletes its workers once they end, so without
// these copies a failed run (on CI above all) leaves nothing of the workers to read.
func keepPodLogs(ctx context.Context, dir string) {
	copied := map[string]int64{}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		logs, _ := filepath.Glob("/var/log/pods/*/*/*.log")
		for _, src := range logs {
			fi, err := os.Stat(src)
			if err != nil || copied[src] == fi.Size() {
				continue
			}
			container := filepath.Dir(src)
			dst := filepath.Join(dir, filepath.Base(filepath.Dir(container)), filepath.Base(container)+".log")
			if copyFile(src, dst) == nil {
				copied[src] = fi.Size()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
