package catalog

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"testing"
	"time"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmware-tanzu/velero/pkg/apis/velero/shared"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/internal/testkit"
)

const veleroNS = "velero"

func dataUpload(name, backup, ns, pvc string, phase velerov2alpha1.DataUploadPhase, snapshotID string) *velerov2alpha1.DataUpload {
	start := metav1.NewTime(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	end := metav1.NewTime(start.Add(42 * time.Second))
	return &velerov2alpha1.DataUpload{
		ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: name,
			Labels:      map[string]string{velerov1.BackupNameLabel: backup},
			Annotations: map[string]string{naming.VerificationAnnotation: "verified (metadata): 3 files"}},
		Spec: velerov2alpha1.DataUploadSpec{SourceNamespace: ns, SourcePVC: pvc, DataMover: naming.DataMover, BackupStorageLocation: "default"},
		Status: velerov2alpha1.DataUploadStatus{Phase: phase, SnapshotID: snapshotID, Message: "msg of " + name,
			StartTimestamp: &start, CompletionTimestamp: &end,
			Progress: shared.DataMoveOperationProgress{TotalBytes: 3000}, IncrementalBytes: 1000},
	}
}

func backupObj(name string) *velerov1.Backup {
	return &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: name}, Status: velerov1.BackupStatus{Phase: velerov1.BackupPhasePartiallyFailed}}
}

// fakeRepo is a repository holding snapshots with fixed contents.
type fakeRepo struct {
	snaps    []datapath.Snapshot
	verifyOK map[string]bool
	closed   *int
}

func (r fakeRepo) Snapshots(context.Context) ([]datapath.Snapshot, error) { return r.snaps, nil }
func (r fakeRepo) ReadDir(_ context.Context, id, rel string) (datapath.Entry, []datapath.Entry, error) {
	return datapath.Entry{Name: "/", Mode: fs.ModeDir | 0o755}, []datapath.Entry{{Name: id + ":" + rel, Mode: 0o644}}, nil
}
func (r fakeRepo) RestoreFiles(_ context.Context, req datapath.FilesRequest) (datapath.FilesResult, error) {
	return datapath.FilesResult{Matched: append([]string{req.SnapshotID}, req.Paths...)}, nil
}
func (r fakeRepo) VerifySnapshot(_ context.Context, id string, mode datapath.VerifyMode, _ *datapath.TreeCounts) (datapath.VerifyResult, error) {
	if !r.verifyOK[id] {
		return datapath.VerifyResult{}, errors.Errorf("snapshot %s: data/a.txt: content missing", id)
	}
	return datapath.VerifyResult{Mode: mode, Checked: datapath.TreeCounts{Files: 3, Dirs: 1, Bytes: 1500}}, nil
}
func (r fakeRepo) Close(context.Context) error { *r.closed++; return nil }

type fakeRepos struct {
	byNS   map[string]fakeRepo
	opened map[string]int
	closed int
}

func (f *fakeRepos) Open(_ context.Context, _ *velerov1.BackupStorageLocation, ns string) (Repository, error) {
	r, ok := f.byNS[ns]
	if !ok {
		return nil, errors.Errorf("no repository for %s", ns)
	}
	f.opened[ns]++
	r.closed = &f.closed
	return r, nil
}

func (f *fakeRepos) Namespaces(context.Context, *velerov1.BackupStorageLocation) ([]string, error) {
	var out []string
	for ns := range f.byNS {
		out = append(out, ns)
	}
	return out, nil
}

func snap(id, ns, pvc, backup string, files int64) datapath.Snapshot {
	tags := map[string]string{}
	if backup != "" {
		tags[velerov1.BackupNameLabel] = backup
	}
	return datapath.Snapshot{ID: id, Namespace: ns, PVC: pvc, Tags: tags, Counts: datapath.TreeCounts{Files: files, Bytes: 100 * files},
		StartTime: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
}

func newClusterCatalog(t *testing.T, repos *fakeRepos, objs ...client.Object) *Catalog {
	objs = append(objs, &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "default"}})
	c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(objs...).Build()
	return &Catalog{Source: Cluster{Client: c, Namespace: veleroNS}, Repos: repos, Log: logrus.New()}
}

