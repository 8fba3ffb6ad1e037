package orphans

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pkg/errors"
	"github.com/stretchr/testify/require"
	"github.com/vmware-tanzu/velero/pkg/label"

	"github.com/snapmove/snapmove/internal/mover/datapath"
)

var now = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

type fakeRepo struct {
	snaps     []datapath.Snapshot
	deleted   []string
	deleteErr error
}

func (r *fakeRepo) Snapshots(context.Context) ([]datapath.Snapshot, error) { return r.snaps, nil }
func (r *fakeRepo) DeleteSnapshot(_ context.Context, id string) error {
	if r.deleteErr != nil {
		return r.deleteErr
	}
	r.deleted = append(r.deleted, id)
	return nil
}
func (r *fakeRepo) Close(context.Context) error { return nil }

type fakeBucket struct {
	backups []string
	repos   map[string]*fakeRepo
	opened  []string
}

func (b *fakeBucket) Backups(context.Context) ([]string, error) { return b.backups, nil }
func (b *fakeBucket) Namespaces(context.Context) ([]string, error) {
	var ns []string
	for n := range b.repos {
		ns = append(ns, n)
	}
	return ns, nil
}
func (b *fakeBucket) Open(_ context.Context, ns string, forget bool) (Repository, error) {
	b.opened = append(b.opened, ns+map[bool]string{true: " rw", false: " ro"}[forget])
	return b.repos[ns], nil
}

func snap(id, pvc, backup string, age time.Duration, incomplete string) datapath.Snapshot {
	s := datapath.Snapshot{ID: id, Namespace: "app", PVC: pvc, StartTime: now.Add(-age), Incomplete: incomplete}
	if backup != "" {
		s.Tags = map[string]string{"velero.io/backup-name": backup}
	}
	return s
}

func TestRun(t *testing.T) {
	long := strings.Repeat("x", 70) // a name longer than a label: the tag holds its label form
	newRepo := func() *fakeRepo {
		return &fakeRepo{snaps: []datapath.Snapshot{
			snap("k1", "data", "kept", 48*time.Hour, ""),
			snap("k2", "data", "gone", 48*time.Hour, ""),
			snap("k3", "data", "gone", 47*time.Hour, "checkpoint"),
			snap("k4", "data", "", 48*time.Hour, ""),               // Velero's own mover: not ours to judge
			snap("k5", "data", "running", time.Hour, "checkpoint"), // too young: its backup may not be stored yet
			snap("k6", "logs", label.GetValidName(long), 48*time.Hour, ""),
		}}
	}
	tests := []struct {
		name        string
		backups     []string
		forget      bool
		deleteErr   error
		wantIDs     []string
		wantDeleted []string
		wantErr     string
	}{
		{name: "dry run", backups: []string{"kept", long}, wantIDs: []string{"k2", "k3"}},
		{name: "forget", backups: []string{"kept", long}, forget: true, wantIDs: []string{"k2", "k3"}, wantDeleted: []string{"k2", "k3"}},
		{name: "long backup name still stored", backups: []string{"kept"}, wantIDs: []string{"k2", "k3", "k6"}},
		{name: "no backup in the bucket", backups: nil, forget: true, wantErr: "the bucket holds no backup at all"},
		{name: "forgetting fails", backups: []string{"kept", long}, forget: true, deleteErr: errors.New("store down"), wantIDs: []string{"k2", "k3"}, wantErr: "forgetting snapshot k2 of app/data: store down"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			repo := newRepo()
			repo.deleteErr = tc.deleteErr
			b := &fakeBucket{backups: tc.backups, repos: map[string]*fakeRepo{"app": repo}}
			res, err := Run(context.Background(), b, Options{MinAge: 24 * time.Hour, Now: now, Forget: tc.forget})
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
			} else {
				require.NoError(t, err)
			}
			var ids []string
			for _, o := range res.Orphans {
				ids = append(ids, o.SnapshotID)
				require.Equal(t, tc.forget && tc.deleteErr == nil, o.Forgotten)
			}
			require.Equal(t, tc.wantIDs, ids)
			require.Equal(t, tc.wantDeleted, repo.deleted)
			require.Equal(t, []string{"app " + map[bool]string{true: "rw", false: "ro"}[tc.forget]}, b.opened, "read-only unless forgetting")
		})
	}
}

func TestPrint(t *testing.T) {
	res := Result{Backups: 3, Orphans: []Orphan{
		{Namespace: "app", PVC: "data", SnapshotID: "k2", Backup: "gone", StartTime: now},
		{Namespace: "app", PVC: "data", SnapshotID: "k3", Backup: "gone", Checkpoint: true, StartTime: now},
	}}
	var out bytes.Buffer
	require.NoError(t, Print(&out, res, false))
	require.Equal(t, `NAMESPACE/PVC  BACKUP  SNAPSHOT  KIND        STARTED               STATE
app/data       gone    k2        snapshot    2026-12-07T12:00:00Z  orphan
app/data       gone    k3        checkpoint  2026-12-07T12:00:00Z  orphan
2 orphaned snapshots (dry run: run again with --confirm to forget them)
`, out.String())
	out.Reset()
	require.NoError(t, Print(&out, Result{Backups: 3, Orphans: []Orphan{}}, false))
	require.Equal(t, "no orphaned snapshots (3 backups in the bucket)\n", out.String())
}
