package mover

import (
	"context"
	"testing"

	"github.com/pkg/errors"
	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/mover/controller"
	"github.com/snapmove/snapmove/internal/mover/kopia"
)

func TestParseSecretKey(t *testing.T) {
	s, err := parseSecretKey("cloud-credentials/cloud")
	require.NoError(t, err)
	require.Equal(t, "cloud-credentials", s.Name)
	require.Equal(t, "cloud", s.Key)
	s, err = parseSecretKey("creds")
	require.NoError(t, err)
	require.Equal(t, "cloud", s.Key)
	s, err = parseSecretKey("")
	require.NoError(t, err)
	require.Nil(t, s)
	_, err = parseSecretKey("/x")
	require.Error(t, err)
}

func TestClassify(t *testing.T) {
	for _, sentinel := range []error{kopia.ErrWrongPassword, kopia.ErrBucketNotFound, kopia.ErrAccessDenied, kopia.ErrUnreachable, kopia.ErrNotInitialized} {
		err := classify(errors.Wrap(sentinel, "repository at s3://b/p"), "velero")
		var p *controller.PermanentError
		require.True(t, errors.As(err, &p), "%v is permanent", sentinel)
		require.Equal(t, controller.ReasonRepositoryError, p.Reason)
		require.ErrorIs(t, err, sentinel)
	}
	err := classify(kopia.ErrWrongPassword, "velero")
	require.Contains(t, err.Error(), "the password in secret velero/velero-repo-credentials (key repository-password) does not open it")
	other := errors.New("boom")
	require.Equal(t, other, classify(other, "velero"))
	require.NoError(t, classify(nil, "velero"))
}

func TestUsageErrors(t *testing.T) {
	ctx := context.Background()
	require.ErrorContains(t, RunWorker(ctx, nil), "usage: snapmove mover worker backup|restore")
	require.ErrorContains(t, RunWorker(ctx, []string{"backup", "--no-such-flag"}), "unknown flag")
	require.ErrorContains(t, RunWorker(ctx, []string{"restore", "--target=/data"}), "needs the object name")
	require.ErrorContains(t, RunController(ctx, []string{"--worker-image="}), "--worker-image is required")
	require.ErrorContains(t, RunController(ctx, []string{"--worker-image=x", "extra"}), "unexpected arguments")
}
