//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/test/treecheck"
)

// TestStoreRoundTrip (issue #22, items 1, 2 and 5) is the core round trip on every object
// store of the stack, one parallel subtest each, so that a store adds one small volume's
// round trip to the suite, not the whole suite: a small volume backed up with its data
// moved to the store, restored byte-identical, the snapshot listed by the kopia CLI as a
// user connects it to the store, and snapmove's list (when a backup names the snapshot),
// ls, restore-files and verify --level full reading it. What tells the stores apart is in
// the table (stores); a store the stack was started without is a skipped subtest.
func TestStoreRoundTrip(t *testing.T) {
	parallel(t)
	s := env
	for _, st := range s.stores() {
		t.Run(st.name, func(t *testing.T) {
			if st.skip != "" {
				skipWithoutStore(t, st.name, st.skip)
			}
			parallel(t)
			bsl := s.location(t, st)
			ns, dir := s.smallVolume(t, st.name)
			want, err := treecheck.Manifest(dir)
			require.NoError(t, err)

			m := s.storeBackup(t, st, ns)
			m.restored = s.storeRestore(t, st, m)
			got, err := treecheck.Manifest(m.restored)
			require.NoError(t, err)
			require.Empty(t, treecheck.Compare(want, got, treecheck.Options{}))
			s.requireNoLeftovers(t)

			s.kopiaLists(t, st, bsl, m)
			s.snapmoveReads(t, st, bsl, m)
		})
	}
}

// skipWithoutStore skips a test of an optional part of the stack (SNAPMOVE_STACK_STORES) that
// the running stack lacks, saying why: `make e2e` on `make demo`'s stack, which has only
// MinIO. `make test` starts them all and names them in SNAPMOVE_E2E_REQUIRE_STORES, so there
// the test fails instead.
func skipWithoutStore(t *testing.T, store, why string) {
	t.Helper()
	if slices.Contains(strings.Fields(strings.ReplaceAll(os.Getenv("SNAPMOVE_E2E_REQUIRE_STORES"), ",", " ")), store) {
		t.Fatalf("%s; make test asks for it (SNAPMOVE_E2E_REQUIRE_STORES)", why)
	}
	t.Skip(why)
}

// objectStore is one object store of the stack and what its round trip does differently.
type objectStore struct {
	name     string
	bsl      string // its BackupStorageLocation
	provider string // the BSL's provider, as users write it
	// env is what the CLIs (kopia, snapmove) need besides the user's environment.
	env []string
	// viaVelero: Velero backs up to the store and restores from it. Otherwise the
	// movements are written by hand as Velero would write them, and snapmove's commands
	// run without the cluster (no backup names the snapshot) with offline's flags.
	viaVelero bool
	// kopiaConnect connects the kopia CLI, read-only and as a user would, to the
	// repository of source namespace ns in the store, and returns the args (a config file
	// of its own) the later kopia commands take.
	kopiaConnect func(t *testing.T, bsl *velerov1.BackupStorageLocation, ns string) []string
	// offline describes the location to snapmove's commands without the cluster: the
	// BSL's spec, the credentials file of its secret, the repository password file.
	offline func(t *testing.T, bsl *velerov1.BackupStorageLocation) []string
	skip    string // why the stack has no such store, if it has none
}

