//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/test/treecheck"
)

// azureBSL is the stack's Azure BackupStorageLocation (hack/stack/up.sh with
// SNAPMOVE_STACK_STORES=azure): provider velero.io/azure, container velero-azure on Azurite,
// the account key in secret azure-credentials in Velero's Azure plugin's key file format.
const azureBSL = "azure"

// TestAzureRoundTrip (issue #22, item 2) moves a volume through Azure Blob storage on
// snapmove's own path: Velero's Azure plugin is not on the module proxy, so Velero marks the
// location Unavailable and takes no backup to it (docs/stores-on-the-stack.md sec. 4), and the
// movements are written by hand as Velero would write them: a DataUpload like its CSI backup
// action's, then a DataDownload like its restore's, into a PVC of a new namespace, restored
// byte-identical. What runs is snapmove's Azure path end to end: the BSL's storageAccount,
// storageAccountKeyEnvVar and storageAccountURI and the dotenv credentials file
// (internal/mover/repository location.go resolveAzure) become kopia's azure storage, which
// reaches Azurite by the production-style name devstoreaccount1.blob.localhost (an /etc/hosts
// line of the stack). Then the kopia CLI (from-config: its flags cannot turn TLS off) lists the
// snapshot under <prefix>/kopia/<ns>/, and snapmove's ls, restore-files and verify read it
// without the cluster (--provider azure --bucket ... --snapshot-id: there is no backup).
func TestAzureRoundTrip(t *testing.T) {
	account, key, domain := os.Getenv("SNAPMOVE_AZURE_ACCOUNT"), os.Getenv("SNAPMOVE_AZURE_KEY"), os.Getenv("SNAPMOVE_AZURE_DOMAIN")
	if account == "" || key == "" || domain == "" {
		t.Skip("the stack runs without Azure (SNAPMOVE_AZURE_ACCOUNT is not set): start it with SNAPMOVE_STACK_STORES=azure (make test does)")
	}
	parallel(t)
	s := env

	var bsl velerov1.BackupStorageLocation
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: azureBSL}, &bsl))
	require.Equal(t, "velero.io/azure", bsl.Spec.Provider)
	t.Logf("BSL %s as Velero sees it (no Azure plugin): %q %s", azureBSL, bsl.Status.Phase, bsl.Status.Message)
	container, prefix := bsl.Spec.ObjectStorage.Bucket, bsl.Spec.ObjectStorage.Prefix

	ns, dir := s.smallVolume(t, "azure")
	want, err := treecheck.Manifest(dir)
	require.NoError(t, err)

	// Backup: the DataUpload Velero's CSI action would create, to the Azure location.
	du := s.dataUploadLikeVelero(t, ns, "data", azureBSL)
	s.waitDataUploadPhase(t, du, velerov2alpha1.DataUploadPhaseCompleted)
	require.NotEmpty(t, du.Status.SnapshotID)
	require.Contains(t, du.Status.Message, "verified (metadata): ", "every backup is read back before it is Completed")
	s.requireNoLeftovers(t)

	// Restore: a target PVC and a DataDownload as Velero's restore makes them, in a new namespace.
	rns := s.namespace(t, "azure-r")
	target := s.dataMoverTarget(t, rns, "data")
	dd := s.dataDownloadLikeVelero(t, target, azureBSL, ns, du.Status.SnapshotID)
	poll(t, "DataDownload "+dd.Name+" to be Completed", 5*time.Minute, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKeyFromObject(dd), dd)
		if dd.Status.Phase == velerov2alpha1.DataDownloadPhaseFailed || dd.Status.Phase == velerov2alpha1.DataDownloadPhaseCanceled {
			require.FailNow(t, "DataDownload ended", "%s: %s", dd.Status.Phase, dd.Status.Message)
		}
		return dd.Status.Phase == velerov2alpha1.DataDownloadPhaseCompleted, err
	})
	restored := s.volumePath(t, rns, "data")
	got, err := treecheck.Manifest(restored)
	require.NoError(t, err)
	require.Empty(t, treecheck.Compare(want, got, treecheck.Options{}))
	s.requireNoLeftovers(t)

	// The kopia CLI on the same repository, read-only. Its azure flags have no way to plain
	// http (cli/storage_azure.go), so it connects from a token of the storage config.
	kdir := t.TempDir()
	kcfg := []string{"--config-file", filepath.Join(kdir, "repo.config")}
	kopia := func(args ...string) string {
		t.Helper()
		return run(t, s.kopia, append(args, kcfg...)...)
	}
	kopia("repository", "connect", "from-config", "--token", azureKopiaToken(t, container, prefix+"/kopia/"+ns+"/", account, key, domain),
		"--password", s.repoPassword(t), "--cache-directory", filepath.Join(kdir, "cache"), "--readonly")
	ls := kopia("snapshot", "list", "--all", "--manifest-id")
	require.Contains(t, ls, "default@default:snapshot-data-upload-download/kopia/"+ns+"/data", ls)
	require.Contains(t, ls, du.Status.SnapshotID, ls)

	// snapmove's commands from the user's machine, without the cluster: the BSL as flags, the
	// secret's credentials file, the snapshot by ID (no backup names it).
	fdir := t.TempDir()
	creds := filepath.Join(fdir, "credentials-velero")
	require.NoError(t, os.WriteFile(creds, []byte("AZURE_STORAGE_ACCOUNT_ACCESS_KEY="+key+"\nAZURE_CLOUD_NAME=AzurePublicCloud\n"), 0o600))
	pw := filepath.Join(fdir, "password")
	require.NoError(t, os.WriteFile(pw, []byte(s.repoPassword(t)+"\n"), 0o600))
	offline := []string{"--provider", "azure", "--bucket", container, "--prefix", prefix + "/",
		"--credentials-file", creds, "--password-file", pw}
	for k, v := range bsl.Spec.Config {
		offline = append(offline, "--config", k+"="+v)
	}
	snapmove := func(args ...string) string {
		t.Helper()
		return s.snapmove(t, append(args, offline...)...)
	}
	const backup = "no-backup" // a label only: --snapshot-id names the snapshot
	lsOut := snapmove("ls", backup, ns+"/data", "a/b", "--snapshot-id", du.Status.SnapshotID)
	require.Regexp(t, ` file\n`, lsOut)
	files := t.TempDir()
	out := snapmove("restore-files", backup, ns+"/data", "a/b/file", "--to", files, "--snapshot-id", du.Status.SnapshotID)
	require.Contains(t, out, "restored a/b/file", out)
	requireSameFile(t, filepath.Join(dir, "a", "b", "file"), filepath.Join(files, "a", "b", "file"))
	verified := snapmove("verify", backup, "--snapshot", ns+"/data="+du.Status.SnapshotID, "--level", "full")
	require.Regexp(t, ns+`/data\s+\S+\s+OK\s+verified \(full\)`, verified)
}

// azureKopiaToken is a `kopia repository connect from-config --token` for kopia's azure
// storage (repo.DecodeToken: version 1, the storage's connection info, base64url) over plain
// http, which the CLI's azure flags cannot ask for.
func azureKopiaToken(t *testing.T, container, prefix, account, key, domain string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"version": "1", "storage": map[string]any{
		"type": "azureBlob",
		"config": map[string]any{
			"container": container, "prefix": prefix, "storageAccount": account, "storageKey": key,
			"storageDomain": domain, "doNotUseTLS": true,
		},
	}})
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(b)
}
