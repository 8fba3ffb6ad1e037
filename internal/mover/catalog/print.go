package catalog

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"sigs.k8s.io/yaml"

	"github.com/snapmove/snapmove/internal/mover/datapath"
)

// Output formats.
const (
	FormatText = "text"
	FormatJSON = "json"
	// FormatYAML is the JSON object as YAML (sigs.k8s.io/yaml: the same keys), as kubectl's -o yaml.
	FormatYAML = "yaml"
)

// CheckFormat accepts the -o values the commands take.
func CheckFormat(format string) error {
	switch format {
	case FormatText, FormatJSON, FormatYAML:
		return nil
	}
	return fmt.Errorf("-o %q: want text, json or yaml", format)
}

// PrintFormat writes v as format says: YAML for FormatYAML, indented JSON otherwise (the
// text formats are each command's own).
func PrintFormat(w io.Writer, format string, v any) error {
	if format == FormatYAML {
		return PrintYAML(w, v)
	}
	return PrintJSON(w, v)
}

// PrintYAML writes v as YAML with the keys of its JSON.
func PrintYAML(w io.Writer, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// PrintJSON writes v as indented JSON.
func PrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// PrintVolumes writes the table of `snapmove list`.
func PrintVolumes(w io.Writer, vols []Volume) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKUP\tVOLUME\tSTATUS\tSNAPSHOT\tSIZE\tNEW\tFILES\tCOMPLETED\tTOOK\tMOVER\tVERIFIED")
	for _, v := range vols {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			orDash(v.Backup), v.Key(), v.Phase, orDash(v.SnapshotID), humanBytes(v.TotalBytes), humanBytes(v.IncrementalBytes),
			count(v.Files), timeOrDash(v.Completed), duration(v.Duration()), v.DataMover, datapath.EscapeText(verified(v.Verification)))
	}
	return tw.Flush()
}

