package tree

import (
	"testing"

	"github.com/kopia/kopia/snapshot"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckNames(t *testing.T) {
	entries := func(names ...string) []*snapshot.DirEntry {
		var es []*snapshot.DirEntry
		for _, n := range names {
			es = append(es, &snapshot.DirEntry{Name: n})
		}
		return es
	}
	for _, tc := range []struct {
		names      []string
		unique     []string // nil: names
		collisions []Collision
		err        string
	}{
		{names: nil},
		{names: []string{"a", "b", "c"}},
		{names: []string{"c", "a", "b"}},
		{names: []string{"a", "a"}, unique: []string{}, collisions: []Collision{{Dir: "/t/d", Name: "a", Count: 2}}},
		{names: []string{"b", "a", "c", "a", "b", "a"}, unique: []string{"c"},
			collisions: []Collision{{Dir: "/t/d", Name: "b", Count: 2}, {Dir: "/t/d", Name: "a", Count: 3}}},
		{names: []string{"caf\uFFFD", "x", "caf\uFFFD"}, unique: []string{"x"}, collisions: []Collision{{Dir: "/t/d", Name: "caf\uFFFD", Count: 2}}},
		{names: []string{"a", ".."}, err: `refusing entry name ".." in /t/d`},
		{names: []string{"a", "a", ".."}, err: `refusing entry name ".." in /t/d`},
		{names: []string{"x/y"}, err: `refusing entry name "x/y"`},
		{names: []string{"nul\x00"}, err: `refusing entry name "nul\x00"`},
	} {
		unique, collisions, err := CheckNames(entries(tc.names...), "/t/d")
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, "%q", tc.names)
			continue
		}
		require.NoError(t, err, "%q", tc.names)
		want := tc.unique
		if want == nil {
			want = tc.names
		}
		got := []string{}
		for _, e := range unique {
			got = append(got, e.Name)
		}
		require.Equal(t, append([]string{}, want...), got, "%q", tc.names)
		require.Equal(t, tc.collisions, collisions, "%q", tc.names)
	}

	err := CollisionsError([]Collision{{Dir: "/t/b", Name: "x", Count: 2}, {Dir: "/t/a", Name: "caf\uFFFD", Count: 3}, {Dir: "/t/b", Name: "x", Count: 2}})
	require.EqualError(t, err, "restored everything but the entries of 2 colliding names (names that were not UTF-8 become one when the snapshot is written by Velero's node-agent or the kopia CLI): "+
		"/t/a holds 3 entries named \"caf\uFFFD\", none restored; /t/b holds 2 entries named \"x\", none restored")
	require.NoError(t, CollisionsError(nil))
}

func TestStoredNames(t *testing.T) {
	for _, tc := range []struct{ name, stored string }{
		{"plain.txt", "plain.txt"},
		{"ünïcødé名前", "ünïcødé名前"},
		{"100%", "100%"}, // valid and unmarked: as it is
		{"\xff\xfe-not-utf8", nameMarker + "%FF%FE-not-utf8"},
		{"\xff\xfd-not-utf8", nameMarker + "%FF%FD-not-utf8"},
		{"caf\xe9 100%", nameMarker + "caf%E9 100%25"},
		{"\xc3", nameMarker + "%C3"}, // a truncated sequence
		{nameMarker + "x", nameMarker + "\uFFFDsnapmove:x"},
		{"\uFFFD-already-a-replacement", "\uFFFD-already-a-replacement"},
	} {
		got := storedName(tc.name)
		assert.Equal(t, tc.stored, got, "storedName(%q)", tc.name)
		back, err := originalName(got)
		require.NoError(t, err)
		assert.Equal(t, tc.name, back, "originalName(%q)", got)
	}
	for _, bad := range []string{
		nameMarker + "%F", nameMarker + "%GG", nameMarker + "%ff", // malformed escapes
		nameMarker + "plain",      // would have been stored unmarked
		nameMarker + "%41",        // 'A' needs no escape
		nameMarker + "%2F%2Fx%00", // decodes to "//x\x00": not written by a backup
	} {
		_, err := originalName(bad)
		assert.Error(t, err, "originalName(%q)", bad)
	}
}