// stores is the table of TestStoreRoundTrip, read from the stack's environment.
//
//   - s3: MinIO, BSL default, always on the stack: the seed's flow.
//   - gcs (hack/stack/up.sh with SNAPMOVE_STACK_STORES=gcs): provider velero.io/gcp, bucket
//     velero-gcs on fake-gcs-server, which Velero's GCP plugin serves. Every client reaches
//     it through STORAGE_EMULATOR_HOST, the one endpoint setting Google's Go storage client
//     and kopia's GCS storage share (the BSL is as users write it); the kopia CLI connects
//     as the seed does, `kopia repository connect gcs ... --prefix <prefix>/kopia/<ns>/`.
//     Never `velero backup logs` or `velero backup describe` for a backup in it (see
//     veleroBackup).
//   - azure (SNAPMOVE_STACK_STORES=azure): provider velero.io/azure, container velero-azure
//     on Azurite, the account key in secret azure-credentials in Velero's Azure plugin's key
//     file format. Velero's Azure plugin is not on the module proxy, so Velero marks the
//     location Unavailable and takes no backup to it (docs/stores-on-the-stack.md sec. 4):
//     the movements are written by hand as Velero would write them (handWrittenBackup,
//     handWrittenRestore). What runs is snapmove's Azure path end to end: the BSL's
//     storageAccount, storageAccountKeyEnvVar and storageAccountURI and the dotenv
//     credentials file (internal/mover/repository location.go resolveAzure) become kopia's
//     azure storage, which reaches Azurite by the production-style name
//     devstoreaccount1.blob.localhost (an /etc/hosts line of the stack). The kopia CLI's
//     azure flags have no way to plain http (cli/storage_azure.go), so it connects from a
//     token of the storage config (from-config); snapmove's commands run without the
//     cluster (--provider azure --bucket ... --snapshot-id: there is no backup).
func (s *stack) stores() []objectStore {
	gcsEmulator, gcsCreds := os.Getenv("SNAPMOVE_GCS_EMULATOR"), os.Getenv("SNAPMOVE_GCS_CREDENTIALS")
	var gcsSkip string
	if gcsEmulator == "" || gcsCreds == "" {
		gcsSkip = "the stack runs without GCS (SNAPMOVE_GCS_EMULATOR is not set): start it with SNAPMOVE_STACK_STORES=gcs (make test does)"
	}
	gcsEnv := []string{"STORAGE_EMULATOR_HOST=" + gcsEmulator}
	account, key, domain := os.Getenv("SNAPMOVE_AZURE_ACCOUNT"), os.Getenv("SNAPMOVE_AZURE_KEY"), os.Getenv("SNAPMOVE_AZURE_DOMAIN")
	var azureSkip string
	if account == "" || key == "" || domain == "" {
		azureSkip = "the stack runs without Azure (SNAPMOVE_AZURE_ACCOUNT is not set): start it with SNAPMOVE_STACK_STORES=azure (make test does)"
	}
	return []objectStore{{
		name: "s3", bsl: "default", provider: "aws", viaVelero: true,
		kopiaConnect: func(t *testing.T, bsl *velerov1.BackupStorageLocation, ns string) []string {
			return s.kopiaConnect(t, ns, repositoryPrefix(bsl, ns))
		},
	}, {
		name: "gcs", bsl: "gcs", provider: "velero.io/gcp", env: gcsEnv, viaVelero: true, skip: gcsSkip,
		kopiaConnect: func(t *testing.T, bsl *velerov1.BackupStorageLocation, ns string) []string {
			return s.kopiaConnectTo(t, gcsEnv, "gcs", "--bucket", bsl.Spec.ObjectStorage.Bucket,
				"--credentials-file", gcsCreds, "--prefix", repositoryPrefix(bsl, ns))
		},
	}, {
		name: "azure", bsl: "azure", provider: "velero.io/azure", skip: azureSkip,
		kopiaConnect: func(t *testing.T, bsl *velerov1.BackupStorageLocation, ns string) []string {
			return s.kopiaConnectTo(t, nil, "from-config", "--token",
				azureKopiaToken(t, bsl.Spec.ObjectStorage.Bucket, repositoryPrefix(bsl, ns), account, key, domain))
		},
		offline: func(t *testing.T, bsl *velerov1.BackupStorageLocation) []string {
			return s.locationFlags(t, bsl, "azure", "AZURE_STORAGE_ACCOUNT_ACCESS_KEY="+key+"\nAZURE_CLOUD_NAME=AzurePublicCloud\n")
		},
	}}
}

// repositoryPrefix is where in the location's bucket the repository of source namespace
// ns lies, as the kopia CLI takes it (with the trailing slash, see TestKopiaPrefixSlash).
func repositoryPrefix(bsl *velerov1.BackupStorageLocation, ns string) string {
	return bsl.Spec.ObjectStorage.Prefix + "/kopia/" + ns + "/"
}

// location reads the store's BackupStorageLocation: the provider users write for it, and
// Available when Velero backs up to it (Velero, without a plugin for azure, marks that one
// Unavailable; nothing in snapmove reads a BSL's phase).
func (s *stack) location(t *testing.T, st objectStore) *velerov1.BackupStorageLocation {
	t.Helper()
	var bsl velerov1.BackupStorageLocation
	require.NoError(t, s.c.Get(ctxT(t), crclient.ObjectKey{Namespace: s.veleroNS, Name: st.bsl}, &bsl))
	require.Equal(t, st.provider, bsl.Spec.Provider)
	if st.viaVelero {
		require.Equal(t, velerov1.BackupStorageLocationPhaseAvailable, bsl.Status.Phase, "BSL %s: %s", st.bsl, bsl.Status.Message)
	} else {
		t.Logf("BSL %s as Velero sees it (no plugin for it): %q %s", st.bsl, bsl.Status.Phase, bsl.Status.Message)
	}
	return &bsl
}

