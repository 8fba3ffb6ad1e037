//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/test/treecheck"
)

// TestRepositoryCommands is the user at 3 a.m. who needs one file back: a backup of a
// 2,500-file volume, a PVC on a non-CSI volume and a PVC that is not bound; then
// `snapmove list`, `ls`, `restore-files` from the cluster and from the bucket alone,
// `report`, and `verify` before and after a pack of the repository is corrupted.
func TestRepositoryCommands(t *testing.T) {
	parallel(t)
	s := env
	ns := s.namespace(t, "catalog")
	dir := s.pvc(t, ns, "data", "256Mi", corev1.PersistentVolumeFilesystem)
	const dirs, perDir = 50, 50
	rng := rand.New(rand.NewSource(11))
	for d := 0; d < dirs; d++ {
		sub := filepath.Join(dir, fmt.Sprintf("dir%02d", d))
		require.NoError(t, os.MkdirAll(sub, 0o755))
		for f := 0; f < perDir; f++ {
			b := make([]byte, 512+rng.Intn(4096))
			rng.Read(b)
			require.NoError(t, os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%02d", f)), b, 0o640))
		}
	}
	require.NoError(t, os.Chmod(filepath.Join(dir, "dir07", "f03"), 0o750|os.ModeSetuid))
	// names a tenant may choose: an escape sequence and a newline, and Latin-1
	hostile := map[string]string{"evil\x1b[2J\nforged": `evil\x1b[2J\nforged`, "caf\xe9": `caf\xe9`}
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "names"), 0o755))
	for name := range hostile {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "names", name), []byte(name), 0o644))
	}
	s.nonCSIClaim(t, ns, "local")
	pending := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pending"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To("no-such-class"),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}},
		},
	}
	require.NoError(t, s.c.Create(ctxT(t), pending))

	name := ns + "-b"
	b := s.backup(t, name, "--include-namespaces", ns, "--snapshot-move-data")
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, s.backupLogs(t, name))

	// The repository is Velero's own: Velero found the BackupRepository the mover made
	// for it, connected to the repository and set it Ready, and lists it.
	repoName := ns + "-default-kopia"
	poll(t, "BackupRepository "+repoName+" to be Ready", 2*time.Minute, func(ctx context.Context) (bool, error) {
		var br velerov1.BackupRepository
		err := s.c.Get(ctx, crclient.ObjectKey{Namespace: s.veleroNS, Name: repoName}, &br)
		if err != nil {
			return false, crclient.IgnoreNotFound(err)
		}
		require.NotEqual(t, velerov1.BackupRepositoryPhaseNotReady, br.Status.Phase, br.Status.Message)
		return br.Status.Phase == velerov1.BackupRepositoryPhaseReady, nil
	})
	require.Contains(t, s.veleroCLI(t, "repo", "get"), repoName)
	s.requireVeleroMaintains(t, repoName)

	// list: the moved volume with its snapshot, size and file count.
	var vols []struct {
		Backup, Namespace, PVC, SnapshotID, Phase, Verification string
		Files, TotalBytes                                       int64
	}
	require.NoError(t, json.Unmarshal([]byte(s.snapmoveOut(t, "list", name, "-o", "json")), &vols))
	require.Len(t, vols, 1)
	require.Equal(t, "data", vols[0].PVC)
	require.Equal(t, "Completed", vols[0].Phase)
	require.Equal(t, int64(dirs*perDir+len(hostile)), vols[0].Files)
	require.Contains(t, vols[0].Verification, "verified (metadata)")
	text := s.snapmove(t, "list", name)
	require.Contains(t, text, ns+"/data", text)

	// ls: a directory, as ls -l shows it.
	ls := s.snapmoveOut(t, "ls", name, ns+"/data", "dir07")
	require.Len(t, strings.Split(strings.TrimSpace(ls), "\n"), perDir, ls)
	st, err := os.Stat(filepath.Join(dir, "dir07", "f03"))
	require.NoError(t, err)
	require.Regexp(t, fmt.Sprintf(`-rwsr-x---\s+\d+\s+\d+\s+%d .* f03\n`, st.Size()), ls)
	var f03 []struct {
		Name, Mode, Perm string
		Size             int64
	}
	require.NoError(t, json.Unmarshal([]byte(s.snapmoveOut(t, "ls", name, ns+"/data", "dir07/f03", "-o", "json")), &f03))
	require.Equal(t, []struct {
		Name, Mode, Perm string
		Size             int64
	}{{"f03", "-rwsr-x---", "4750", st.Size()}}, f03, "the mode as ls prints it, lowerCamel keys")

	// ls escapes names as ls -b does; -o json carries them exactly (bytes when not UTF-8).
	lsNames := s.snapmoveOut(t, "ls", name, ns+"/data", "names")
	require.NotContains(t, lsNames, "\x1b", "an escape sequence reached the terminal")
	require.Len(t, strings.Split(strings.TrimSpace(lsNames), "\n"), len(hostile), lsNames)
	var jsonNames []struct {
		Name      string
		NameBytes []byte
	}
	require.NoError(t, json.Unmarshal([]byte(s.snapmoveOut(t, "ls", name, ns+"/data", "names", "-o", "json")), &jsonNames))
	require.Len(t, jsonNames, len(hostile))
	for _, e := range jsonNames {
		exact := e.Name
		if e.NameBytes != nil {
			exact = string(e.NameBytes)
		}
		require.Contains(t, hostile, exact)
		require.Contains(t, lsNames, " "+hostile[exact]+"\n")
	}

	// restore-files: one file and one directory, byte-identical with modes and times.
	target := t.TempDir()
	out := s.snapmove(t, "restore-files", name, ns+"/data", "dir07/f03", "dir12", "--to", target)
	require.Contains(t, out, "restored dir07/f03, dir12", out)
	requireSameSubtree(t, filepath.Join(dir, "dir12"), filepath.Join(target, "dir12"))
	requireSameFile(t, filepath.Join(dir, "dir07", "f03"), filepath.Join(target, "dir07", "f03"))
	entries, err := os.ReadDir(filepath.Join(target, "dir07"))
	require.NoError(t, err)
	require.Len(t, entries, 1, "only the chosen file of dir07")

	// report: moved, not CSI, not bound.
	report := s.snapmove(t, "report", name)
	require.Regexp(t, ns+`/data\s+Moved\s+snapshot `+vols[0].SnapshotID, report)
	require.Regexp(t, ns+`/local\s+Skipped\s+PV \S+ is not a CSI volume`, report)
	require.Regexp(t, ns+`/pending\s+Skipped\s+PVC is not bound`, report)

	// Without the cluster: the BSL as flags, its credentials and the password as files.
	offline := s.offlineFlags(t)
	env := []string{"KUBECONFIG=/nonexistent"}
	listed, err := runEnv(env, s.bin(), append([]string{"list", name, "-o", "json"}, offline...)...)
	require.NoError(t, err, listed)
	require.Contains(t, listed, vols[0].SnapshotID)
	lsOff, err := runEnv(env, s.bin(), append([]string{"ls", name, ns + "/data", "dir07"}, offline...)...)
	require.NoError(t, err, lsOff)
	require.Equal(t, ls, lsOff)
	target2 := t.TempDir()
	restored, err := runEnv(env, s.bin(), append([]string{"restore-files", name, ns + "/data", "dir07/f0*", "--to", target2}, offline...)...)
	require.NoError(t, err, restored)
	requireSameFile(t, filepath.Join(dir, "dir07", "f03"), filepath.Join(target2, "dir07", "f03"))
	entries, err = os.ReadDir(filepath.Join(target2, "dir07"))
	require.NoError(t, err)
	require.Len(t, entries, 10, "the glob dir07/f0* matches f00 to f09")
	for _, secret := range []string{s.secretKey, s.repoPassword(t)} {
		require.NotContains(t, listed+lsOff+restored+report+out, secret, "a command printed a secret")
	}

	// Into a live PVC of another namespace, in use by its application: only the chosen
	// paths change; the namespace never holds a secret of Velero's (the files are read here
	// and streamed into a receiver job that has none), and the job is gone afterwards.
	ns2 := s.namespace(t, "catalog-live")
	live := s.pvc(t, ns2, "live", "256Mi", corev1.PersistentVolumeFilesystem)
	require.NoError(t, os.WriteFile(filepath.Join(live, "keep.txt"), []byte("the user's own file"), 0o600))
	keepBefore, err := os.Stat(filepath.Join(live, "keep.txt"))
	require.NoError(t, err)
	s.app(t, ns2, "live", false)
	noNewSecrets := s.watchSecrets(t, ns2)
	var intoPVC struct {
		Target, Receiver string
		Matched          []string
		Restored         struct{ Files, Dirs int64 }
	}
	out = s.snapmoveOut(t, "restore-files", name, ns+"/data", "dir12", "dir07/f03", "--to-pvc", ns2+"/live", "-o", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &intoPVC), out)
	require.Equal(t, "PVC "+ns2+"/live", intoPVC.Target)
	require.ElementsMatch(t, []string{"dir07/f03", "dir12"}, intoPVC.Matched)
	require.Equal(t, int64(perDir+1), intoPVC.Restored.Files, out)
	require.NotEmpty(t, intoPVC.Receiver, "the receiver pod's report")
	requireSameSubtree(t, filepath.Join(dir, "dir12"), filepath.Join(live, "dir12"))
	requireSameFile(t, filepath.Join(dir, "dir07", "f03"), filepath.Join(live, "dir07", "f03"))
	keepAfter, err := os.Stat(filepath.Join(live, "keep.txt"))
	require.NoError(t, err)
	require.Equal(t, keepBefore.ModTime(), keepAfter.ModTime(), "a file outside the chosen paths changed")
	var jobs batchv1.JobList
	require.NoError(t, s.c.List(ctxT(t), &jobs, crclient.InNamespace(ns2), crclient.MatchingLabels{"app.kubernetes.io/component": "restore-files-receiver"}))
	require.Empty(t, jobs.Items, "receiver job left behind")

	// The CLI killed mid-stream (the stream slowed to 4 kB/s, dir12 is about 130 kB): the
	// job and its pod are gone within 3 minutes, the files are whole (each the original
	// or the restored one, the same bytes here), nothing is left beside them.
	killed := exec.Command(s.bin(), "restore-files", name, ns+"/data", "dir12", "--to-pvc", ns2+"/live", "--rate", "4096", "--timeout", "60s")
	var killedOut bytes.Buffer
	killed.Stdout, killed.Stderr = &killedOut, &killedOut
	require.NoError(t, killed.Start())
	poll(t, "the receiver pod to run", 2*time.Minute, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		err := s.c.List(ctx, &pods, crclient.InNamespace(ns2), crclient.MatchingLabels{"app.kubernetes.io/component": "restore-files-receiver"})
		return err == nil && len(pods.Items) == 1 && pods.Items[0].Status.Phase == corev1.PodRunning, err
	})
	time.Sleep(5 * time.Second) // streaming
	require.NoError(t, killed.Process.Kill())
	_ = killed.Wait()
	require.NotContains(t, killedOut.String(), "restored", "the copy ended before it was killed: %s", killedOut.String())
	poll(t, "the receiver job and its pod to go", 3*time.Minute, func(ctx context.Context) (bool, error) {
		var jobs batchv1.JobList
		var pods corev1.PodList
		sel := crclient.MatchingLabels{"app.kubernetes.io/component": "restore-files-receiver"}
		if err := s.c.List(ctx, &jobs, crclient.InNamespace(ns2), sel); err != nil {
			return false, err
		}
		err := s.c.List(ctx, &pods, crclient.InNamespace(ns2), sel)
		return err == nil && len(jobs.Items) == 0 && len(pods.Items) == 0, err
	})
	noNewSecrets()
	s.requireNoLeftovers(t)
	// Every file whole; a directory's times are set once the whole stream is written, so
	// the cut one keeps the time of its last rename.
	w, err := treecheck.Manifest(filepath.Join(dir, "dir12"))
	require.NoError(t, err)
	g, err := treecheck.Manifest(filepath.Join(live, "dir12"))
	require.NoError(t, err)
	require.Empty(t, treecheck.Compare(w, g, treecheck.Options{IgnoreDirMtime: true}))
	leftBeside, err := filepath.Glob(filepath.Join(live, "dir12", ".snapmove-receive-*"))
	require.NoError(t, err)
	require.Empty(t, leftBeside, "a file written beside its place was left")

	// verify: good, then a data pack of the repository corrupted.
	s.snapmove(t, "verify", name, "--level", "full")
	var inPod []struct {
		Volume  struct{ PVC string }
		OK      bool
		Summary string
	}
	out = s.snapmoveOut(t, "verify", name, "--level", "full", "--in-cluster", "-o", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &inPod), out)
	require.Len(t, inPod, 1, out)
	require.Equal(t, "data", inPod[0].Volume.PVC, out)
	require.True(t, inPod[0].OK, out)
	require.Contains(t, inPod[0].Summary, "verified (full)")
	s.corruptOnePack(t, s.bslPrefix+"/kopia/"+ns+"/p")
	failed, err := runErr(s.bin(), "verify", name, "--level", "full")
	require.Error(t, err, failed)
	require.Regexp(t, ns+`/data\s+\S+\s+FAILED\s+.*dir\d\d/f\d\d`, failed)
	require.Contains(t, failed, "1 of 1 volumes failed verification")
	failed, err = runErr(s.bin(), "verify", name, "--level", "full", "--in-cluster")
	require.Error(t, err, failed)
	require.Regexp(t, ns+`/data\s+\S+\s+FAILED\s+.*dir\d\d/f\d\d`, failed)
	var pods corev1.PodList
	require.NoError(t, s.c.List(ctxT(t), &pods, crclient.InNamespace(s.veleroNS), crclient.MatchingLabels{"app.kubernetes.io/component": "repository-command"}))
	require.Empty(t, pods.Items, "verify pod left behind")
}

