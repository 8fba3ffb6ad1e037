package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pkg/errors"
	"github.com/spf13/pflag"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/connect"
	"github.com/snapmove/snapmove/internal/mover/orphans"
)

// ForgetOrphans runs `snapmove forget-orphans [--backup-location NAME] [--confirm]`: it
// lists the snapshots in the BSL's repositories whose backup is no longer in the bucket
// and, with --confirm, forgets them (internal/mover/orphans).
func ForgetOrphans(ctx context.Context, args []string, out io.Writer) error {
	fs := pflag.NewFlagSet("snapmove forget-orphans", pflag.ContinueOnError)
	namespace := fs.String("namespace", defaultNamespace(), "Velero's namespace")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	location := fs.String("backup-location", "default", "the BackupStorageLocation whose repositories are looked at")
	minAge := fs.Duration("min-age", 24*time.Hour, "never count a snapshot younger than this (a running backup is stored in the bucket only when its items are)")
	confirm := fs.Bool("confirm", false, "forget the orphaned snapshots (without it: a dry run that only lists them)")
	output := fs.StringP("output", "o", "text", "text or json")
	verbose := fs.BoolP("verbose", "v", false, "log what is read (to stderr)")
	credentials := fs.String("default-credentials-secret", DefaultCredentialsSecret, credentialsFlagHelp)
	const usage = "usage: snapmove forget-orphans [--backup-location NAME] [--min-age 24h] [--confirm] [-o text|json]"
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errors.New(usage)
	}
	if *output != "text" && *output != "json" {
		return errors.Errorf("-o %q: want text or json", *output)
	}
	log, err := newLogger("warning", "text")
	if err != nil {
		return err
	}
	if *verbose {
		log.SetLevel(4) // info
	}
	c, err := apiClient(*kubeconfig)
	if err != nil {
		return err
	}
	bsl := &velerov1.BackupStorageLocation{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: *namespace, Name: *location}, bsl); err != nil {
		return errors.Wrapf(err, "getting BackupStorageLocation %s/%s", *namespace, *location)
	}
	defaultCreds, _, err := defaultCredentials(*credentials, c, *namespace)
	if err != nil {
		return err
	}
	creds := announce(defaultCreds, noticeLogger())
	b := orphanBucket{
		bsl:    bsl,
		reader: &connect.Reader{Secrets: c, Namespace: *namespace, DefaultCredentials: creds, Log: log},
		writer: &connect.Connector{Client: c, Namespace: *namespace, DefaultCredentials: creds, Log: log},
	}
	res, err := orphans.Run(ctx, b, orphans.Options{MinAge: *minAge, Now: time.Now(), Forget: *confirm})
	var printErr error
	if *output == "json" {
		printErr = orphans.PrintJSON(out, res)
	} else {
		printErr = orphans.Print(out, res, *confirm)
	}
	if err != nil {
		return err
	}
	return printErr
}

// orphanBucket is orphans.Bucket for one BSL: lists read-only, and opens a repository
// writable only to forget.
type orphanBucket struct {
	bsl    *velerov1.BackupStorageLocation
	reader *connect.Reader
	writer *connect.Connector
}

func (b orphanBucket) Backups(ctx context.Context) ([]string, error) {
	return b.reader.Backups(ctx, b.bsl)
}

func (b orphanBucket) Namespaces(ctx context.Context) ([]string, error) {
	return b.reader.Namespaces(ctx, b.bsl)
}

func (b orphanBucket) Open(ctx context.Context, namespace string, forget bool) (orphans.Repository, error) {
	if forget {
		repo, err := b.writer.OpenToForget(ctx, b.bsl, namespace)
		if err != nil {
			return nil, err
		}
		return repo, nil
	}
	repo, err := b.reader.Open(ctx, b.bsl, namespace)
	if err != nil {
		return nil, err
	}
	return repo, nil
}
