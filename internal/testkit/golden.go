package testkit

import (
	"flag"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Golden marshals got to YAML (sigs.k8s.io/yaml: JSON field names, sorted keys) and requires
// it to equal the file at path, byte for byte. With `go test -update` it first writes the
// file, so a changed builder is reviewed as a diff of testdata/.
func Golden(t *testing.T, path string, got any) {
	t.Helper()
	b, err := yaml.Marshal(got)
	require.NoError(t, err, "marshalling %s", path)
	if *update {
		require.NoError(t, os.WriteFile(path, b, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create %s", path)
	require.Equal(t, string(want), string(b), "golden file %s differs; run go test -update if intended", path)
}

// Updating reports whether the tests run with -update: a test that generates a checked-in
// file other than a golden file (e.g. an example derived from another) rewrites it then.
func Updating() bool { return *update }
