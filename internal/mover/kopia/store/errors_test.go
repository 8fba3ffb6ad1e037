package store

import (
	"context"
	stderrors "errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
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

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/kopia/kopiatest"
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
		// A 5xx or throttling outlasted the storage client's retries: it may pass.
		{"s3 503", minio.ErrorResponse{Code: "ServiceUnavailable", StatusCode: 503}, ErrUnavailable},
		{"s3 slow down", minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}, ErrUnavailable},
		{"s3 500", errors.Wrap(minio.ErrorResponse{Code: "InternalError", StatusCode: 500}, "putting blob"), ErrUnavailable},
		{"gcs 503", &googleapi.Error{Code: 503}, ErrUnavailable},
		{"azure server busy", &azcore.ResponseError{ErrorCode: "ServerBusy", StatusCode: 503}, ErrUnavailable},
		{"s3 not implemented", minio.ErrorResponse{Code: "NotImplemented", StatusCode: 501}, nil},
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
			for _, other := range []error{ErrWrongPassword, ErrBucketNotFound, ErrUnreachable, ErrUnavailable, ErrAccessDenied, ErrNotInitialized} {
				if other != tc.want {
					require.NotErrorIs(t, got, other)
				}
			}
			// The causes that may pass are marked for the worker (which does not import
			// this package); the others are not.
			var transient *datapath.TransientError
			mayPass := tc.want == ErrUnreachable || tc.want == ErrUnavailable
			require.Equal(t, mayPass, stderrors.As(got, &transient))
			require.Equal(t, mayPass, IsTransient(got))
		})
	}
}

// IsTransient decides whether the worker exits with datapath.ExitTransient and the
// controller retries the whole movement: only for what may pass on its own.
func TestIsTransient(t *testing.T) {
	loc := repository.Location{Provider: repository.ProviderAWS, Bucket: "bkt", Prefix: "p/", Endpoint: "s3.example.com"}
	reset := &url.Error{Op: "Put", URL: "http://minio:9000/bkt/p/x", Err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}
	refused := &url.Error{Op: "Get", URL: "http://minio:9000/bkt", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection reset while uploading", errors.Wrap(errors.Wrap(reset, "unable to complete PutBlob(p123) despite 10 retries"), "uploading"), true},
		{"connection refused", fmt.Errorf("backing up PVC app/data: %w", refused), true},
		{"bare reset", os.NewSyscallError("write", syscall.ECONNRESET), true},
		{"dns", &net.DNSError{Err: "no such host", Name: "minio", IsTemporary: true}, true},
		{"s3 503 slow down", errors.Wrap(minio.ErrorResponse{Code: "SlowDown", StatusCode: 503, Message: "Please reduce your request rate."}, "putting blob"), true},
		{"s3 500", minio.ErrorResponse{Code: "InternalError", StatusCode: 500}, true},
		{"s3 429", minio.ErrorResponse{Code: "TooManyRequests", StatusCode: 429}, true},
		{"gcs 503", fmt.Errorf("reading blob: %w", &googleapi.Error{Code: 503, Message: "backend error"}), true},
		{"gcs 429", &googleapi.Error{Code: 429}, true},
		{"azure 503", errors.Wrap(&azcore.ResponseError{ErrorCode: "ServerBusy", StatusCode: 503}, "uploading block"), true},
		{"azure 500", &azcore.ResponseError{ErrorCode: "InternalError", StatusCode: 500}, true},
		{"deadline", errors.Wrap(context.DeadlineExceeded, "getting blob"), true},
		{"open: unreachable", classifyStorageError(refused, loc), true},
		{"open: 503", classifyStorageError(minio.ErrorResponse{Code: "ServiceUnavailable", StatusCode: 503}, loc), true},

		{"nil", nil, false},
		{"canceled", errors.Wrap(context.Canceled, "uploading"), false},
		{"canceled mid-request", &url.Error{Op: "Put", URL: "http://x", Err: context.Canceled}, false},
		{"wrong password", errors.Wrap(repo.ErrInvalidPassword, "opening"), false},
		{"open: wrong password", classifyStorageError(repo.ErrInvalidPassword, loc), false},
		{"no such bucket", minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: 404}, false},
		{"access denied", errors.Wrap(minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}, "listing"), false},
		{"gcs forbidden", &googleapi.Error{Code: 403}, false},
		{"azure auth failed", &azcore.ResponseError{ErrorCode: "AuthenticationFailed", StatusCode: 403}, false},
		{"not initialized", newOpenError(ErrNotInitialized, nil, "no kopia repository at %s", loc), false},
		{"permission", os.ErrPermission, false},
		{"source unreadable", errors.Wrap(&os.PathError{Op: "read", Path: "/data/x", Err: syscall.EIO}, "uploading"), false},
		{"target full", &os.PathError{Op: "write", Path: "/data/x", Err: syscall.ENOSPC}, false},
		{"blob missing", errors.Wrap(blob.ErrBlobNotFound, "reading pack"), false},
		{"verification failed", &datapath.VerificationError{SnapshotID: "k1", Problems: []string{"x: missing"}}, false},
		{"permanent", datapath.Permanent("", errors.New("bucket gone")), false},
		{"tls", &url.Error{Op: "Get", URL: "https://x", Err: stderrors.New("tls: failed to verify certificate: x509: unknown authority")}, false},
		{"s3 not implemented", minio.ErrorResponse{Code: "NotImplemented", StatusCode: 501}, false},
		{"other", stderrors.New("upload incomplete: canceled"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, IsTransient(tc.err), "%v", tc.err)
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
			_, err := Open(ctx, tc.loc, kopiatest.Password, Options{Create: true})
			require.ErrorIs(t, err, tc.want)
			require.ErrorContains(t, err, tc.loc.String())
		})
	}
}
