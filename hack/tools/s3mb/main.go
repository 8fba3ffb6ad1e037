// s3mb creates a bucket on an S3 endpoint (plain HTTP) if it does not exist yet.
//
//	usage: s3mb ENDPOINT ACCESS_KEY SECRET_KEY BUCKET
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: s3mb ENDPOINT ACCESS_KEY SECRET_KEY BUCKET")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3], os.Args[4]); err != nil {
		fmt.Fprintln(os.Stderr, "s3mb:", err)
		os.Exit(1)
	}
}

func run(endpoint, accessKey, secretKey, bucket string) error {
	client, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(accessKey, secretKey, "")})
	if err != nil {
		return fmt.Errorf("creating S3 client for %s: %w", endpoint, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exists, err := client.BucketExists(ctx, bucket)
	if err != nil {
		return fmt.Errorf("checking bucket %s: %w", bucket, err)
	}
	if exists {
		fmt.Fprintf(os.Stderr, "bucket %s exists\n", bucket)
		return nil
	}
	if err := client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		return fmt.Errorf("creating bucket %s: %w", bucket, err)
	}
	fmt.Fprintf(os.Stderr, "bucket %s created\n", bucket)
	return nil
}
