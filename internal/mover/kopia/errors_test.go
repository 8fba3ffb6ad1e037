package kopia

import (
	"context"
	stderrors "errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/blob"
	"github.com/minio/minio-go/v7"
	"github.com/pkg/errors"
	"github.com/stretchr/testify/require"
	"google.golang.org/api/googleapi"

	"github.com/snapmove/snapmove/internal/mover/repository"
)

func TestClassifyStorageError(t *testing.T) {
	loc := repository.Location{Provider: repository.ProviderAWS, Bucket: "bkt", Prefix: "velero/kopia/app/", Endpoint: "s3.example.com"}
	tests := []struct {
		name string
		err  error
		want error // nil: not classified
	}{
		{"wrong password", errors.Wrap(repo.ErrInvalidPassword, "opening"), ErrWrongPassword},
		{"s3 no such bucket", minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: 404}, ErrBucketNotFound},
		{"s3 access denied", errors.Wrap(minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}, "listing"), ErrAccessDenied},
		{"s3 bad key", minio.ErrorResponse{Code: "InvalidAccessKeyId", StatusCode: 403}, ErrAccessDenied},
		{"s3 bad signature", minio.ErrorResponse{Code: "SignatureDoesNotMatch", StatusCode: 403}, ErrAccessDenied},
		{"kopia invalid credentials", blob.ErrInvalidCredentials, ErrAccessDenied},
		{"gcs missing bucket", &googleapi.Error{Code: 404, Message: "The specified bucket does not exist."}, ErrBucketNotFound},
		{"gcs forbidden", fmt.Errorf("listing: %w", &googleapi.Error{Code: 403}), ErrAccessDenied},
		{"azure missing container", &azcore.ResponseError{ErrorCode: "ContainerNotFound", StatusCode: 404}, ErrBucketNotFound},
		{"azure auth failed", &azcore.ResponseError{ErrorCode: "AuthenticationFailed", StatusCode: 403}, ErrAccessDenied},
		{"connection refused", &url.Error{Op: "Get", URL: "http://x", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}, ErrUnreachable},
		{"dns", &net.DNSError{Err: "no such host", Name: "x"}, ErrUnreachable},
		{"connection reset", &url.Error{Op: "Put", URL: "http://x", Err: &net.OpError{Op: "read", Err: syscall.ECONNRESET}}, ErrUnreachable},
		// A 5xx or throttling is not classified: the storage client retries it, and the
		// caller treats it as transient.
		{"s3 503", minio.ErrorResponse{Code: "ServiceUnavailable", StatusCode: 503}, nil},
		{"s3 slow down", minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}, nil},
		{"s3 500", errors.Wrap(minio.ErrorResponse{Code: "InternalError", StatusCode: 500}, "putting blob"), nil},
		{"deadline", context.DeadlineExceeded, ErrUnreachable},
		{"tls", &url.Error{Op: "Get", URL: "https://x", Err: stderrors.New("tls: failed to verify certificate: x509: unknown authority")}, nil},
		{"other", stderrors.New("boom"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := classifyStorageError(tc.err, loc)
			if tc.want == nil {
				require.NoError(t, got)
				return
			}
			require.ErrorIs(t, got, tc.want)
			require.Contains(t, got.Error(), loc.String())
			for _, other := range []error{ErrWrongPassword, ErrBucketNotFound, ErrUnreachable, ErrAccessDenied, ErrNotInitialized} {
				if other != tc.want {
					require.NotErrorIs(t, got, other)
				}
			}
		})
	}
}

// fakeS3 answers every request with one S3 error.
func fakeS3(t *testing.T, status int, code string) repository.Location {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><BucketName>bkt</BucketName><Resource>/bkt</Resource><RequestId>1</RequestId></Error>`, code, code)
		}
	}))
	t.Cleanup(srv.Close)
	return repository.Location{
		Provider: repository.ProviderAWS, Bucket: "bkt", Prefix: "velero/kopia/app/",
		Endpoint: strings.TrimPrefix(srv.URL, "http://"), DisableTLS: true, Region: "us-east-1",
		AccessKeyID: "AK", SecretAccessKey: "SK",
	}
}

func TestOpenS3Errors(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := closed.Addr().String()
	require.NoError(t, closed.Close())

	tests := []struct {
		name string
		loc  repository.Location
		want error
	}{
		{"missing bucket is never created", fakeS3(t, http.StatusNotFound, "NoSuchBucket"), ErrBucketNotFound},
		{"access denied", fakeS3(t, http.StatusForbidden, "AccessDenied"), ErrAccessDenied},
		{"unknown key", fakeS3(t, http.StatusForbidden, "InvalidAccessKeyId"), ErrAccessDenied},
		{"nothing listening", repository.Location{Provider: repository.ProviderAWS, Bucket: "bkt", Prefix: "p/",
			Endpoint: closedAddr, DisableTLS: true, Region: "us-east-1"}, ErrUnreachable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := Open(ctx, tc.loc, testPassword, Options{Create: true})
			require.ErrorIs(t, err, tc.want)
			require.ErrorContains(t, err, tc.loc.String())
		})
	}
}
