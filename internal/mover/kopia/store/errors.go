package store

import (
	"context"
	stderrors "errors"
	"fmt"
	iofs "io/fs"
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

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/mover/repository"
)

// Causes Open reports; test with errors.Is. The error's message names the cause and the
// location (repository.Location.String()). ErrUnreachable (the store restarts, the
// network blinks) and ErrUnavailable (a 5xx, throttling) may pass, and are also
// *datapath.TransientError; the others need a person. Errors of none of these causes are
// left unclassified.
var (
	ErrWrongPassword  = stderrors.New("wrong repository password")
	ErrBucketNotFound = stderrors.New("bucket not found")
	ErrUnreachable    = stderrors.New("storage unreachable")
	ErrUnavailable    = stderrors.New("storage unavailable")
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
		return datapath.Transient(newOpenError(ErrUnreachable, err, "storage of repository at %s is unreachable", loc))
	case isServerError(err):
		return datapath.Transient(newOpenError(ErrUnavailable, err, "storage of repository at %s is unavailable", loc))
	default:
		return nil
	}
}

// IsTransient reports whether err, returned by Open, Backup, Restore or a storage client,
// may pass on its own: the store unreachable (refused, reset, DNS, timed out), a 5xx or
// throttling that outlasted kopia's and the storage client's own retries, a deadline. It
// is false for a cancellation, for the causes that need a person (a wrong password, a
// missing bucket, denied access, no repository: see classifyStorageError), for a snapshot
// that failed verification, and for errors of local files (reading the source, writing
// the target, the cache), which a new attempt would meet again.
func IsTransient(err error) bool {
	var (
		perm     *datapath.PermanentError
		verify   *datapath.VerificationError
		pathErr  *iofs.PathError
		linkErr  *os.LinkError
		transErr *datapath.TransientError
	)
	switch {
	case err == nil, stderrors.Is(err, context.Canceled):
		return false
	case stderrors.Is(err, ErrWrongPassword), stderrors.Is(err, ErrBucketNotFound),
		stderrors.Is(err, ErrAccessDenied), stderrors.Is(err, ErrNotInitialized),
		stderrors.Is(err, repo.ErrInvalidPassword), isBucketNotFound(err), isAccessDenied(err),
		stderrors.Is(err, iofs.ErrPermission), stderrors.As(err, &perm), stderrors.As(err, &verify):
		return false
	case stderrors.As(err, &pathErr), stderrors.As(err, &linkErr):
		return false
	case stderrors.As(err, &transErr), isUnreachable(err), isServerError(err):
		return true
	}
	return false
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
	case stderrors.Is(err, syscall.ECONNREFUSED), stderrors.Is(err, syscall.EHOSTUNREACH), stderrors.Is(err, syscall.ENETUNREACH),
		stderrors.Is(err, syscall.ECONNRESET), stderrors.Is(err, syscall.ECONNABORTED), stderrors.Is(err, syscall.ETIMEDOUT):
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

// isServerError: the store answered with a server error (5xx but 501 and 505, which say
// what it does not support), throttled (429, S3's SlowDown and its kin, Azure's
// ServerBusy) or timed a request out.
func isServerError(err error) bool {
	var me minio.ErrorResponse
	if stderrors.As(err, &me) {
		switch me.Code {
		case "SlowDown", "SlowDownRead", "SlowDownWrite", "Throttling", "ThrottlingException", "RequestLimitExceeded",
			"TooManyRequests", "RequestTimeout", "InternalError", "ServiceUnavailable":
			return true
		}
		return serverStatus(me.StatusCode)
	}
	var ge *googleapi.Error
	if stderrors.As(err, &ge) {
		return serverStatus(ge.Code)
	}
	var ae *azcore.ResponseError
	if stderrors.As(err, &ae) {
		switch ae.ErrorCode {
		case "ServerBusy", "OperationTimedOut", "InternalError":
			return true
		}
		return serverStatus(ae.StatusCode)
	}
	return false
}

func serverStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusRequestTimeout:
		return true
	case http.StatusNotImplemented, http.StatusHTTPVersionNotSupported:
		return false
	}
	return code >= 500 && code < 600
}
