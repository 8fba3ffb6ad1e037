package install

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCopy(t *testing.T) {
	tests := []struct {
		name    string
		dir     func(t *testing.T) string
		wantErr string
	}{
		{name: "existing dir", dir: func(t *testing.T) string { return t.TempDir() }},
		{name: "dir created", dir: func(t *testing.T) string { return filepath.Join(t.TempDir(), "a", "b") }},
		{name: "dir is a file", dir: func(t *testing.T) string {
			f := filepath.Join(t.TempDir(), "f")
			require.NoError(t, os.WriteFile(f, nil, 0o644))
			return f
		}, wantErr: "creating directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "bin")
			require.NoError(t, os.WriteFile(src, []byte("payload"), 0o600))
			dir := tt.dir(t)

			dst, err := Copy(src, dir)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, filepath.Join(dir, BinaryName), dst)
			st, err := os.Stat(dst)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o755), st.Mode().Perm())
			b, err := os.ReadFile(dst)
			require.NoError(t, err)
			require.Equal(t, "payload", string(b))
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Len(t, entries, 1, "only the binary lands in the plugins folder")
		})
	}
}
