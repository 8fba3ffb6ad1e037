//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	corev1 "k8s.io/api/core/v1"

	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/test/datagen"
	"github.com/snapmove/snapmove/test/treecheck"
)

// TestSeedRoundTrip is the seed's story end to end: a PVC with a postgres-like tree in use
// by a pod, `velero backup create --snapshot-move-data`, the namespace deleted,
// `velero restore create --from-backup`, every file identical, and the kopia CLI lists the
// snapshot under Velero's source name and restores the same bytes.
func TestSeedRoundTrip(t *testing.T) {
	parallel(t)
	s := env
	ns := s.namespace(t, "seed")
	const pvc = "data-postgres-0"
	dir := s.pvc(t, ns, pvc, "1Gi", corev1.PersistentVolumeFilesystem)
	require.NoError(t, datagen.GenPG(filepath.Join(dir, "data"), 42, 0.02))
	require.NoError(t, datagen.GenTricky(filepath.Join(dir, "tricky")))
	// Linux names are bytes: names that are not UTF-8, two of which kopia alone would
	// store as one ("\ufffd\ufffd-not-utf8"), come back byte for byte.
	names := map[string]string{"\xff\xfe-not-utf8": "one", "\xff\xfd-not-utf8": "two", "caf\xe9 100%": "three"}
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "names"), 0o755))
	for n, content := range names {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "names", n), []byte(content), 0o644))
	}
	want, err := treecheck.Manifest(dir)
	require.NoError(t, err)
	s.app(t, ns, pvc, false)

	name := ns + "-b"
	b := s.backup(t, name, "--include-namespaces", ns, "--snapshot-move-data")
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, name))

	dus := s.dataUploads(t, name)
	require.Len(t, dus, 1)
	du := dus[0]
	require.Equal(t, naming.DataMover, du.Spec.DataMover)
	require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, du.Status.Phase, du.Status.Message)
	require.NotEmpty(t, du.Status.SnapshotID)
	require.Equal(t, du.Status.Progress.TotalBytes, du.Status.Progress.BytesDone)
	require.NotNil(t, du.Status.StartTimestamp)
	require.NotNil(t, du.Status.CompletionTimestamp)
	require.NotEmpty(t, du.Status.Node)

	s.requireDescribeShowsMove(t, name, ns, pvc, naming.BackupActionName)
	s.requireNoLeftovers(t)

	// The kopia CLI sees what the seed's author saw.
	kcfg := s.kopiaConnect(t, ns, s.bslPrefix+"/kopia/"+ns+"/")
	ls := run(t, s.kopia, append([]string{"snapshot", "ls", "--all"}, kcfg...)...)
	require.Contains(t, ls, "default@default:snapshot-data-upload-download/kopia/"+ns+"/"+pvc, ls)
	restored := t.TempDir()
	run(t, s.kopia, append([]string{"snapshot", "restore", du.Status.SnapshotID, restored}, kcfg...)...)
	kgot, err := treecheck.Manifest(restored)
	require.NoError(t, err)
	// The kopia CLI restores a directory's mtime as the newest mtime below it (what kopia
	// records in directory summaries), not the directory's own: snapmove's restore keeps
	// the real one, which the check of the restored volume below verifies.
	// It restores the names that are not UTF-8 as snapmove stored them: readable, one file
	// each ("\ufffdsnapmove:%FF%FE-not-utf8"); snapmove's own restore decodes them.
	encoded, err := os.ReadDir(filepath.Join(restored, "names"))
	require.NoError(t, err)
	var encodedNames []string
	for _, e := range encoded {
		encodedNames = append(encodedNames, e.Name())
	}
	require.ElementsMatch(t, []string{"\ufffdsnapmove:%FF%FE-not-utf8", "\ufffdsnapmove:%FF%FD-not-utf8", "\ufffdsnapmove:caf%E9 100%25"}, encodedNames)
	wantKopia := treecheck.Tree{}
	for p, e := range want {
		if !strings.HasPrefix(p, "names/") {
			wantKopia[p] = e
		}
	}
	for p := range kgot {
		if strings.HasPrefix(p, "names/") {
			delete(kgot, p)
		}
	}
	require.Empty(t, treecheck.Compare(wantKopia, kgot, treecheck.Options{IgnoreDirMtime: true}), "kopia CLI restore differs")

	s.deleteNamespace(t, ns)

	rname := ns + "-r"
	watch := exec.CommandContext(ctxT(t), s.bin(), "list", "--watch", "-o", "json")
	var frames bytes.Buffer
	watch.Stdout = &frames
	require.NoError(t, watch.Start())
	r := s.restore(t, rname, "--from-backup", name)
	require.Equal(t, velerov1.RestorePhaseCompleted, r.Status.Phase)
	dds := s.dataDownloads(t, rname)
	require.Len(t, dds, 1)
	require.Equal(t, velerov2alpha1.DataDownloadPhaseCompleted, dds[0].Status.Phase, dds[0].Status.Message)
	require.Equal(t, naming.DataMover, dds[0].Spec.DataMover)
	time.Sleep(3 * time.Second) // the watch's next pass

	got, err := treecheck.Manifest(s.volumePath(t, ns, pvc))
	require.NoError(t, err)
	require.Empty(t, treecheck.Compare(want, got, treecheck.Options{CheckAllocation: true, ExactSymlinkMtime: true}), "restored volume differs")
	s.requireNoLeftovers(t)

	// The CLI's view of it: the restore's report, and list --watch until interrupted.
	var report struct {
		Restore, Backup, Phase string
		Volumes                []struct {
			PVC, Phase            string
			BytesDone, TotalBytes int64
		}
		Counts map[string]int
	}
	require.NoError(t, json.Unmarshal([]byte(s.snapmoveOut(t, "report", "--restore", rname, "-o", "json")), &report))
	require.Equal(t, name, report.Backup)
	require.Equal(t, "Completed", report.Phase)
	require.Len(t, report.Volumes, 1)
	require.Equal(t, pvc, report.Volumes[0].PVC)
	require.Equal(t, dds[0].Status.Progress.TotalBytes, report.Volumes[0].BytesDone)
	require.Equal(t, map[string]int{"Completed": 1}, report.Counts)
	require.Regexp(t, `Restore `+rname+` of backup `+name+` \(Completed\)`, s.snapmove(t, "report", "--restore", rname))

	// list --watch, started before the restore, showed its DataDownload while it moved and
	// once more as it ended, and ended cleanly on Ctrl-C.
	require.NoError(t, watch.Process.Signal(os.Interrupt))
	require.NoError(t, watch.Wait(), "list --watch ends cleanly on Ctrl-C")
	dec := json.NewDecoder(&frames)
	var phases []string
	for {
		var frame struct {
			Time      time.Time
			Movements []struct{ Kind, Restore, PVC, Phase string }
		}
		if err := dec.Decode(&frame); err != nil {
			require.ErrorIs(t, err, io.EOF, frames.String())
			break
		}
		require.False(t, frame.Time.IsZero())
		for _, m := range frame.Movements {
			if m.Restore == rname {
				phases = append(phases, m.Phase)
			}
		}
	}
	t.Logf("list --watch saw the DataDownload as %v", phases)
	require.NotEmpty(t, phases, frames.String())
	require.Equal(t, "Completed", phases[len(phases)-1])
}

