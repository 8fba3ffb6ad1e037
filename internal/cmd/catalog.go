package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pkg/errors"
	"github.com/spf13/cobra"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"github.com/vmware-tanzu/velero/pkg/cmd/util/downloadrequest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/catalog"
	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/connect"
	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/velerosrv"
)

// The repository commands: list, ls, restore-files, verify, report. Each finds volumes
// from the cluster, or with --bucket from a BackupStorageLocation described by flags
// (the day the cluster is gone).

// catalogFlags are the flags every repository command takes.
type catalogFlags struct {
	cluster   clusterFlags
	namespace *string
	output    *string
	verbose   *bool
	// Without a cluster: the BackupStorageLocation, as `velero backup-location create`
	// takes it, and the files that hold its credentials and the repository password.
	provider, bucket, prefix, credentialsFile, passwordFile *string
	config                                                  *[]string
	// defaultCredentials is --default-credentials-secret (with the cluster).
	defaultCredentials *string
	// server is Velero's server, read once asked (open).
	server *velerosrv.Cache
	// args are the command's arguments (validated by args).
	args []string
}

// newCatalogFlags adds the repository commands' flags to c.
func newCatalogFlags(c *cobra.Command) *catalogFlags {
	fs := c.Flags()
	f := &catalogFlags{
		output:             new(string),
		verbose:            fs.BoolP("verbose", "v", false, "log what is read (to stderr)"),
		provider:           fs.String("provider", "aws", "without a cluster: the BackupStorageLocation's provider (aws, gcp, azure)"),
		bucket:             fs.String("bucket", "", "without a cluster: the BackupStorageLocation's bucket; setting it reads no cluster object"),
		prefix:             fs.String("prefix", "", "without a cluster: the BackupStorageLocation's prefix (with or without a trailing slash)"),
		config:             fs.StringSlice("config", nil, "without a cluster: the BackupStorageLocation's config, key=value[,key=value] (e.g. region=minio,s3Url=http://minio:9000)"),
		credentialsFile:    fs.String("credentials-file", "", "without a cluster: the BackupStorageLocation's credentials file (as in Velero's cloud-credentials secret)"),
		defaultCredentials: fs.String("default-credentials-secret", DefaultCredentialsSecret, credentialsFlagHelp),
		passwordFile:       fs.String("password-file", "", "without a cluster: a file holding the repository password (secret velero-repo-credentials, key repository-password)"),
	}
	f.cluster.bind(fs)
	f.namespace = &f.cluster.namespace
	outputFlag(fs, f.output)
	return f
}

// argsBetween is c's Args: between minArgs and maxArgs arguments (maxArgs < 0: no limit),
// else usage as the error; and an -o the commands know.
func (f *catalogFlags) argsBetween(usage string, minArgs, maxArgs int) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) < minArgs || (maxArgs >= 0 && len(args) > maxArgs) {
			return errors.New(usage)
		}
		f.args = args
		return catalog.CheckFormat(*f.output)
	}
}

// arg is the command's argument i, or "".
func (f *catalogFlags) arg(i int) string {
	if i < len(f.args) {
		return f.args[i]
	}
	return ""
}

// open builds the catalog: from the cluster, or from the bucket flags.
func (f *catalogFlags) open() (*catalog.Catalog, client.Client, error) {
	log, err := newLogger("warning", "text")
	if err != nil {
		return nil, nil, err
	}
	if *f.verbose {
		log.SetLevel(4) // info
	}
	if *f.bucket == "" {
		c, err := f.cluster.apiClient()
		if err != nil {
			return nil, nil, err
		}
		creds, server, err := defaultCredentials(*f.defaultCredentials, c, *f.namespace)
		if err != nil {
			return nil, nil, err
		}
		f.server = server
		repos := catalog.ReadOnly(&connect.Reader{Secrets: c, Namespace: *f.namespace, DefaultCredentials: announce(creds, noticeLogger()), Log: log})
		return &catalog.Catalog{Source: catalog.Cluster{Client: c, Namespace: *f.namespace}, Repos: repos, Log: log}, c, nil
	}
	bsl, secrets, password, err := f.offlineLocation()
	if err != nil {
		return nil, nil, err
	}
	repos := catalog.ReadOnly(&connect.Reader{Secrets: secrets, Namespace: *f.namespace, Password: password, Log: log})
	return &catalog.Catalog{Source: catalog.Bucket{BSL: bsl, Repos: repos}, Repos: repos, Log: log}, nil, nil
}

