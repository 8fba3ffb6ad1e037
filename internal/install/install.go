package install

import (
	"io"
	"os"
	"path/filepath"

	"github.com/pkg/errors"
)

// BinaryName is the file name the binary is installed under.
const BinaryName = "snapmove"

// Self copies the running executable into dir as BinaryName with mode 0755 and returns
// the path written. The copy goes to a temporary file in dir first and is renamed into
// place, so Velero never sees a half-written plugin.
func Self(dir string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", errors.Wrap(err, "finding the running executable")
	}
	return Copy(exe, dir)
}

// Copy installs the file src into dir as BinaryName (mode 0755), atomically.
func Copy(src, dir string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", errors.Wrapf(err, "opening %s", src)
	}
	defer in.Close()

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", errors.Wrapf(err, "creating directory %s", dir)
	}
	tmp, err := os.CreateTemp(dir, "."+BinaryName+"-*")
	if err != nil {
		return "", errors.Wrapf(err, "creating a temporary file in %s", dir)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename

	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return "", errors.Wrapf(err, "copying %s to %s", src, dir)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", errors.Wrapf(err, "making %s executable", tmp.Name())
	}
	if err := tmp.Close(); err != nil {
		return "", errors.Wrapf(err, "writing %s", tmp.Name())
	}
	dst := filepath.Join(dir, BinaryName)
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", errors.Wrapf(err, "renaming into %s", dst)
	}
	return dst, nil
}
