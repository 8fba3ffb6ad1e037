package kopia

import (
	"context"
	stderrors "errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"

	"cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/kopia/kopia/repo"
	"github.com/kopia/kopia/repo/blob"
	"github.com/minio/minio-go/v7"
	"google.golang.org/api/googleapi"

	"github.com/snapmove/snapmove/internal/mover/repository"
)

// Causes Open reports; test with errors.Is. The error's message names the cause and the
// location (repository.Location.String()). ErrUnreachable may pass (the store restarts,
// the network blinks); the others need a person. Errors of none of these causes (a 5xx,
// throttling) are left unclassified: transient.
var (
	ErrWrongPassword  = stderrors.New("wrong repository password")
	ErrBucketNotFound = stderrors.New("bucket not found")
	ErrUnreachable    = stderrors.New("storage unreachable")
	ErrAccessDenied   = stderrors.New("access denied")
	ErrNotInitialized = stderrors.New("repository not initialized")
)

// openError carries one of the sentinel causes plus the underlying error.
type openError struct {
	kind  error
	msg   string
	cause error
}

func (e *openError) Error() string {
	if e.cause == nil {
		return e.msg
	}
	return e.msg + ": " + e.cause.Error()
}

func (e *openError) Is(target error) bool { return target == e.kind }
func (e *openError) Unwrap() error        { return e.cause }

func newOpenError(kind error, cause error, format string, args ...any) error {
	return &openError{kind: kind, msg: fmt.Sprintf(format, args...), cause: cause}
}

// classifyStorageError maps what a storage client returned to one of the sentinel causes,
// or returns nil when it is none of them.
func classifyStorageError(err error, loc repository.Location) error {
	switch {
	case err == nil:
		return nil
	case stderrors.Is(err, repo.ErrInvalidPassword):
		return newOpenError(ErrWrongPassword, nil, "repository at %s rejected the password", loc)
	case isBucketNotFound(err):
		return newOpenError(ErrBucketNotFound, err, "bucket %q of repository at %s does not exist", loc.Bucket, loc)
	case isAccessDenied(err):
		return newOpenError(ErrAccessDenied, err, "access to repository at %s denied", loc)
	case isUnreachable(err):
		return newOpenError(ErrUnreachable, err, "storage of repository at %s is unreachable", loc)
	default:
		return nil
	}
}

func isBucketNotFound(err error) bool {
	var me minio.ErrorResponse
	if stderrors.As(err, &me) && me.Code == "NoSuchBucket" {
		return true
	}
	if stderrors.Is(err, storage.ErrBucketNotExist) {
		return true
	}
	var ge *googleapi.Error
	if stderrors.As(err, &ge) && ge.Code == http.StatusNotFound {
		return true
	}
	var ae *azcore.ResponseError
	if stderrors.As(err, &ae) && ae.ErrorCode == "ContainerNotFound" {
		return true
	}
	return false
}

func isAccessDenied(err error) bool {
	if stderrors.Is(err, blob.ErrInvalidCredentials) || os.IsPermission(err) {
		return true
	}
	var me minio.ErrorResponse
	if stderrors.As(err, &me) {
		switch me.Code {
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "AllAccessDisabled":
			return true
		}
		return me.StatusCode == http.StatusForbidden || me.StatusCode == http.StatusUnauthorized
	}
	var ge *googleapi.Error
	if stderrors.As(err, &ge) {
		return ge.Code == http.StatusForbidden || ge.Code == http.StatusUnauthorized
	}
	var ae *azcore.ResponseError
	if stderrors.As(err, &ae) {
		return ae.StatusCode == http.StatusForbidden || ae.StatusCode == http.StatusUnauthorized
	}
	return false
}

func isUnreachable(err error) bool {
	var (
		opErr  *net.OpError
		dnsErr *net.DNSError
		urlErr *url.Error
	)
	switch {
	case stderrors.As(err, &opErr), stderrors.As(err, &dnsErr):
		return true
	case stderrors.Is(err, syscall.ECONNREFUSED), stderrors.Is(err, syscall.EHOSTUNREACH), stderrors.Is(err, syscall.ENETUNREACH):
		return true
	case stderrors.Is(err, context.DeadlineExceeded):
		return true
	case stderrors.As(err, &urlErr):
		// TLS and certificate problems are configuration errors, not reachability.
		msg := urlErr.Err.Error()
		return !strings.Contains(msg, "certificate") && !strings.Contains(msg, "tls:")
	}
	return false
}