const offlineSecretName = "snapmove-offline-credentials"

// offlineLocation is the BackupStorageLocation the flags describe, and a secret reader
// that serves its credentials file.
func (f *catalogFlags) offlineLocation() (*velerov1.BackupStorageLocation, client.Reader, string, error) {
	if *f.passwordFile == "" {
		return nil, nil, "", errors.New("--bucket needs --password-file: the repository password (while the cluster exists: " +
			"kubectl -n velero get secret velero-repo-credentials -o jsonpath='{.data.repository-password}' | base64 -d)")
	}
	pw, err := os.ReadFile(*f.passwordFile)
	if err != nil {
		return nil, nil, "", errors.Wrap(err, "reading --password-file")
	}
	password := strings.TrimSpace(string(pw))
	if password == "" {
		return nil, nil, "", errors.Errorf("--password-file %s is empty", *f.passwordFile)
	}
	cfg := map[string]string{}
	for _, kv := range *f.config {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, nil, "", errors.Errorf("--config %q: want key=value", kv)
		}
		cfg[k] = v
	}
	bsl := &velerov1.BackupStorageLocation{
		ObjectMeta: metav1.ObjectMeta{Namespace: *f.namespace, Name: "offline"},
		Spec: velerov1.BackupStorageLocationSpec{
			Provider: *f.provider, Config: cfg,
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{
				Bucket: *f.bucket, Prefix: strings.Trim(*f.prefix, "/"),
			}},
		},
	}
	secrets := offlineSecrets{}
	if *f.credentialsFile != "" {
		creds, err := os.ReadFile(*f.credentialsFile)
		if err != nil {
			return nil, nil, "", errors.Wrap(err, "reading --credentials-file")
		}
		secrets[offlineSecretName] = &corev1.Secret{Data: map[string][]byte{"cloud": creds}}
		bsl.Spec.Credential = &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: offlineSecretName}, Key: "cloud"}
	}
	return bsl, secrets, password, nil
}

// offlineSecrets serves secrets read from files, by name, to code that reads secrets
// through a client.Reader.
type offlineSecrets map[string]*corev1.Secret

func (s offlineSecrets) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	secret, ok := obj.(*corev1.Secret)
	found, exists := s[key.Name]
	if !ok || !exists {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, key.Name)
	}
	found.DeepCopyInto(secret)
	return nil
}

func (s offlineSecrets) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("listing is not possible without a cluster")
}

// newListCommand is `snapmove list [BACKUP]`.
func newListCommand() *cobra.Command {
	c := &cobra.Command{Use: "list [BACKUP]", Short: "the moved volumes of backups"}
	f := newCatalogFlags(c)
	files := c.Flags().Bool("files", true, "read each repository for the snapshots' file counts")
	watch := c.Flags().BoolP("watch", "w", false, "show the volumes moving now (DataUploads, of BACKUP if given, and DataDownloads) with their bytes, every 2s until interrupted")
	c.Args = f.argsBetween("usage: snapmove list [BACKUP] [-w] [-o text|json|yaml] [--bucket ... --password-file ...]", 0, 1)
	c.RunE = func(cc *cobra.Command, _ []string) error {
		ctx, out := cc.Context(), cc.OutOrStdout()
		if *watch && *f.bucket != "" {
			return errors.New("--watch needs the cluster: it reads the DataUploads and DataDownloads")
		}
		cat, cl, err := f.open()
		if err != nil {
			return err
		}
		if *watch {
			return watchMovements(ctx, cl, *f.namespace, f.arg(0), *f.output, out, watchInterval, time.Now)
		}
		vols, err := cat.List(ctx, f.arg(0), *files)
		if err != nil {
			return err
		}
		if *f.output != catalog.FormatText {
			return catalog.PrintFormat(out, *f.output, vols)
		}
		return catalog.PrintVolumes(out, vols)
	}
	return c
}

// watchInterval is how often `list --watch` reads the movements.
const watchInterval = 2 * time.Second