// bin is the snapmove binary the suite tests.
func (s *stack) bin() string { return filepath.Join(repoRoot(), "bin", "snapmove") }

// offlineFlags describe the stack's BackupStorageLocation as a user without the cluster
// would: the BSL's spec, the credentials file and the repository password file.
func (s *stack) offlineFlags(t *testing.T) []string {
	t.Helper()
	var bsl velerov1.BackupStorageLocation
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: "default"}, &bsl))
	return s.locationFlags(t, &bsl, "aws", fmt.Sprintf("[default]\naws_access_key_id=%s\naws_secret_access_key=%s\n", s.accessKey, s.secretKey))
}

// locationFlags describe BackupStorageLocation bsl to snapmove's commands without the
// cluster: --provider (aws, gcp, azure), the BSL's spec, a file holding credentials (what
// its secret holds) and the repository password file.
func (s *stack) locationFlags(t *testing.T, bsl *velerov1.BackupStorageLocation, provider, credentials string) []string {
	t.Helper()
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials-velero")
	require.NoError(t, os.WriteFile(creds, []byte(credentials), 0o600))
	pw := filepath.Join(dir, "password")
	require.NoError(t, os.WriteFile(pw, []byte(s.repoPassword(t)+"\n"), 0o600))
	args := []string{"--provider", provider, "--bucket", bsl.Spec.ObjectStorage.Bucket, "--prefix", bsl.Spec.ObjectStorage.Prefix + "/",
		"--credentials-file", creds, "--password-file", pw}
	for k, v := range bsl.Spec.Config {
		args = append(args, "--config", k+"="+v)
	}
	return args
}