// PrintEntries writes an `ls -l` of a directory (or of one entry when children is nil
// and self is not a directory). Names and symlink targets are escaped as `ls -b` does
// (datapath.EscapeName).
func PrintEntries(w io.Writer, self datapath.Entry, children []datapath.Entry) error {
	list := children
	if !self.Mode.IsDir() {
		list = []datapath.Entry{self}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', tabwriter.AlignRight)
	for _, e := range list {
		name := datapath.EscapeName(e.Name)
		switch {
		case e.Mode.IsDir():
			name += "/"
		case e.Mode&fs.ModeSymlink != 0:
			name += " -> " + datapath.EscapeName(e.LinkTarget)
		}
		fmt.Fprintf(tw, "%s\t %d\t %d\t %d\t %s\t %s\n", ModeString(e.Mode), e.UID, e.GID, e.Size,
			FormatTime(e.ModTime), name)
	}
	return tw.Flush()
}

// EntryJSON is an entry as `-o json` writes it: the entry's fields, and the exact bytes
// of its name and symlink target (base64) when they are not valid UTF-8, which a JSON
// string cannot carry (encoding/json writes U+FFFD for each invalid byte). A reader that
// needs the name exactly takes NameBytes when it is there, Name otherwise.
type EntryJSON struct {
	Name      string `json:"name"`
	NameBytes []byte `json:"nameBytes,omitempty"`
	// Mode is the mode as ls prints it ("drwxr-sr-x", "-rwsr-xr-x"); Perm is its
	// permission bits with setuid, setgid and sticky, as chmod takes them ("4755").
	Mode            string    `json:"mode"`
	Perm            string    `json:"perm"`
	UID             uint32    `json:"uid"`
	GID             uint32    `json:"gid"`
	Size            int64     `json:"size"`
	ModTime         time.Time `json:"modTime"`
	LinkTarget      string    `json:"linkTarget,omitempty"`
	LinkTargetBytes []byte    `json:"linkTargetBytes,omitempty"`
}

// EntriesJSON is entries as `-o json` writes them.
func EntriesJSON(entries []datapath.Entry) []EntryJSON {
	out := make([]EntryJSON, len(entries))
	for i, e := range entries {
		out[i] = EntryJSON{Name: e.Name, NameBytes: exactBytes(e.Name), Mode: ModeString(e.Mode), Perm: chmodBits(e.Mode),
			UID: e.UID, GID: e.GID, Size: e.Size, ModTime: e.ModTime,
			LinkTarget: e.LinkTarget, LinkTargetBytes: exactBytes(e.LinkTarget)}
	}
	return out
}

// chmodBits is mode's permission bits with setuid (4), setgid (2) and sticky (1) in front,
// in octal as chmod takes them.
func chmodBits(mode fs.FileMode) string {
	special := 0
	if mode&fs.ModeSetuid != 0 {
		special |= 4
	}
	if mode&fs.ModeSetgid != 0 {
		special |= 2
	}
	if mode&fs.ModeSticky != 0 {
		special |= 1
	}
	return fmt.Sprintf("%d%03o", special, mode.Perm())
}

// Restored is what `restore-files -o json|yaml` writes: the volume, the target (a
// directory, or "PVC NAMESPACE/NAME"), the matched paths and what was restored, the
// exact bytes of each matched path (base64) when one is not valid UTF-8, and with
// --to-pvc the receiver pod's report.
type Restored struct {
	Volume       Volume   `json:"volume"`
	Target       string   `json:"target"`
	Matched      []string `json:"matched"`
	MatchedBytes [][]byte `json:"matchedBytes,omitempty"`
	// Restored counts the entries written, matched ones and everything beneath them.
	Restored TreeCounts `json:"restored"`
	Receiver string     `json:"receiver,omitempty"`
}

// TreeCounts is datapath.TreeCounts with lowerCamel JSON keys.
type TreeCounts struct {
	Files    int64 `json:"files"`
	Dirs     int64 `json:"dirs"`
	Symlinks int64 `json:"symlinks"`
	Bytes    int64 `json:"bytes"`
}

// RestoredJSON is what `restore-files -o json` writes of res, restored from v into target.
func RestoredJSON(v Volume, target string, res datapath.FilesResult) Restored {
	c := res.Restored
	out := Restored{Volume: v, Target: target, Matched: res.Matched,
		Restored: TreeCounts{Files: c.Files, Dirs: c.Dirs, Symlinks: c.Symlinks, Bytes: c.Bytes}}
	if out.Matched == nil {
		out.Matched = []string{}
	}
	for _, m := range res.Matched {
		if !utf8.ValidString(m) {
			out.MatchedBytes = make([][]byte, len(res.Matched))
			for i, m := range res.Matched {
				out.MatchedBytes[i] = []byte(m)
			}
			break
		}
	}
	return out
}

// exactBytes is s's bytes when s is not valid UTF-8, nil otherwise.
func exactBytes(s string) []byte {
	if utf8.ValidString(s) {
		return nil
	}
	return []byte(s)
}

// ModeString is mode as ls prints it ("drwxr-sr-x", "-rwsr-xr-x", "drwxrwxrwt").
func ModeString(mode fs.FileMode) string {
	b := []byte("----------")
	switch {
	case mode.IsDir():
		b[0] = 'd'
	case mode&fs.ModeSymlink != 0:
		b[0] = 'l'
	case mode&fs.ModeCharDevice != 0:
		b[0] = 'c'
	case mode&fs.ModeDevice != 0:
		b[0] = 'b'
	case mode&fs.ModeNamedPipe != 0:
		b[0] = 'p'
	case mode&fs.ModeSocket != 0:
		b[0] = 's'
	}
	const rwx = "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		if mode&(1<<uint(8-i)) != 0 {
			b[i+1] = rwx[i]
		}
	}
	special := func(pos int, set bool, lower, upper byte) {
		if !set {
			return
		}
		if b[pos] == '-' {
			b[pos] = upper
		} else {
			b[pos] = lower
		}
	}
	special(3, mode&fs.ModeSetuid != 0, 's', 'S')
	special(6, mode&fs.ModeSetgid != 0, 's', 'S')
	special(9, mode&fs.ModeSticky != 0, 't', 'T')
	return string(b)
}

// PrintRestored writes what `snapmove restore-files` restored.
func PrintRestored(w io.Writer, v Volume, res datapath.FilesResult, target string) error {
	matched := make([]string, len(res.Matched))
	for i, m := range res.Matched {
		matched[i] = datapath.EscapeName(m)
	}
	_, err := fmt.Fprintf(w, "restored %s of %s from backup %s (snapshot %s) to %s: %d files, %d directories, %d symlinks, %s\n",
		strings.Join(matched, ", "), v.Key(), v.Backup, v.SnapshotID, target,
		res.Restored.Files, res.Restored.Dirs, res.Restored.Symlinks, humanBytes(res.Restored.Bytes))
	return err
}

// PrintVerifications writes the outcome of `snapmove verify`.
func PrintVerifications(w io.Writer, vs []Verification) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKUP\tVOLUME\tSNAPSHOT\tRESULT\tDETAILS")
	for _, v := range vs {
		result := "OK"
		if !v.OK {
			result = "FAILED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", orDash(v.Volume.Backup), v.Volume.Key(), orDash(v.Volume.SnapshotID), result,
			datapath.EscapeText(strings.ReplaceAll(v.Summary, "\n", "; ")))
	}
	return tw.Flush()
}