func TestListFromCluster(t *testing.T) {
	repos := &fakeRepos{opened: map[string]int{}, byNS: map[string]fakeRepo{
		"app": {snaps: []datapath.Snapshot{snap("s1", "app", "data", "b1", 7), snap("s2", "app", "logs", "b1", 9)}},
	}}
	cat := newClusterCatalog(t, repos, backupObj("b1"), backupObj("b2"),
		dataUpload("du1", "b1", "app", "data", velerov2alpha1.DataUploadPhaseCompleted, "s1"),
		dataUpload("du2", "b1", "app", "logs", velerov2alpha1.DataUploadPhaseCompleted, "s2"),
		dataUpload("du3", "b1", "app", "cache", velerov2alpha1.DataUploadPhaseCanceled, ""),
		dataUpload("du4", "b2", "app", "data", velerov2alpha1.DataUploadPhaseCompleted, "s9"))

	vols, err := cat.List(context.Background(), "b1", true)
	require.NoError(t, err)
	require.Len(t, vols, 3)
	assert.Equal(t, []string{"app/cache", "app/data", "app/logs"}, []string{vols[0].Key(), vols[1].Key(), vols[2].Key()})
	assert.Equal(t, int64(-1), vols[0].Files, "no snapshot: no count")
	assert.Equal(t, int64(7), vols[1].Files)
	assert.Equal(t, int64(9), vols[2].Files)
	assert.Equal(t, 42*time.Second, vols[1].Duration())
	assert.Equal(t, "verified (metadata): 3 files", vols[1].Verification)
	assert.Equal(t, 1, repos.opened["app"], "one repository is opened once")
	assert.Equal(t, 1, repos.closed)

	all, err := cat.List(context.Background(), "", false)
	require.NoError(t, err)
	assert.Len(t, all, 4)
	assert.Equal(t, "b2", all[3].Backup)

	_, err = cat.List(context.Background(), "nope", false)
	assert.ErrorContains(t, err, "backup nope not found in namespace velero")
}

func TestFind(t *testing.T) {
	repos := &fakeRepos{opened: map[string]int{}}
	cat := newClusterCatalog(t, repos, backupObj("b1"),
		dataUpload("du1", "b1", "app", "data", velerov2alpha1.DataUploadPhaseCompleted, "s1"),
		dataUpload("du3", "b1", "app", "cache", velerov2alpha1.DataUploadPhaseCanceled, ""))
	for _, tc := range []struct {
		volume, wantID, wantErr string
	}{
		{volume: "app/data", wantID: "s1"},
		{volume: "app/cache", wantErr: "backup b1, volume app/cache: the upload ended Canceled (msg of du3)"},
		{volume: "app/other", wantErr: "backup b1, volume app/other: it moved app/cache, app/data"},
		{volume: "data", wantErr: `volume "data": want NAMESPACE/PVC`},
		{volume: "a/b/c", wantErr: `want NAMESPACE/PVC`},
	} {
		t.Run(tc.volume, func(t *testing.T) {
			v, err := cat.Find(context.Background(), "b1", tc.volume)
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantID, v.SnapshotID)
		})
	}
}

func TestBucketSource(t *testing.T) {
	repos := &fakeRepos{opened: map[string]int{}, byNS: map[string]fakeRepo{
		"app": {snaps: []datapath.Snapshot{snap("s1", "app", "data", "b1", 7), snap("s0", "app", "data", "", 3),
			func() datapath.Snapshot {
				s := snap("c1", "app", "data", "b1", 1)
				s.Incomplete = "checkpoint"
				return s
			}()}},
		"db": {snaps: []datapath.Snapshot{snap("s2", "db", "pg", "b2", 5)}},
	}}
	cat := &Catalog{Source: Bucket{BSL: &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "offline"}}, Repos: repos}, Repos: repos, Log: logrus.New()}

	all, err := cat.List(context.Background(), "", true)
	require.NoError(t, err)
	var ids []string
	for _, v := range all {
		ids = append(ids, v.SnapshotID)
	}
	assert.Equal(t, []string{"s0", "s1", "s2"}, ids, "checkpoints are not backups; untagged snapshots are listed without a backup")
	assert.Equal(t, "unknown", all[0].DataMover)

	v, err := cat.Find(context.Background(), "b1", "app/data")
	require.NoError(t, err)
	assert.Equal(t, "s1", v.SnapshotID)
	assert.Equal(t, int64(7), v.Files)
	assert.Equal(t, "offline", v.StorageLocation)

	_, self, children, err := cat.Browse(context.Background(), "b2", "db/pg", "etc")
	require.NoError(t, err)
	assert.True(t, self.Mode.IsDir())
	assert.Equal(t, "s2:etc", children[0].Name)

	_, res, err := cat.RestoreFiles(context.Background(), "b2", "db/pg", datapath.FilesRequest{Paths: []string{"a", "b/*"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"s2", "a", "b/*"}, res.Matched, "the request reaches the repository with the snapshot ID set")
}

