package main

import (
	"bytes"
	"os"
	"testing"
)

// TestReport prints the report of testdata's rows (3 repetitions, one main-table step and a
// verification row and a compression metric missing, the many-files table once) and compares it
// with report.golden, which the awk and bash that bench.sh had before this program printed for them.
func TestReport(t *testing.T) {
	res, err := readRows("testdata/results.tsv")
	if err != nil {
		t.Fatal(err)
	}
	ext, err := readRows("testdata/extra.tsv")
	if err != nil {
		t.Fatal(err)
	}
	r := run{
		Results: "results.tsv", Logs: "/tmp/snapmove-bench/logs", Out: "/tmp/snapmove-bench",
		Reps: 3, Scale: "0.0625", FreshFS: true, Block: true,
		KopiaVersion: "0.21.1", CPUs: 2, CPUModel: "Intel(R) Xeon(R) CPU @ 2.20GHz",
		LoadStart: "0.50 0.40 0.30", LoadEnd: "1.20 0.90 0.70",
		Compressors: []string{"none", "zstd"}, VerifyCost: true, Resume: true, ManyFiles: 125000,
	}
	var got bytes.Buffer
	report(&got, r, res, ext)
	want, err := os.ReadFile("testdata/report.golden")
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("report differs from testdata/report.golden; got:\n%s", got.String())
	}
}

func TestReportSkipsTheTablesTurnedOff(t *testing.T) {
	var got bytes.Buffer
	report(&got, run{Reps: 1, Scale: "1", Out: "/o"}, nil, nil)
	want := `
snapmove vs kopia CLI , medians of 1 run(s), scale 1, warm page cache, restores to a directory of /o
`
	if g := got.String(); len(g) < len(want) || g[:len(want)] != want {
		t.Errorf("got:\n%s", g)
	}
	for _, s := range []string{"Compression", "Verification", "Resume", "Many small files", "block (vs large)"} {
		if bytes.Contains(got.Bytes(), []byte(s)) {
			t.Errorf("%q printed although turned off:\n%s", s, got.String())
		}
	}
}

func TestMedianAndFormats(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, "-"},
		{[]string{"0.210"}, "0.210"},                // as written
		{[]string{"3", "1.50", "2"}, "2"},           // numeric order
		{[]string{"10", "9"}, "9.5"},                // the mean of the middle two
		{[]string{"1999999", "2000001"}, "2000000"}, // integral: an integer, as awk prints it
		{[]string{"0.1", "0.2"}, "0.15"},            // %.6g
		{[]string{"1", "2", "3", "4.123456789"}, "2.5"},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct{ got, want string }{
		{num("-", "%.2f"), "-"},
		{num("", "%.0f"), "-"},
		{num("2147483648", "%.0f"), "2147483648"},
		{num("0.5", "%g"), "0.5"},
		{num("30", "%g"), "30"},
		{ratio("2", "1"), "0.50"},
		{ratio("0", "1"), "-"},
		{ratio("-", "1"), "-"},
		{pct("1", "0.00"), "-"},
		{pct("1", "3"), "33.3"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
