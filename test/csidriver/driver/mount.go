package driver

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// The node side shells out to mount(8), umount(8) and losetup(8) from util-linux:
// the commands are what a person debugging the stack would type, and their error
// messages end up in the RPC error.

// run executes a command and returns its trimmed stdout, or an error carrying its output.
func run(name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("running %s %s: %w: %s", name, strings.Join(args, " "), err,
			strings.TrimSpace(stderr.String()+" "+stdout.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// mountPoints returns the mount points of this mount namespace, from /proc/self/mountinfo.
func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("opening mountinfo: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": field 5 is the mount point.
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		out = append(out, unescapeMountinfo(fields[4]))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	return out, nil
}

// unescapeMountinfo undoes the kernel's octal escaping (\040 for space, etc.).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isMountPoint reports whether path is a mount point.
func isMountPoint(path string) (bool, error) {
	path = filepath.Clean(path)
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		path = resolved
	}
	mps, err := mountPoints()
	if err != nil {
		return false, err
	}
	for _, mp := range mps {
		if mp == path {
			return true, nil
		}
	}
	return false, nil
}

// mountsUnder returns the mount points at or below dir.
func mountsUnder(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	mps, err := mountPoints()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, mp := range mps {
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, nil
}

// bindMount bind-mounts src onto target; with readOnly the bind mount is then
// remounted read-only (a bind mount ignores "ro" on its first mount call).
func bindMount(src, target string, readOnly bool) error {
	if _, err := run("mount", "--bind", "--", src, target); err != nil {
		return err
	}
	if readOnly {
		if _, err := run("mount", "-o", "remount,bind,ro", "--", target); err != nil {
			if _, uerr := run("umount", "--", target); uerr != nil {
				return fmt.Errorf("%w (and undoing the bind mount failed: %v)", err, uerr)
			}
			return err
		}
	}
	return nil
}

// unmountAll unmounts target until it is no longer a mount point (stacked mounts included).
func unmountAll(target string) error {
	for i := 0; i < 16; i++ {
		mounted, err := isMountPoint(target)
		if err != nil || !mounted {
			return err
		}
		if _, err := run("umount", "--", target); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s is still a mount point after 16 unmounts", target)
}

// attachLoop attaches a free loop device to image (read-only when asked) and returns it.
func attachLoop(image string, readOnly bool) (string, error) {
	args := []string{"--find", "--show"}
	if readOnly {
		args = append(args, "--read-only")
	}
	dev, err := run("losetup", append(args, "--", image)...)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(dev, "/dev/") {
		return "", fmt.Errorf("losetup printed %q, not a device path", dev)
	}
	return dev, nil
}

// detachLoop detaches dev, but only while its backing file is still image: a device
// recorded before a reboot may by now belong to someone else.
func detachLoop(dev, image string) error {
	back, err := loopBackingFile(dev)
	if err != nil {
		return err
	}
	if back != image {
		return nil
	}
	_, err = run("losetup", "--detach", dev)
	return err
}

// loopBackingFile returns the backing file of dev, or "" when dev is not attached.
func loopBackingFile(dev string) (string, error) {
	back, err := run("losetup", "--noheadings", "--output", "BACK-FILE", "--", dev)
	if err != nil {
		if _, serr := os.Stat(dev); os.IsNotExist(serr) {
			return "", nil
		}
		return "", err
	}
	return strings.TrimSuffix(back, " (deleted)"), nil
}