// TestKopiaPrefixSlash records what happens when a user connects the kopia CLI with the
// repository prefix without its trailing "/" (velero#7316): kopia treats the prefix as a
// plain string prefix, so "backups/kopia/ns" looks for "backups/kopia/nskopia.repository"
// and finds no repository. The kopia CLI offers no way to accept both forms, so README.md
// gives the connect command with the slash; this test fails when kopia starts accepting
// the prefix without it, so the docs can drop the warning.
func TestKopiaPrefixSlash(t *testing.T) {
	parallel(t)
	s := env
	ns := s.namespace(t, "slash")
	dir := s.pvc(t, ns, "data", "64Mi", corev1.PersistentVolumeFilesystem)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hello"), []byte("hello"), 0o644))
	name := ns + "-b"
	b := s.backup(t, name, "--include-namespaces", ns, "--snapshot-move-data")
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, name))

	s.kopiaConnect(t, ns, s.bslPrefix+"/kopia/"+ns+"/")
	out, err := runErr(s.kopia, "repository", "connect", "s3", "--bucket", s.bucket,
		"--prefix", s.bslPrefix+"/kopia/"+ns, "--endpoint", s.s3Endpoint, "--disable-tls",
		"--access-key", s.accessKey, "--secret-access-key", s.secretKey, "--password", s.repoPassword(t),
		"--config-file", filepath.Join(t.TempDir(), "c"))
	require.Error(t, err, "kopia connected without the trailing slash; drop the workaround docs")
	require.True(t, strings.Contains(strings.ToLower(out), "repository not initialized") ||
		strings.Contains(strings.ToLower(out), "not found"), out)
}

// With compression: zstd asked for one backup (the annotation snapmove.io/compression on
// the Backup, which the backup plugin copies onto its DataUploads; the mover setting of
// the same name goes the same way through the mover, unit-tested in its controller), the
// volume is stored compressed, snapmove's restore is byte-identical, and the kopia CLI
// built from the module Velero links shows the compressor as the source's policy and
// restores the snapshot. Per backup, it changes nothing the tests beside it use.
func TestCompressedBackup(t *testing.T) {
	parallel(t)
	s := env
	ns, dir := s.smallVolume(t, "zstd")
	text := bytes.Repeat([]byte("a compressible row of a table\n"), 100_000)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "table"), text, 0o644))
	du := s.movedRoundTrip(t, ns, dir, []string{"--annotations", naming.CompressionAnnotation + "=zstd"}, naming.BackupActionName)
	require.Equal(t, "zstd", du.Annotations[naming.CompressionAnnotation], "copied from the Backup")

	kcfg := s.kopiaConnect(t, ns, s.bslPrefix+"/kopia/"+ns+"/")
	pol := run(t, s.kopia, append([]string{"policy", "show", "default@default:snapshot-data-upload-download/kopia/" + ns + "/data"}, kcfg...)...)
	require.Regexp(t, `Compressor:\s+zstd`, pol)
	restored := t.TempDir()
	run(t, s.kopia, append([]string{"snapshot", "restore", du.Status.SnapshotID, restored}, kcfg...)...)
	got, err := os.ReadFile(filepath.Join(restored, "table"))
	require.NoError(t, err)
	require.Equal(t, text, got, "the kopia CLI restores the compressed snapshot")
}
