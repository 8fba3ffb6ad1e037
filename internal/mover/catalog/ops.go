package catalog

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/filestream"
)

// Catalog answers the user's questions about moved volumes.
type Catalog struct {
	Source Source
	Repos  Repositories
	Log    logrus.FieldLogger
	// OnVolume, when set, is told by Verify how many of its volumes it has done: before
	// each volume and once at the end.
	OnVolume func(done, total int)
}

// List returns the moved volumes, of one backup when backup is not "". With files, each
// repository that holds a listed snapshot is read once for the snapshots' file counts; a
// repository that cannot be read is logged and leaves Files at -1.
func (c *Catalog) List(ctx context.Context, backup string, files bool) ([]Volume, error) {
	vols, err := c.Source.Volumes(ctx, backup)
	if err != nil || !files {
		return vols, err
	}
	type repoKey struct{ bsl, ns string }
	counts := map[repoKey]map[string]int64{}
	for i := range vols {
		v := &vols[i]
		if v.SnapshotID == "" || v.Files >= 0 {
			continue
		}
		k := repoKey{v.StorageLocation, v.Namespace}
		byID, seen := counts[k]
		if !seen {
			byID, err = c.fileCounts(ctx, *v)
			if err != nil {
				c.Log.WithError(err).WithFields(logrus.Fields{"backupStorageLocation": k.bsl, "sourceNamespace": k.ns}).
					Warn("cannot read the repository for file counts")
			}
			counts[k] = byID
		}
		if n, ok := byID[v.SnapshotID]; ok {
			v.Files = n
		}
	}
	return vols, nil
}

func (c *Catalog) fileCounts(ctx context.Context, v Volume) (map[string]int64, error) {
	repo, err := c.open(ctx, v)
	if err != nil {
		return nil, err
	}
	defer c.close(ctx, repo)
	snaps, err := repo.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]int64, len(snaps))
	for _, s := range snaps {
		byID[s.ID] = s.Counts.Files
	}
	return byID, nil
}

// Find returns the moved data of volume (namespace/pvc) in backup: its completed upload.
// A volume the backup did not move, or whose upload did not complete, is an error that
// wraps ErrNoVolume and says why.
func (c *Catalog) Find(ctx context.Context, backup, volume string) (Volume, error) {
	ns, pvc, ok := strings.Cut(volume, "/")
	if !ok || ns == "" || pvc == "" || strings.Contains(pvc, "/") {
		return Volume{}, errors.Errorf("volume %q: want NAMESPACE/PVC", volume)
	}
	vols, err := c.Source.Volumes(ctx, backup)
	if err != nil {
		return Volume{}, err
	}
	var found *Volume
	var others []string
	for i := range vols {
		v := vols[i]
		if v.Namespace != ns || v.PVC != pvc {
			others = append(others, v.Key())
			continue
		}
		if v.SnapshotID != "" && v.Phase == string(velerov2alpha1.DataUploadPhaseCompleted) {
			return v, nil
		}
		found = &vols[i]
	}
	if found != nil {
		return Volume{}, errors.Wrapf(ErrNoVolume, "backup %s, volume %s: the upload ended %s (%s)", backup, volume, found.Phase, found.Message)
	}
	hint := "it moved none"
	if len(others) > 0 {
		hint = "it moved " + strings.Join(dedupe(others), ", ")
	}
	return Volume{}, errors.Wrapf(ErrNoVolume, "backup %s, volume %s: %s", backup, volume, hint)
}

// Browse lists directory (or describes the file) rel of volume in backup.
func (c *Catalog) Browse(ctx context.Context, backup, volume, rel string) (Volume, datapath.Entry, []datapath.Entry, error) {
	v, err := c.Find(ctx, backup, volume)
	if err != nil {
		return v, datapath.Entry{}, nil, err
	}
	repo, err := c.open(ctx, v)
	if err != nil {
		return v, datapath.Entry{}, nil, err
	}
	defer c.close(ctx, repo)
	self, children, err := repo.ReadDir(ctx, v.SnapshotID, rel)
	return v, self, children, err
}