func TestVerify(t *testing.T) {
	repos := &fakeRepos{opened: map[string]int{}, byNS: map[string]fakeRepo{
		"app": {verifyOK: map[string]bool{"s1": true}},
	}}
	cat := newClusterCatalog(t, repos, backupObj("b1"),
		dataUpload("du1", "b1", "app", "data", velerov2alpha1.DataUploadPhaseCompleted, "s1"),
		dataUpload("du2", "b1", "app", "logs", velerov2alpha1.DataUploadPhaseCompleted, "s2"),
		dataUpload("du3", "b1", "app", "cache", velerov2alpha1.DataUploadPhaseFailed, ""))
	var steps [][2]int
	cat.OnVolume = func(done, total int) { steps = append(steps, [2]int{done, total}) }
	vs, err := cat.Verify(context.Background(), "b1", "", datapath.VerifyMode{Level: datapath.VerifyFull})
	require.NoError(t, err)
	require.Len(t, vs, 3)
	assert.Equal(t, [][2]int{{0, 3}, {1, 3}, {2, 3}, {3, 3}}, steps, "before each volume, and at the end")
	got := map[string]Verification{}
	for _, v := range vs {
		got[v.Volume.Key()] = v
	}
	assert.True(t, got["app/data"].OK)
	assert.Equal(t, "verified (full): 3 files, 1 directory, 1.50 kB; content of 0 files (0 B) read back in 0s", got["app/data"].Summary)
	assert.False(t, got["app/logs"].OK)
	assert.Contains(t, got["app/logs"].Summary, "data/a.txt: content missing")
	assert.False(t, got["app/cache"].OK)
	assert.Equal(t, "no data: the upload ended Failed (msg of du3)", got["app/cache"].Summary)
	assert.Equal(t, 1, repos.opened["app"])
	assert.Equal(t, 1, repos.closed)
}

type tarItem struct {
	name string
	obj  any
}

func tarball(t *testing.T, items ...tarItem) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, it := range items {
		data, err := json.Marshal(it.obj)
		require.NoError(t, err)
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: it.name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}))
		_, err = tw.Write(data)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	return buf.Bytes()
}

func pvc(ns, name string, annotations map[string]string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-" + name}}
}

