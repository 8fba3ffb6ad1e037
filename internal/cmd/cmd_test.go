package cmd

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
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

func TestUsageErrors(t *testing.T) {
	ctx := context.Background()
	require.ErrorContains(t, MoverWorker(ctx, nil), "usage: snapmove mover worker backup|restore")
	require.ErrorContains(t, MoverWorker(ctx, []string{"backup", "--no-such-flag"}), "unknown flag")
	require.ErrorContains(t, MoverWorker(ctx, []string{"restore", "--target=/data"}), "needs the object name")
	require.ErrorContains(t, MoverController(ctx, []string{"--worker-image="}), "--worker-image is required")
	require.ErrorContains(t, MoverController(ctx, []string{"--worker-image=x", "extra"}), "unexpected arguments")
	require.ErrorContains(t, Install(nil), "usage: snapmove install DIR")
}