// watchMovements writes a frame of the movements (catalog.Watch) every interval until ctx
// ends (Ctrl-C), which is no error: text frames are separated by a blank line, JSON and
// YAML frames are one document each (an object with the time and the movements).
func watchMovements(ctx context.Context, c client.Reader, ns, backup, format string, out io.Writer, interval time.Duration, now func() time.Time) error {
	var w catalog.Watch
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for first := true; ; first = false {
		all, err := catalog.Movements(ctx, c, ns, backup)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		frame, at := w.Frame(all), now()
		switch format {
		case catalog.FormatText:
			if !first {
				fmt.Fprintln(out)
			}
			err = catalog.PrintMovements(out, at, frame)
		case catalog.FormatYAML:
			fmt.Fprintln(out, "---")
			err = catalog.PrintYAML(out, watchFrame{Time: at, Movements: frame})
		default:
			err = catalog.PrintJSON(out, watchFrame{Time: at, Movements: frame})
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// watchFrame is one frame of `list --watch -o json|yaml`.
type watchFrame struct {
	Time      time.Time          `json:"time"`
	Movements []catalog.Movement `json:"movements"`
}

// newLsCommand is `snapmove ls BACKUP NAMESPACE/PVC [PATH]`.
func newLsCommand() *cobra.Command {
	c := &cobra.Command{Use: "ls BACKUP NAMESPACE/PVC [PATH]", Short: "a directory of a volume in a backup"}
	f := newCatalogFlags(c)
	snapshotID := c.Flags().String("snapshot-id", "", "the snapshot to read, instead of finding the backup's (for snapshots without a backup tag)")
	c.Args = f.argsBetween("usage: snapmove ls BACKUP NAMESPACE/PVC [PATH] [-o text|json|yaml]", 2, 3)
	c.RunE = func(cc *cobra.Command, _ []string) error {
		ctx, out := cc.Context(), cc.OutOrStdout()
		cat, _, err := f.open()
		if err != nil {
			return err
		}
		if err := f.pin(cat, *snapshotID, f.arg(1)); err != nil {
			return err
		}
		_, self, children, err := cat.Browse(ctx, f.arg(0), f.arg(1), f.arg(2))
		if err != nil {
			return err
		}
		if *f.output != catalog.FormatText {
			if !self.Mode.IsDir() {
				return catalog.PrintFormat(out, *f.output, catalog.EntriesJSON([]datapath.Entry{self}))
			}
			return catalog.PrintFormat(out, *f.output, catalog.EntriesJSON(children))
		}
		return catalog.PrintEntries(out, self, children)
	}
	return c
}

// newRestoreFilesCommand is `snapmove restore-files BACKUP NAMESPACE/PVC PATH... --to DIR|--to-pvc NS/PVC`.
func newRestoreFilesCommand() *cobra.Command {
	c := &cobra.Command{Use: "restore-files BACKUP NAMESPACE/PVC PATH... (--to DIR | --to-pvc NAMESPACE/PVC)", Short: "chosen paths of a volume in a backup, without a full restore"}
	f := newCatalogFlags(c)
	to := c.Flags().String("to", "", "local directory that receives each path at its place in the volume (created if missing)")
	toPVC := c.Flags().String("to-pvc", "", "NAMESPACE/PVC: restore into this live PVC instead: the files are read here and streamed into a pod in its namespace that holds no secret")
	image := c.Flags().String("image", "", "with --to-pvc: the snapmove image of the pod (default: the mover's worker image)")
	timeout := c.Flags().Duration("timeout", 30*time.Minute, "with --to-pvc: how long the pod may take; it is removed by then even if this command dies")
	rate := c.Flags().Int64("rate", 0, "with --to-pvc: at most this many bytes per second into the pod (0: no limit)")
	snapshotID := c.Flags().String("snapshot-id", "", "the snapshot to read, instead of finding the backup's (for snapshots without a backup tag)")
	sparse := c.Flags().Bool("sparse", true, "write all-zero blocks as holes")
	reportFile := c.Flags().String("report-file", "", "also write the outcome to this file (the restore pod's termination message)")
	const usage = "usage: snapmove restore-files BACKUP NAMESPACE/PVC PATH... (--to DIR | --to-pvc NAMESPACE/PVC)"
	c.Args = f.argsBetween(usage, 3, -1)
	c.RunE = func(cc *cobra.Command, _ []string) (err error) {
		ctx, out := cc.Context(), cc.OutOrStdout()
		if (*to == "") == (*toPVC == "") {
			return errors.New("give one of --to DIR and --to-pvc NAMESPACE/PVC")
		}
		if *reportFile != "" {
			var report bytes.Buffer
			defer func() { err = writeReport(*reportFile, report.String(), err) }()
			out = io.MultiWriter(out, &report)
		}
		cat, c, err := f.open()
		if err != nil {
			return err
		}
		backup, volume, paths := f.arg(0), f.arg(1), f.args[2:]
		if err := f.pin(cat, *snapshotID, volume); err != nil {
			return err
		}
		if *toPVC != "" {
			ic, err := f.inCluster(ctx, cat, c, *image, *timeout)
			if err != nil {
				return err
			}
			ic.Rate = *rate
			return restoreToPVC(ctx, f, ic, backup, volume, *toPVC, datapath.FilesRequest{Paths: paths, WriteSparse: *sparse}, out)
		}
		progress := newProgress(os.Stderr)
		v, res, err := cat.RestoreFiles(ctx, backup, volume, datapath.FilesRequest{
			Paths: paths, Target: *to, WriteSparse: *sparse,
			OnProgress: progress.Transfer, ProgressInterval: time.Second,
		})
		progress.Done()
		if err != nil {
			return err
		}
		if *f.output != catalog.FormatText {
			return catalog.PrintFormat(out, *f.output, catalog.RestoredJSON(v, *to, res))
		}
		return catalog.PrintRestored(out, v, res, *to)
	}
	return c
}

func restoreToPVC(ctx context.Context, f *catalogFlags, ic *catalog.InCluster, backup, volume, toPVC string, req datapath.FilesRequest, out io.Writer) error {
	ns, name, ok := strings.Cut(toPVC, "/")
	if !ok || ns == "" || name == "" {
		return errors.Errorf("--to-pvc %q: want NAMESPACE/PVC", toPVC)
	}
	cfg, err := f.cluster.restConfig()
	if err != nil {
		return err
	}
	if ic.Attach, err = catalog.APIAttach(cfg); err != nil {
		return err
	}
	progress := newProgress(os.Stderr)
	req.OnProgress, req.ProgressInterval = progress.Transfer, time.Second
	ic.OnWait = progress.Status
	v, res, report, err := ic.RestoreFiles(ctx, backup, volume, req, types.NamespacedName{Namespace: ns, Name: name})
	progress.Done()
	if err != nil {
		return err
	}
	if *f.output != catalog.FormatText {
		r := catalog.RestoredJSON(v, "PVC "+toPVC, res)
		r.Receiver = strings.TrimSpace(report)
		return catalog.PrintFormat(out, *f.output, r)
	}
	if err := catalog.PrintRestored(out, v, res, "PVC "+toPVC); err != nil {
		return err
	}
	_, err = fmt.Fprint(out, report)
	return err
}

// inCluster is what runs a command in a pod: the mover's worker image (unless image is
// set) placed by the mover's settings.
func (f *catalogFlags) inCluster(ctx context.Context, cat *catalog.Catalog, c client.Client, image string, timeout time.Duration) (*catalog.InCluster, error) {
	if c == nil {
		return nil, errors.New("running a command in the cluster needs the cluster; without one, run it here")
	}
	var err error
	if image == "" {
		if image, err = catalog.WorkerImage(ctx, c, *f.namespace); err != nil {
			return nil, err
		}
	}
	settings, err := config.Load(ctx, c, *f.namespace)
	if err != nil {
		return nil, errors.Wrap(err, "reading the mover's settings (they place the pod)")
	}
	creds, server, err := defaultCredentials(*f.defaultCredentials, c, *f.namespace)
	if err != nil {
		return nil, err
	}
	ic := &catalog.InCluster{
		Client: c, Catalog: cat, Namespace: *f.namespace, DefaultCredentials: announce(creds, noticeLogger()), Image: image, Settings: settings,
		Timeout: timeout, Interval: time.Second, Log: cat.Log,
	}
	// Command pods run in Velero's namespace with its server's pull secrets, workload
	// identity label and, with workload identity, account; without them (Velero's
	// Deployment not readable) they may still run.
	if srv, err := server.Get(ctx); err != nil {
		cat.Log.WithError(err).Warn("command pods get no pull secrets or workload identity of Velero's server")
	} else {
		ic.UseServer(srv)
	}
	return ic, nil
}

// writeReport writes a command's outcome (its output, then its error) to file, bounded to
// what a pod's termination message holds (4096 bytes, the end kept).
func writeReport(file, output string, err error) error {
	msg := output
	if compact := new(bytes.Buffer); json.Valid([]byte(output)) && json.Compact(compact, []byte(output)) == nil {
		msg = compact.String() + "\n" // -o json: some twelve volumes fit, indented some nine
	}
	if err != nil {
		msg += "snapmove: " + err.Error()
	}
	if len(msg) > 4096 {
		msg = "..." + msg[len(msg)-4093:]
	}
	if werr := os.WriteFile(file, []byte(msg), 0o644); werr != nil && err == nil {
		return errors.Wrapf(werr, "writing --report-file %s", file)
	}
	return err
}

// pin replaces the catalog's source by the one snapshot id of volume, when id is set.
func (f *catalogFlags) pin(cat *catalog.Catalog, id, volume string) error {
	if id == "" {
		return nil
	}
	return f.pinAll(cat, []string{volume + "=" + id})
}

// pinAll replaces the catalog's source by the snapshots given as NAMESPACE/PVC=ID, when
// there are any. They must be on the --bucket location.
func (f *catalogFlags) pinAll(cat *catalog.Catalog, pins []string) error {
	if len(pins) == 0 {
		return nil
	}
	bucket, ok := cat.Source.(catalog.Bucket)
	if !ok {
		return errors.New("a snapshot ID needs --bucket: in the cluster, volumes are found by backup")
	}
	pinned := catalog.Pinned{BSL: bucket.BSL}
	for _, p := range pins {
		volume, id, _ := strings.Cut(p, "=")
		ns, pvc, ok := strings.Cut(volume, "/")
		if !ok || ns == "" || pvc == "" || id == "" || strings.Contains(pvc, "/") {
			return errors.Errorf("snapshot %q: want NAMESPACE/PVC=ID", p)
		}
		pinned.Pins = append(pinned.Pins, catalog.Volume{
			Namespace: ns, PVC: pvc, SnapshotID: id, Phase: string(velerov2alpha1.DataUploadPhaseCompleted), StorageLocation: bucket.BSL.Name, Files: -1, IncrementalBytes: -1,
		})
	}
	cat.Source = pinned
	return nil
}

// newVerifyCommand is `snapmove verify [BACKUP [NAMESPACE/PVC]]`. It fails when any volume fails.
func newVerifyCommand() *cobra.Command {
	c := &cobra.Command{Use: "verify [BACKUP [NAMESPACE/PVC]]", Short: "read a backup's volumes back from the repository"}
	f := newCatalogFlags(c)
	level := c.Flags().String("level", "metadata", "what to read back: metadata, sample:<percent> or full")
	inCluster := c.Flags().Bool("in-cluster", false, "verify from a pod in Velero's namespace (for a repository this machine cannot reach)")
	image := c.Flags().String("image", "", "with --in-cluster: the snapmove image of the pod (default: the mover's worker image)")
	timeout := c.Flags().Duration("timeout", 2*time.Hour, "with --in-cluster: how long the pod may take")
	snapshots := c.Flags().StringArray("snapshot", nil, "with --bucket: verify NAMESPACE/PVC=SNAPSHOT_ID (repeatable) instead of finding the backup's snapshots by their tag")
	reportFile := c.Flags().String("report-file", "", "also write the outcome to this file (a command pod's termination message)")
	c.Args = f.argsBetween("usage: snapmove verify [BACKUP [NAMESPACE/PVC]] [--level metadata|sample:N|full] [--in-cluster]", 0, 2)
	c.RunE = func(cc *cobra.Command, _ []string) (err error) {
		ctx, out := cc.Context(), cc.OutOrStdout()
		mode, err := config.ParseVerify(*level)
		if err != nil {
			return errors.Wrap(err, "--level")
		}
		if *reportFile != "" {
			var report bytes.Buffer
			defer func() { err = writeReport(*reportFile, report.String(), err) }()
			out = io.MultiWriter(out, &report)
		}
		cat, c, err := f.open()
		if err != nil {
			return err
		}
		if *inCluster {
			if f.arg(0) == "" {
				return errors.New("--in-cluster verifies one backup: give its name")
			}
			ic, err := f.inCluster(ctx, cat, c, *image, *timeout)
			if err != nil {
				return err
			}
			progress := newProgress(os.Stderr)
			ic.OnWait = progress.Status
			if *f.output == catalog.FormatText {
				report, err := ic.Verify(ctx, f.arg(0), f.arg(1), mode.String())
				progress.Done()
				if report != "" {
					fmt.Fprint(out, report)
				}
				return err
			}
			vs, err := ic.VerifyResults(ctx, f.arg(0), f.arg(1), mode.String())
			progress.Done()
			if err != nil {
				return err
			}
			return printVerifications(out, *f.output, vs)
		}
		if err := f.pinAll(cat, *snapshots); err != nil {
			return err
		}
		progress := newProgress(os.Stderr)
		cat.OnVolume = func(done, total int) {
			progress.Step(done, total, fmt.Sprintf("%d of %d volumes verified", done, total))
		}
		vs, err := cat.Verify(ctx, f.arg(0), f.arg(1), mode)
		progress.Done()
		if err != nil {
			return err
		}
		return printVerifications(out, *f.output, vs)
	}
	return c
}

// printVerifications writes vs as format says, and fails when a volume failed.
func printVerifications(out io.Writer, format string, vs []catalog.Verification) error {
	if err := printResult(out, format, vs, func() error { return catalog.PrintVerifications(out, vs) }); err != nil {
		return err
	}
	failed := 0
	for _, v := range vs {
		if !v.OK {
			failed++
		}
	}
	if failed > 0 {
		return errors.Errorf("%d of %d volumes failed verification", failed, len(vs))
	}
	return nil
}

// newReportCommand is `snapmove report BACKUP` and `snapmove report --restore RESTORE`.
// The restore side is a flag, not a `report restore NAME` subcommand: report's argument
// is a backup's name, and a subcommand would take the backup named "restore" from it.
func newReportCommand() *cobra.Command {
	c := &cobra.Command{Use: "report BACKUP | report --restore RESTORE", Short: "what protection each PVC of a backup got, or what a restore's volume moves did"}
	f := newCatalogFlags(c)
	timeout := c.Flags().Duration("timeout", time.Minute, "how long to wait for Velero to hand out the backup's contents")
	restore := c.Flags().String("restore", "", "report this restore's DataDownloads (phase, bytes, time, node, message) instead of a backup")
	const usage = "usage: snapmove report BACKUP | snapmove report --restore RESTORE [-o text|json|yaml]"
	backupArgs := f.argsBetween(usage, 1, 1)
	c.Args = func(cc *cobra.Command, args []string) error {
		if *restore != "" {
			if len(args) != 0 {
				return errors.New(usage)
			}
			return catalog.CheckFormat(*f.output)
		}
		return backupArgs(cc, args)
	}
	c.RunE = func(cc *cobra.Command, _ []string) error {
		ctx, out := cc.Context(), cc.OutOrStdout()
		if *f.bucket != "" {
			return errors.New("report needs the cluster: it reads the Backup, its DataUploads and PodVolumeBackups, or the Restore and its DataDownloads (use list --bucket without one)")
		}
		cat, c, err := f.open()
		if err != nil {
			return err
		}
		r := &catalog.Reporter{
			Client: c, Namespace: *f.namespace, Catalog: cat,
			Contents: func(ctx context.Context, backup string, w io.Writer) error {
				return downloadrequest.Stream(ctx, c, *f.namespace, backup, velerov1.DownloadTargetKindBackupContents, w, *timeout, false, "")
			},
		}
		if *restore != "" {
			rep, err := r.RestoreReport(ctx, *restore)
			if err != nil {
				return err
			}
			return printResult(out, *f.output, rep, func() error { return catalog.PrintRestoreReport(out, rep, time.Now()) })
		}
		rep, err := r.Report(ctx, f.arg(0))
		if err != nil {
			return err
		}
		return printResult(out, *f.output, rep, func() error { return catalog.PrintReport(out, rep) })
	}
	return c
}
