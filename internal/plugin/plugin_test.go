package plugin

import (
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestSettingsFromVeleroServerFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want Settings
	}{
		{
			name: "helm chart flags",
			args: []string{"--uploader-type=kopia", "--features=EnableAPIGroupVersions,EnableCSI", "--default-snapshot-move-data=true",
				"--log-level=debug", "--client-qps=50", "--client-burst=70", "--some-future-flag=x"},
			want: Settings{EnableCSI: true, DefaultSnapshotMoveData: true, ClientQPS: 50, ClientBurst: 70},
		},
		{
			name: "defaults",
			args: nil,
			want: Settings{ClientQPS: 100, ClientBurst: 100},
		},
		{
			name: "features without EnableCSI",
			args: []string{"--features=EnableAPIGroupVersions"},
			want: Settings{ClientQPS: 100, ClientBurst: 100},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			flags := pflag.NewFlagSet("snapmove", pflag.ContinueOnError)
			_, settings := newServer(flags, func(Settings) (client.Client, error) { return nil, nil })
			require.NoError(t, flags.Parse(tt.args))
			require.Equal(t, tt.want, settings())
		})
	}
}