// movement is what a store's round trip moved: the source namespace, the backup that
// names the snapshot (none for hand-written movements), its DataUpload and the restored
// volume's directory.
type movement struct {
	ns, backup string
	du         velerov2alpha1.DataUpload
	restored   string
}

// storeBackup moves the volume "data" of namespace ns to the store, through Velero or by
// hand, and checks that the mover read the backup back before it said Completed.
func (s *stack) storeBackup(t *testing.T, st objectStore, ns string) movement {
	t.Helper()
	m := movement{ns: ns}
	if st.viaVelero {
		m.backup, m.du = s.veleroBackup(t, st, ns)
	} else {
		m.du = s.handWrittenBackup(t, st, ns)
	}
	require.NotEmpty(t, m.du.Status.SnapshotID)
	require.Contains(t, m.du.Status.Message, "verified (metadata): ", "every backup is read back before it is Completed")
	s.requireNoLeftovers(t)
	return m
}

// veleroBackup runs `velero backup create --snapshot-move-data --storage-location` for ns
// and returns the backup and its one DataUpload.
//
// Never `velero backup logs` or `velero backup describe` here, on failure either (s.backupLogs):
// for a backup in gcs, Velero's CLI downloads those through signed URLs, which Google's Go
// client makes https only (storage.SignedURL), and the stack's fake-gcs-server serves http:
// the download would fail for a reason that is the stack's, not snapmove's
// (docs/stores-on-the-stack.md sec. 1). The status and the DataUpload say enough, and
// Velero's own log is in /var/log/pods/velero_velero-*/.
func (s *stack) veleroBackup(t *testing.T, st objectStore, ns string) (string, velerov2alpha1.DataUpload) {
	t.Helper()
	name := ns + "-b"
	b := s.backup(t, name, "--include-namespaces", ns, "--snapshot-move-data", "--storage-location", st.bsl)
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase, "backup %s: %s, %d errors (Velero's log: /var/log/pods/velero_velero-*/)",
		name, b.Status.FailureReason, b.Status.Errors)
	require.Equal(t, st.bsl, b.Spec.StorageLocation)
	dus := s.dataUploads(t, name)
	require.Len(t, dus, 1, "DataUploads of the backup")
	du := dus[0]
	require.Equal(t, naming.DataMover, du.Spec.DataMover)
	require.Equal(t, st.bsl, du.Spec.BackupStorageLocation)
	require.Equal(t, velerov2alpha1.DataUploadPhaseCompleted, du.Status.Phase, du.Status.Message)
	return name, du
}

// handWrittenBackup creates the DataUpload Velero's CSI action would create for ns/data,
// to the store's location, and waits for it to complete.
func (s *stack) handWrittenBackup(t *testing.T, st objectStore, ns string) velerov2alpha1.DataUpload {
	t.Helper()
	du := s.dataUploadLikeVelero(t, ns, "data", st.bsl)
	s.waitDataUploadPhase(t, du, velerov2alpha1.DataUploadPhaseCompleted)
	return *du
}

// storeRestore restores the movement's volume and returns its directory: through Velero,
// the namespace deleted first and restored from the backup; by hand, into a new namespace.
func (s *stack) storeRestore(t *testing.T, st objectStore, m movement) string {
	t.Helper()
	if st.viaVelero {
		return s.veleroRestore(t, m)
	}
	return s.handWrittenRestore(t, st, m)
}

// veleroRestore deletes the backup's namespace, restores it with `velero restore create
// --from-backup` and returns the restored volume's directory.
func (s *stack) veleroRestore(t *testing.T, m movement) string {
	t.Helper()
	s.deleteNamespace(t, m.ns)
	rname := m.ns + "-r"
	r := s.restore(t, rname, "--from-backup", m.backup)
	require.Equal(t, velerov1.RestorePhaseCompleted, r.Status.Phase, "restore %s: %s, %d errors", rname, r.Status.FailureReason, r.Status.Errors)
	dds := s.dataDownloads(t, rname)
	require.Len(t, dds, 1, "DataDownloads of the restore")
	require.Equal(t, velerov2alpha1.DataDownloadPhaseCompleted, dds[0].Status.Phase, dds[0].Status.Message)
	return s.volumePath(t, m.ns, "data")
}