// RestoreFiles restores chosen paths of volume in backup into req.Target (req.SnapshotID
// is set here).
func (c *Catalog) RestoreFiles(ctx context.Context, backup, volume string, req datapath.FilesRequest) (Volume, datapath.FilesResult, error) {
	v, err := c.Find(ctx, backup, volume)
	if err != nil {
		return v, datapath.FilesResult{}, err
	}
	repo, err := c.open(ctx, v)
	if err != nil {
		return v, datapath.FilesResult{}, err
	}
	defer c.close(ctx, repo)
	req.SnapshotID = v.SnapshotID
	res, err := repo.RestoreFiles(ctx, req)
	return v, res, err
}

// Owners reads the owners, in v's snapshot, of the entries of dir, a directory that
// chosen paths of it were restored into: one directory listing of the snapshot per
// directory of dir. An entry the snapshot does not list keeps its owner on disk.
func (c *Catalog) Owners(ctx context.Context, v Volume, dir string) (filestream.Owners, error) {
	repo, err := c.open(ctx, v)
	if err != nil {
		return nil, err
	}
	defer c.close(ctx, repo)
	owners := map[string][2]int{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "." {
			rel = ""
		}
		_, children, err := repo.ReadDir(ctx, v.SnapshotID, rel)
		if err != nil {
			return errors.Wrapf(err, "reading the owners of %s/", rel)
		}
		for _, e := range children {
			owners[path.Join(rel, e.Name)] = [2]int{int(e.UID), int(e.GID)}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return func(rel string) (int, int, bool) {
		o, ok := owners[rel]
		return o[0], o[1], ok
	}, nil
}

// Verification is the outcome of verifying one volume.
type Verification struct {
	Volume Volume `json:"volume"`
	OK     bool   `json:"ok"`
	// Summary is what was checked, or what is wrong (with the affected paths).
	Summary string `json:"summary"`
}

// Verify reads back the moved volumes of backup (all when backup is ""), or only volume
// when it is not "", with mode. Uploads that did not complete are reported as failed;
// each repository is opened once.
func (c *Catalog) Verify(ctx context.Context, backup, volume string, mode datapath.VerifyMode) ([]Verification, error) {
	var vols []Volume
	if volume != "" {
		v, err := c.Find(ctx, backup, volume)
		if err != nil {
			return nil, err
		}
		vols = []Volume{v}
	} else {
		var err error
		if vols, err = c.Source.Volumes(ctx, backup); err != nil {
			return nil, err
		}
	}
	type repoKey struct{ bsl, ns string }
	repos := map[repoKey]Repository{}
	defer func() {
		for _, r := range repos {
			c.close(ctx, r)
		}
	}()
	out := make([]Verification, 0, len(vols))
	for i, v := range vols {
		if c.OnVolume != nil {
			c.OnVolume(i, len(vols))
		}
		if v.SnapshotID == "" || v.Phase != string(velerov2alpha1.DataUploadPhaseCompleted) {
			out = append(out, Verification{Volume: v, Summary: fmt.Sprintf("no data: the upload ended %s (%s)", v.Phase, v.Message)})
			continue
		}
		k := repoKey{v.StorageLocation, v.Namespace}
		repo, ok := repos[k]
		if !ok {
			var err error
			if repo, err = c.open(ctx, v); err != nil {
				out = append(out, Verification{Volume: v, Summary: err.Error()})
				continue
			}
			repos[k] = repo
		}
		res, err := repo.VerifySnapshot(ctx, v.SnapshotID, mode, nil)
		if err != nil {
			out = append(out, Verification{Volume: v, Summary: err.Error()})
			continue
		}
		out = append(out, Verification{Volume: v, OK: true, Summary: DescribeVerification(res)})
	}
	if c.OnVolume != nil {
		c.OnVolume(len(vols), len(vols))
	}
	return out, nil
}

func (c *Catalog) open(ctx context.Context, v Volume) (Repository, error) {
	bsl, err := c.Source.Location(ctx, v)
	if err != nil {
		return nil, err
	}
	repo, err := c.Repos.Open(ctx, bsl, v.Namespace)
	return repo, errors.Wrapf(err, "opening the repository of namespace %s on BackupStorageLocation %s", v.Namespace, bsl.Name)
}

func (c *Catalog) close(ctx context.Context, repo Repository) {
	if err := repo.Close(ctx); err != nil {
		c.Log.WithError(err).Warn("closing the repository")
	}
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0:0]
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
