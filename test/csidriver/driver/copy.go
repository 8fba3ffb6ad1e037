package driver

import (
	"fmt"
	"os"
	"path/filepath"
)

// copyTree copies the directory src to dst, which must not exist yet. It uses
// `cp -a --sparse=always`: modes, owners, timestamps, symlinks, hard links, xattrs
// and holes in sparse files are preserved. The copy is not atomic with respect to
// writers of src.
func copyTree(src, dst string) error {
	_, err := run("cp", "-a", "--sparse=always", "--", src, dst)
	return err
}

// copyImage copies the block image src to dst (which must not exist), keeping holes.
func copyImage(src, dst string) error {
	_, err := run("cp", "--preserve=mode,timestamps", "--sparse=always", "--", src, dst)
	return err
}

// createAtomically builds final through fill(tmp) on a temporary sibling path and
// renames it into place, so a crash never leaves a half-made volume or snapshot
// under its final name. fill gets a path that does not exist.
func createAtomically(final string, fill func(tmp string) error) error {
	tmp := filepath.Join(filepath.Dir(final), ".tmp-"+filepath.Base(final))
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("removing leftover %s: %w", tmp, err)
	}
	if err := fill(tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("renaming %s to %s: %w", tmp, final, err)
	}
	return nil
}

// removeData deletes a volume's or snapshot's data, refusing while anything is
// mounted at or below it (RemoveAll would otherwise delete through the mount).
func removeData(path string) error {
	mps, err := mountsUnder(path)
	if err != nil {
		return err
	}
	if len(mps) > 0 {
		return fmt.Errorf("refusing to remove %s: mounted at %v", path, mps)
	}
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}