// handWrittenRestore makes a target PVC and a DataDownload as Velero's restore makes them,
// in a new namespace, waits for the DataDownload to complete and returns the volume's
// directory.
func (s *stack) handWrittenRestore(t *testing.T, st objectStore, m movement) string {
	t.Helper()
	rns := s.namespace(t, st.name+"-r")
	target := s.dataMoverTarget(t, rns, "data")
	dd := s.dataDownloadLikeVelero(t, target, st.bsl, m.ns, m.du.Status.SnapshotID)
	poll(t, "DataDownload "+dd.Name+" to be Completed", 5*time.Minute, func(ctx context.Context) (bool, error) {
		err := s.c.Get(ctx, crclient.ObjectKeyFromObject(dd), dd)
		if dd.Status.Phase == velerov2alpha1.DataDownloadPhaseFailed || dd.Status.Phase == velerov2alpha1.DataDownloadPhaseCanceled {
			require.FailNow(t, "DataDownload ended", "%s: %s", dd.Status.Phase, dd.Status.Message)
		}
		return dd.Status.Phase == velerov2alpha1.DataDownloadPhaseCompleted, err
	})
	return s.volumePath(t, rns, "data")
}

// kopiaLists checks that the kopia CLI, connected to the store as a user would, lists the
// snapshot under Velero's source name.
func (s *stack) kopiaLists(t *testing.T, st objectStore, bsl *velerov1.BackupStorageLocation, m movement) {
	t.Helper()
	kcfg := st.kopiaConnect(t, bsl, m.ns)
	args := append([]string{"snapshot", "list", "--all", "--manifest-id"}, kcfg...)
	ls, err := runEnv(st.env, s.kopia, args...)
	require.NoError(t, err, "kopia %v:\n%s", args, ls)
	require.Contains(t, ls, "default@default:snapshot-data-upload-download/kopia/"+m.ns+"/data", ls)
	require.Contains(t, ls, m.du.Status.SnapshotID, ls)
}

// snapmoveReads runs snapmove's commands from the user's machine on the moved volume: list,
// ls, restore-files and verify --level full by the backup's name, through the cluster; for
// a hand-written movement, which no backup names, without the cluster: the location as
// flags (objectStore.offline), the snapshot by ID, list left out (it lists backups).
func (s *stack) snapmoveReads(t *testing.T, st objectStore, bsl *velerov1.BackupStorageLocation, m movement) {
	t.Helper()
	var flags []string
	snapmove := func(args ...string) string {
		t.Helper()
		out, err := runEnv(st.env, s.bin(), append(args, flags...)...)
		require.NoError(t, err, "snapmove %v:\n%s", args, out)
		return out
	}
	backup, vol := m.backup, m.ns+"/data"
	var bySnapshotID, bySnapshot []string // ls and restore-files, verify: the snapshot without a backup
	if backup != "" {
		list := snapmove("list", backup)
		require.Contains(t, list, vol, list)
		require.Contains(t, list, m.du.Status.SnapshotID, list)
	} else {
		backup = "no-backup" // a label only: --snapshot-id names the snapshot
		flags = st.offline(t, bsl)
		bySnapshotID = []string{"--snapshot-id", m.du.Status.SnapshotID}
		bySnapshot = []string{"--snapshot", vol + "=" + m.du.Status.SnapshotID}
	}
	lsOut := snapmove(append([]string{"ls", backup, vol, "a/b"}, bySnapshotID...)...)
	require.Regexp(t, ` file\n`, lsOut)
	target := t.TempDir()
	out := snapmove(append([]string{"restore-files", backup, vol, "a/b/file", "--to", target}, bySnapshotID...)...)
	require.Contains(t, out, "restored a/b/file", out)
	requireSameFile(t, filepath.Join(m.restored, "a", "b", "file"), filepath.Join(target, "a", "b", "file"))
	verified := snapmove(append([]string{"verify", backup, "--level", "full"}, bySnapshot...)...)
	require.Regexp(t, vol+`\s+\S+\s+OK\s+verified \(full\)`, verified)
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