// nonCSIClaim makes PVC name in ns bound to a hostPath PV (not CSI), removed at the end.
func (s *stack) nonCSIClaim(t *testing.T, ns, name string) {
	t.Helper()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              "",
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: t.TempDir()}},
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: name},
		},
	}
	require.NoError(t, s.c.Create(ctxT(t), pv))
	t.Cleanup(func() { _ = s.c.Delete(context.Background(), pv) })
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(""),
			VolumeName:       pv.Name,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}},
		},
	}
	require.NoError(t, s.c.Create(ctxT(t), pvc))
	poll(t, "PVC "+ns+"/"+name+" to be bound", 2*time.Minute, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKeyFromObject(pvc), pvc)
		return err == nil && pvc.Status.Phase == corev1.ClaimBound, err
	})
}

// corruptOnePack flips bytes in the middle of the largest object whose key starts with
// prefix (a kopia data pack), as a bad disk or a hostile store would.
func (s *stack) corruptOnePack(t *testing.T, prefix string) {
	t.Helper()
	ctx := ctxT(t)
	mc := s.s3Client(t)
	var key string
	var size int64
	for obj := range mc.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		require.NoError(t, obj.Err)
		if obj.Size > size {
			key, size = obj.Key, obj.Size
		}
	}
	require.NotEmpty(t, key, "no pack under %s", prefix)
	o, err := mc.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	require.NoError(t, err)
	data, err := io.ReadAll(o)
	require.NoError(t, err)
	for i := len(data) / 2; i < len(data)/2+64 && i < len(data); i++ {
		data[i] ^= 0xff
	}
	_, err = mc.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
	require.NoError(t, err)
}

