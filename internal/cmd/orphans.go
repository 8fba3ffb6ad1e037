package cmd

import (
	"context"
	"io"
	"time"

	"github.com/pkg/errors"
	"github.com/spf13/cobra"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/catalog"
	"github.com/snapmove/snapmove/internal/mover/connect"
	"github.com/snapmove/snapmove/internal/mover/orphans"
)

// newForgetOrphansCommand is `snapmove forget-orphans [--backup-location NAME] [--confirm]`:
// it lists the snapshots in the BSL's repositories whose backup is no longer in the bucket
// and, with --confirm, forgets them (internal/mover/orphans).
func newForgetOrphansCommand() *cobra.Command {
	const usage = "usage: snapmove forget-orphans [--backup-location NAME] [--min-age 24h] [--confirm] [-o text|json|yaml]"
	var (
		f      orphansFlags
		output string
	)
	c := &cobra.Command{
		Use:   "forget-orphans [--confirm]",
		Short: "forget the snapshots of backups no longer in the bucket",
		Args:  noArgs(usage, &output),
		RunE: func(c *cobra.Command, _ []string) error {
			return forgetOrphans(c.Context(), f, output, c.OutOrStdout())
		},
	}
	fs := c.Flags()
	f.cluster.bind(fs)
	fs.StringVar(&f.location, "backup-location", "default", "the BackupStorageLocation whose repositories are looked at")
	fs.DurationVar(&f.minAge, "min-age", 24*time.Hour, "never count a snapshot younger than this (a running backup is stored in the bucket only when its items are)")
	fs.BoolVar(&f.confirm, "confirm", false, "forget the orphaned snapshots (without it: a dry run that only lists them)")
	fs.BoolVarP(&f.verbose, "verbose", "v", false, "log what is read (to stderr)")
	fs.StringVar(&f.credentials, "default-credentials-secret", DefaultCredentialsSecret, credentialsFlagHelp)
	outputFlag(fs, &output)
	return c
}

type orphansFlags struct {
	cluster               clusterFlags
	location, credentials string
	minAge                time.Duration
	confirm, verbose      bool
}

func forgetOrphans(ctx context.Context, f orphansFlags, output string, out io.Writer) error {
	namespace, location, minAge, confirm, verbose, credentials := &f.cluster.namespace, &f.location, &f.minAge, &f.confirm, &f.verbose, &f.credentials
	log, err := newLogger("warning", "text")
	if err != nil {
		return err
	}
	if *verbose {
		log.SetLevel(4) // info
	}
	c, err := f.cluster.apiClient()
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
	if output == catalog.FormatYAML {
		printErr = catalog.PrintYAML(out, res)
	} else if output == catalog.FormatJSON {
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
