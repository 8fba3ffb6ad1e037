package catalog

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/mover/datapath"
)

func TestDescribeVerification(t *testing.T) {
	mode := func(l datapath.VerifyLevel, pct int) datapath.VerifyMode {
		return datapath.VerifyMode{Level: l, Percent: pct}
	}
	for _, tc := range []struct {
		res  datapath.VerifyResult
		want string
	}{
		{datapath.VerifyResult{Mode: mode(datapath.VerifyMetadata, 0), Checked: datapath.TreeCounts{Files: 2500, Dirs: 34, Bytes: 1_150_000_000}, Duration: 1234e6},
			"verified (metadata): 2500 files, 34 directories, 1.15 GB in 1.2s"},
		{datapath.VerifyResult{Mode: mode(datapath.VerifySample, 10), Checked: datapath.TreeCounts{Files: 2500, Dirs: 34, Symlinks: 2, Bytes: 1_150_000_000},
			FilesRead: 251, BytesRead: 120_400_000, Duration: 3e9},
			"verified (sample:10): 2500 files, 34 directories, 2 symlinks, 1.15 GB; content of 251 files (120 MB) read back in 3s"},
		{datapath.VerifyResult{Mode: mode(datapath.VerifyFull, 0), Checked: datapath.TreeCounts{Files: 1, Dirs: 1, Bytes: 999}, FilesRead: 1, BytesRead: 999, Duration: 5e6},
			"verified (full): 1 file, 1 directory, 999 B; content of 1 file (999 B) read back in 5ms"},
		// What the worker's test expects in its result.
		{datapath.VerifyResult{Mode: mode(datapath.VerifySample, 10), Checked: datapath.TreeCounts{Files: 3, Dirs: 1, Bytes: 1000}, FilesRead: 1, BytesRead: 10, Duration: 5 * time.Millisecond},
			"verified (sample:10): 3 files, 1 directory, 1.00 kB; content of 1 file (10 B) read back in 5ms"},
		{datapath.VerifyResult{Mode: mode(datapath.VerifyNone, 0)}, "not verified (verify: none)"},
	} {
		require.Equal(t, tc.want, DescribeVerification(tc.res))
	}
}
