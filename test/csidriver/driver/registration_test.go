package driver

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

func TestRegistrationGetInfo(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "reg.sock")
	l, path, err := ListenUnix("unix://" + sock)
	require.NoError(t, err)
	require.Equal(t, sock, path)
	srv := grpc.NewServer()
	NewRegistrationServer("hostpath.csi.snapmove.io", "/run/csi/csi.sock", nil).Register(srv)
	go srv.Serve(l) //nolint:errcheck // returns when the server stops
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	client := registerapi.NewRegistrationClient(conn)
	info, err := client.GetInfo(context.Background(), &registerapi.InfoRequest{})
	require.NoError(t, err)
	require.Equal(t, registerapi.CSIPlugin, info.GetType())
	require.Equal(t, "hostpath.csi.snapmove.io", info.GetName())
	require.Equal(t, "/run/csi/csi.sock", info.GetEndpoint())
	require.Equal(t, []string{"1.0.0"}, info.GetSupportedVersions())
	_, err = client.NotifyRegistrationStatus(context.Background(), &registerapi.RegistrationStatus{PluginRegistered: true})
	require.NoError(t, err)
}

func TestListenUnixEndpointForms(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ endpoint, want string }{
		{"unix://" + dir + "/a.sock", dir + "/a.sock"},
		{"unix:" + dir + "/b.sock", dir + "/b.sock"},
		{dir + "/c.sock", dir + "/c.sock"},
	} {
		l, path, err := ListenUnix(tt.endpoint)
		require.NoError(t, err, tt.endpoint)
		require.Equal(t, tt.want, path)
		require.NoError(t, l.Close())
	}
	_, _, err := ListenUnix("unix://")
	require.Error(t, err)
}