// PrintReport writes the protection report of a backup.
func PrintReport(w io.Writer, r *Report) error {
	move := "default"
	if r.SnapshotMoveData != nil {
		move = fmt.Sprint(*r.SnapshotMoveData)
	}
	fmt.Fprintf(w, "Backup %s (%s), snapshotMoveData: %s\n", r.Backup, r.Phase, move)
	var parts []string
	for _, s := range []string{StatusMoved, StatusFSBackup, StatusSkipped, StatusFailed, StatusNotBackedUp, StatusInProgress} {
		if n := r.Counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	noun := "PVCs"
	if len(r.PVCs) == 1 {
		noun = "PVC"
	}
	fmt.Fprintf(w, "%d %s: %s\n\n", len(r.PVCs), noun, strings.Join(parts, ", "))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PVC\tSTATUS\tDETAILS")
	for _, p := range r.PVCs {
		details := p.Reason
		if p.Status == StatusMoved && p.Volume != nil {
			v := p.Volume
			details = fmt.Sprintf("snapshot %s, %s (%s new), took %s, %s", v.SnapshotID, humanBytes(v.TotalBytes),
				humanBytes(v.IncrementalBytes), duration(v.Duration()), verified(v.Verification))
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\n", p.Namespace, p.PVC, p.Status, datapath.EscapeText(details))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func count(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

func verified(v string) string {
	if v == "" {
		return "not verified"
	}
	return v
}

func duration(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.Round(time.Second).String()
}

// DescribeVerification says what a verification checked, in one line: "verified
// (metadata): 2500 files, 34 directories, 1.15 GB in 1.2s", with the content read back
// for the sample and full levels, and what was taken as verified in the parent ("(2490
// files and 30 directories of them as verified in the parent snapshot)"). It is the text a worker leaves in its result, which the
// DataUpload's verification annotation and `snapmove list` show, and `snapmove verify`'s
// summary.
func DescribeVerification(r datapath.VerifyResult) string {
	if r.Mode.Level == datapath.VerifyNone {
		return "not verified (verify: none)"
	}
	c := r.Checked
	var b strings.Builder
	fmt.Fprintf(&b, "verified (%s): %s, %s", r.Mode.String(), nounCount(c.Files, "file"), nounCount(c.Dirs, "directory"))
	if c.Symlinks > 0 {
		fmt.Fprintf(&b, ", %s", nounCount(c.Symlinks, "symlink"))
	}
	fmt.Fprintf(&b, ", %s", humanBytes(c.Bytes))
	if r.Mode.Level != datapath.VerifyMetadata {
		fmt.Fprintf(&b, "; content of %s (%s) read back", nounCount(r.FilesRead, "file"), humanBytes(r.BytesRead))
	}
	fmt.Fprintf(&b, " in %s", shortDuration(r.Duration))
	if s := r.Shared; s.Files > 0 || s.Dirs > 0 {
		fmt.Fprintf(&b, " (%s and %s of them as verified in the parent snapshot)", nounCount(s.Files, "file"), nounCount(s.Dirs, "directory"))
	}
	return b.String()
}

// nounCount is "1 file", "2 files", "1 directory", "2 directories".
func nounCount(n int64, noun string) string {
	switch {
	case n == 1:
	case strings.HasSuffix(noun, "y"):
		noun = strings.TrimSuffix(noun, "y") + "ies"
	default:
		noun += "s"
	}
	return fmt.Sprintf("%d %s", n, noun)
}

// HumanBytes is humanBytes, for the commands' progress lines.
func HumanBytes(n int64) string { return humanBytes(n) }

// FormatTime is how the commands print a time in text: RFC 3339 in the local zone, with
// its offset (2026-12-07T21:00:05Z, 2026-12-07T22:00:05+01:00), so that a time read on
// one machine means the same on another.
func FormatTime(t time.Time) string { return t.Local().Format(time.RFC3339) }

// humanBytes is n in decimal units with three significant digits ("1.15 GB", "999 B"),
// as Velero and kopia print sizes; negative is unknown ("-"). It is the one byte format
// of the commands and the mover's messages.
func humanBytes(n int64) string {
	if n < 0 {
		return "-"
	}
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	unit := ""
	for _, u := range []string{"kB", "MB", "GB", "TB", "PB", "EB"} {
		f /= 1000
		unit = u
		if f < 999.5 {
			break
		}
	}
	switch {
	case f < 9.995:
		return fmt.Sprintf("%.2f %s", f, unit)
	case f < 99.95:
		return fmt.Sprintf("%.1f %s", f, unit)
	}
	return fmt.Sprintf("%.0f %s", f, unit)
}

// shortDuration is d to the millisecond below a second, to a tenth of a second above.
func shortDuration(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
