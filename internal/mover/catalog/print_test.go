package catalog

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/testkit"
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
		{datapath.VerifyResult{Mode: mode(datapath.VerifyMetadata, 0), Checked: datapath.TreeCounts{Files: 2500, Dirs: 34, Bytes: 1_150_000_000},
			Shared: datapath.TreeCounts{Files: 2490, Dirs: 30}, Duration: 12e6},
			"verified (metadata): 2500 files, 34 directories, 1.15 GB in 12ms (2490 files and 30 directories of them as verified in the parent snapshot)"},
		{datapath.VerifyResult{Mode: mode(datapath.VerifyNone, 0)}, "not verified (verify: none)"},
	} {
		require.Equal(t, tc.want, DescribeVerification(tc.res))
	}
}

// hostileEntries are names and symlink targets a tenant may put in a volume: escape
// sequences, newlines and tabs that would forge lines or columns, Latin-1 bytes.
func hostileEntries(mtime time.Time) []datapath.Entry {
	return []datapath.Entry{
		{Name: "plain.txt", Mode: 0o644, Size: 3, ModTime: mtime},
		{Name: "evil\x1b[2J\n-rw-r--r-- 0 0 1 2026-12-01 10:00 forged", Mode: 0o644, Size: 1, ModTime: mtime},
		{Name: "tab\tdir", Mode: fs.ModeDir | 0o755, ModTime: mtime},
		{Name: "caf\xe9", Mode: 0o600, Size: 9, ModTime: mtime},
		{Name: "link", Mode: fs.ModeSymlink | 0o777, Size: 12, ModTime: mtime, LinkTarget: "\x1b]0;owned\a/x\\y"},
	}
}

// inZone has time.Local be zone for the rest of t (the printers print local times with
// their offset).
func inZone(t *testing.T, zone *time.Location) {
	old := time.Local
	time.Local = zone
	t.Cleanup(func() { time.Local = old })
}

func TestPrintersEscapeNames(t *testing.T) {
	inZone(t, time.FixedZone("CET", 3600))
	dir := datapath.Entry{Name: "/", Mode: fs.ModeDir | 0o755}
	var ls bytes.Buffer
	require.NoError(t, PrintEntries(&ls, dir, hostileEntries(time.Date(2026, 12, 1, 10, 0, 0, 0, time.Local))))
	testkit.Golden(t, "testdata/ls-hostile.txt", ls.String())
	require.NotContains(t, ls.String(), "\x1b")
	require.Equal(t, 5, strings.Count(ls.String(), "\n"), "one line per entry")

	var js bytes.Buffer
	require.NoError(t, PrintJSON(&js, EntriesJSON(hostileEntries(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)))))
	testkit.Golden(t, "testdata/ls-hostile.json", js.String())
	var back []EntryJSON
	require.NoError(t, json.Unmarshal(js.Bytes(), &back))
	for i, e := range hostileEntries(time.Time{}) {
		name := back[i].Name
		if back[i].NameBytes != nil {
			name = string(back[i].NameBytes)
		}
		require.Equal(t, e.Name, name, "the exact name")
		require.Equal(t, e.LinkTarget, back[i].LinkTarget, "valid UTF-8, carried as text")
	}

	var restored bytes.Buffer
	res := datapath.FilesResult{Matched: []string{"a\x1b[2Jb", "caf\xe9"}}
	require.NoError(t, PrintRestored(&restored, Volume{Namespace: "app", PVC: "data", Backup: "b1", SnapshotID: "s1"}, res, "/tmp/x"))
	require.Contains(t, restored.String(), `restored a\x1b[2Jb, caf\xe9 of app/data`)
	rj := RestoredJSON(Volume{}, "/tmp/x", res)
	require.Equal(t, [][]byte{[]byte("a\x1b[2Jb"), []byte("caf\xe9")}, rj.MatchedBytes)
	var plain bytes.Buffer
	require.NoError(t, PrintJSON(&plain, RestoredJSON(Volume{}, "/tmp/x", datapath.FilesResult{Matched: []string{"ok"}})))
	require.NotContains(t, plain.String(), "matchedBytes")
	require.Contains(t, plain.String(), `"restored": {`)
	require.Contains(t, plain.String(), `"matched": [`)

	var verified bytes.Buffer
	require.NoError(t, PrintVerifications(&verified, []Verification{{Volume: Volume{Namespace: "app", PVC: "data"},
		Summary: "snapshot s1 failed verification (full): evil\x1b[2J\u009b: reading bytes 0-3: content missing"}}))
	require.Contains(t, verified.String(), `evil\x1b[2J\xc2\x9b: reading`)

	var report bytes.Buffer
	require.NoError(t, PrintReport(&report, &Report{Backup: "b1", PVCs: []Protection{{Namespace: "app", PVC: "data", Status: StatusFailed,
		Reason: "upload Failed: a\x1b[2J\nb"}}}))
	require.Contains(t, report.String(), `upload Failed: a\x1b[2J\nb`)
	require.NotContains(t, report.String(), "\x1b")
}

func TestPrintFormat(t *testing.T) {
	vols := []Volume{{Backup: "nightly", Namespace: "app", PVC: "data", SnapshotID: "k1", Phase: "Completed", DataMover: "snapmove", Files: 3}}
	for _, tc := range []struct {
		format string
		want   []string
	}{
		{FormatYAML, []string{"- backup: nightly\n", "  namespace: app\n", "  pvc: data\n", "  snapshotID: k1\n", "  dataMover: snapmove\n"}},
		{FormatJSON, []string{"[\n  {\n    \"backup\": \"nightly\",\n", "\"snapshotID\": \"k1\""}},
	} {
		t.Run(tc.format, func(t *testing.T) {
			require.NoError(t, CheckFormat(tc.format))
			var b bytes.Buffer
			require.NoError(t, PrintFormat(&b, tc.format, vols))
			for _, w := range tc.want {
				require.Contains(t, b.String(), w)
			}
		})
	}
	require.NoError(t, CheckFormat(FormatText))
	require.EqualError(t, CheckFormat("xml"), `-o "xml": want text, json or yaml`)
}