func TestReport(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web"}, Spec: corev1.PodSpec{Volumes: []corev1.Volume{
		{Name: "www", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "www"}}}}}}
	contents := tarball(t,
		tarItem{"resources/persistentvolumeclaims/namespaces/app/data.json", pvc("app", "data", nil)},
		tarItem{"resources/persistentvolumeclaims/v1-preferredversion/namespaces/app/data.json", pvc("app", "data", nil)},
		tarItem{"resources/persistentvolumeclaims/namespaces/app/cache.json", pvc("app", "cache", nil)},
		tarItem{"resources/persistentvolumeclaims/namespaces/app/local.json", pvc("app", "local", map[string]string{naming.SkippedAnnotation: "PV pv-local is not a CSI volume"})},
		tarItem{"resources/persistentvolumeclaims/namespaces/app/www.json", pvc("app", "www", nil)},
		tarItem{"resources/persistentvolumeclaims/namespaces/app/old.json", pvc("app", "old", nil)},
		tarItem{"resources/pods/namespaces/app/web.json", pod},
		tarItem{"resources/configmaps/namespaces/app/x.json", map[string]string{"kind": "ConfigMap"}},
	)
	pvb := &velerov1.PodVolumeBackup{ObjectMeta: metav1.ObjectMeta{Namespace: veleroNS, Name: "pvb1", Labels: map[string]string{velerov1.BackupNameLabel: "b1"}},
		Spec:   velerov1.PodVolumeBackupSpec{Pod: corev1.ObjectReference{Namespace: "app", Name: "web"}, Volume: "www"},
		Status: velerov1.PodVolumeBackupStatus{Phase: velerov1.PodVolumeBackupPhaseCompleted}}
	repos := &fakeRepos{opened: map[string]int{}}
	started := metav1.NewTime(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	b1 := backupObj("b1")
	b1.Spec.IncludedNamespaces = []string{"app"}
	b1.Spec.LabelSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"scratch"}}}}
	b1.Status.StartTimestamp = &started
	live := func(ns, name string, created time.Time, labels map[string]string) *corev1.PersistentVolumeClaim {
		p := pvc(ns, name, nil)
		p.CreationTimestamp = metav1.NewTime(created)
		p.Labels = labels
		return p
	}
	before, after := started.Add(-time.Hour), started.Add(time.Minute)
	objs := []client.Object{b1, pvb,
		// What the cluster holds now: a PVC whose backup failed (Velero stores no item
		// whose action failed), one made after the backup started, one outside its
		// namespaces, one its label selector leaves out, and one the backup holds.
		live("app", "nosnapclass", before, nil), live("app", "late", after, nil), live("other", "x", before, nil),
		live("app", "tmp", before, map[string]string{"tier": "scratch"}), live("app", "data", before, nil),
		dataUpload("du1", "b1", "app", "data", velerov2alpha1.DataUploadPhaseCompleted, "s1"),
		dataUpload("du3", "b1", "app", "cache", velerov2alpha1.DataUploadPhaseCanceled, "")}
	cat := newClusterCatalog(t, repos, objs...)
	r := &Reporter{Client: cat.Source.(Cluster).Client, Namespace: veleroNS, Catalog: cat,
		Contents: func(_ context.Context, backup string, w io.Writer) error {
			require.Equal(t, "b1", backup)
			_, err := w.Write(contents)
			return err
		}}
	rep, err := r.Report(context.Background(), "b1")
	require.NoError(t, err)
	got := map[string]string{}
	for _, p := range rep.PVCs {
		got[p.Namespace+"/"+p.PVC] = p.Status + ": " + p.Reason
	}
	assert.Equal(t, map[string]string{
		"app/data":        "Moved: ",
		"app/cache":       "Failed: upload Canceled: msg of du3",
		"app/local":       "Skipped: PV pv-local is not a CSI volume",
		"app/www":         "FileSystemBackup: PodVolumeBackup pvb1 (Completed) of pod web, volume www",
		"app/old":         "Skipped: no record of why: no upload, no file system backup, and no reason recorded by snapmove's backup plugin (was it loaded?)",
		"app/nosnapclass": "NotBackedUp: the backup holds no copy of it: backing it up failed (velero backup describe b1 --details lists the error)",
	}, got)
	assert.Equal(t, map[string]int{StatusMoved: 1, StatusFailed: 1, StatusSkipped: 2, StatusFSBackup: 1, StatusNotBackedUp: 1}, rep.Counts)

	var out bytes.Buffer
	require.NoError(t, PrintReport(&out, rep))
	testkit.Golden(t, "testdata/report.txt", out.String())

	// API errors and a broken download are reported, naming what failed.
	broken := &Reporter{Client: cat.Source.(Cluster).Client, Namespace: veleroNS, Catalog: cat,
		Contents: func(context.Context, string, io.Writer) error { return errors.New("download request timed out") }}
	_, err = broken.Report(context.Background(), "b1")
	assert.ErrorContains(t, err, "reading the contents of backup b1")
	failing := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, l client.ObjectList, o ...client.ListOption) error {
			if _, ok := l.(*velerov1.PodVolumeBackupList); ok {
				return errors.New("etcd is gone")
			}
			return c.List(ctx, l, o...)
		}}).Build()
	r.Client = failing
	_, err = r.Report(context.Background(), "b1")
	assert.ErrorContains(t, err, "listing the PodVolumeBackups of backup b1: etcd is gone")
}

func TestModeString(t *testing.T) {
	for mode, want := range map[fs.FileMode]string{
		fs.ModeDir | 0o755:                 "drwxr-xr-x",
		0o644:                              "-rw-r--r--",
		fs.ModeSymlink | 0o777:             "lrwxrwxrwx",
		fs.ModeSetuid | 0o755:              "-rwsr-xr-x",
		fs.ModeSetgid | 0o640:              "-rw-r-S---",
		fs.ModeDir | fs.ModeSticky | 0o777: "drwxrwxrwt",
		fs.ModeDevice | 0o660:              "brw-rw----",
		fs.ModeDevice | fs.ModeCharDevice:  "c---------",
	} {
		assert.Equal(t, want, ModeString(mode), "%o", mode)
	}
}

func TestHumanBytes(t *testing.T) {
	assert.Equal(t, "-", humanBytes(-1))
	assert.Equal(t, "999 B", humanBytes(999))
	assert.Equal(t, "1.50 kB", humanBytes(1500))
	assert.Equal(t, "1.20 GB", humanBytes(1_200_000_000))
	assert.Equal(t, "99.9 kB", humanBytes(99_949))
	assert.Equal(t, "1.00 MB", humanBytes(999_999))
	assert.Equal(t, "2.15 GB", humanBytes(2<<30))
}