func requireSameSubtree(t *testing.T, want, got string) {
	t.Helper()
	w, err := treecheck.Manifest(want)
	require.NoError(t, err)
	g, err := treecheck.Manifest(got)
	require.NoError(t, err)
	require.Empty(t, treecheck.Compare(w, g, treecheck.Options{}))
}

func requireSameFile(t *testing.T, want, got string) {
	t.Helper()
	require.Equal(t, sha256File(t, want), sha256File(t, got))
	ws, err := os.Stat(want)
	require.NoError(t, err)
	gs, err := os.Stat(got)
	require.NoError(t, err)
	require.Equal(t, ws.Mode(), gs.Mode())
	require.True(t, ws.ModTime().Equal(gs.ModTime()), "mtime %v, want %v", gs.ModTime(), ws.ModTime())
}

// requireVeleroMaintains makes Velero's maintenance of repository repoName due now (a
// maintenance frequency of one second, which Velero acts on at once as a spec change) and
// waits until Velero's maintenance Job, a pod of Velero's Deployment's image, env and
// volumes that runs `velero repo-maintenance`, has succeeded on the repository snapmove
// wrote. The frequency is set back afterwards.
func (s *stack) requireVeleroMaintains(t *testing.T, repoName string) {
	t.Helper()
	key := crclient.ObjectKey{Namespace: s.veleroNS, Name: repoName}
	setFrequency := func(d time.Duration) error {
		var br velerov1.BackupRepository
		if err := s.c.Get(context.Background(), key, &br); err != nil {
			return err
		}
		patch := crclient.MergeFrom(br.DeepCopy())
		br.Spec.MaintenanceFrequency = metav1.Duration{Duration: d}
		return s.c.Patch(context.Background(), &br, patch)
	}
	var before velerov1.BackupRepository
	require.NoError(t, s.c.Get(ctxT(t), key, &before))
	require.NoError(t, setFrequency(time.Second))
	t.Cleanup(func() { _ = setFrequency(before.Spec.MaintenanceFrequency.Duration) })
	start := time.Now()
	poll(t, "Velero's maintenance of "+repoName, 3*time.Minute, func(ctx context.Context) (bool, error) {
		var br velerov1.BackupRepository
		if err := s.c.Get(ctx, key, &br); err != nil {
			return false, err
		}
		for _, m := range br.Status.RecentMaintenance {
			require.NotEqual(t, velerov1.BackupRepositoryMaintenanceFailed, m.Result, m.Message)
			if m.Result == velerov1.BackupRepositoryMaintenanceSucceeded {
				t.Logf("Velero's maintenance Job succeeded after %s", time.Since(start).Round(time.Second))
				return true, nil
			}
		}
		return false, nil
	})
}

// watchSecrets records the secrets of namespace, then polls them (every 200 ms) until the
// returned function is called, which fails the test if any other secret appeared meanwhile.
func (s *stack) watchSecrets(t *testing.T, namespace string) func() {
	t.Helper()
	list := func(ctx context.Context) (map[string]bool, error) {
		var secrets corev1.SecretList
		if err := s.c.List(ctx, &secrets, crclient.InNamespace(namespace)); err != nil {
			return nil, err
		}
		names := map[string]bool{}
		for _, sec := range secrets.Items {
			names[sec.Name] = true
		}
		return names, nil
	}
	before, err := list(ctxT(t))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(ctxT(t))
	seen := make(chan []string, 1)
	go func() {
		var appeared []string
		defer func() { seen <- appeared }()
		for ctx.Err() == nil {
			now, err := list(ctx)
			if err == nil {
				for n := range now {
					if !before[n] {
						appeared = append(appeared, n)
						before[n] = true
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	stopped := false
	stop := func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		require.Empty(t, <-seen, "secrets appeared in namespace %s", namespace)
	}
	t.Cleanup(func() {
		if !stopped {
			cancel()
			<-seen
		}
	})
	return stop
}
