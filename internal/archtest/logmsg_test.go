package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// The rule: a log message starts with a lower-case letter ("accepted", "canceling
// DataUpload"), unless its first word is an identifier or a proper name: a CamelCase
// Kubernetes kind or Go identifier (DataUpload, VolumeSnapshotContent), an acronym (PVC,
// CSI, BSL), or one of properNames. Messages are logfmt values next to lower-case keys, and
// errors.Wrap texts, which end up after a colon, are lower-case too.
var properNames = map[string]bool{
	// Kubernetes kinds that are one word
	"Pod": true, "Node": true, "Secret": true, "Namespace": true, "Event": true, "Job": true, "Deployment": true,
	// names
	"Velero": true, "Kubernetes": true, "Go": true, "Linux": true,
}

// logMethods are logrus's (FieldLogger, Entry, Logger, package functions) message methods.
var logMethods = map[string]bool{
	"Trace": true, "Tracef": true, "Debug": true, "Debugf": true, "Info": true, "Infof": true,
	"Print": true, "Printf": true, "Warn": true, "Warnf": true, "Warning": true, "Warningf": true,
	"Error": true, "Errorf": true, "Fatal": true, "Fatalf": true, "Panic": true, "Panicf": true,
}

func TestLogMessagesStartLowerCase(t *testing.T) {
	root := moduleRoot(t)
	fset := token.NewFileSet()
	var files int
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); path != root && err == nil {
				return filepath.SkipDir // another module (test/csidriver, hack/tools)
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		rel, _ := filepath.Rel(root, path)
		for _, c := range capitalisedLogCalls(f) {
			pos := fset.Position(c.pos)
			t.Errorf("%s:%d: log message %q starts with a capital: write %q", rel, pos.Line, c.msg, lowerFirst(c.msg))
		}
		return nil
	})
	require.NoError(t, err)
	require.NotZero(t, files, "no Go files found under %s", root)
	if t.Failed() {
		t.Logf("log messages start with a lower-case letter; capitals only for identifiers (DataUpload), acronyms (PVC) and %s",
			strings.Join(slices.Sorted(maps.Keys(properNames)), ", "))
	}
}

// TestCapitalisedLogCalls pins what counts as a log call and as a capitalised message.
func TestCapitalisedLogCalls(t *testing.T) {
	src := `package p
func f() {
	log.Info("Created DataUpload")                      // flagged
	log.WithField("a", 1).Infof("Skipping PVC: %s", x)  // flagged: a With* chain is a logger
	r.log.WithError(err).Warn("Closing " + "repository") // flagged: leftmost literal
	s.Log.Debugf("Starting")                            // flagged
	entry.Error("Could not back up")                    // flagged: logrus.Entry
	logrus.Warnf("Unknown phase")                       // flagged
	log.Info("accepted")                                // lower case
	log.Info("DataUpload is gone")                      // an identifier
	log.Info("PVC is gone")                             // an acronym
	log.Info("Velero runs")                             // a proper name
	log.Infof("%s done", x)                             // no word
	log.Info(msg)                                       // not a literal
	errors.Errorf("Something")                          // not a logger
	fmt.Errorf("Something")                             // not a logger
	t.Errorf("Something")                               // not a logger
	catalog.Print("X")                                  // one letter: no lower-case second
}`
	f, err := parser.ParseFile(token.NewFileSet(), "p.go", src, 0)
	require.NoError(t, err)
	var got []string
	for _, c := range capitalisedLogCalls(f) {
		got = append(got, c.msg)
	}
	require.Equal(t, []string{"Created DataUpload", "Skipping PVC: %s", "Closing ", "Starting", "Could not back up", "Unknown phase"}, got)
}

type logCall struct {
	pos token.Pos
	msg string
}

// capitalisedLogCalls finds calls of a logrus message method on something that looks like
// a logger (a name containing "log", an "entry", or a With* chain) whose message is a
// string literal (or a sum starting with one) that starts with a capital followed by a
// lower-case letter, and whose first word is no identifier or proper name.
func capitalisedLogCalls(f *ast.File) []logCall {
	var out []logCall
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || !logMethods[sel.Sel.Name] || !looksLikeLogger(sel.X) {
			return true
		}
		lit := leftmostString(call.Args[0])
		if lit == nil {
			return true
		}
		msg, err := strconv.Unquote(lit.Value)
		if err != nil || !capitalised(msg) {
			return true
		}
		out = append(out, logCall{pos: lit.Pos(), msg: msg})
		return true
	})
	return out
}

func looksLikeLogger(x ast.Expr) bool {
	switch x := x.(type) {
	case *ast.Ident:
		return loggerName(x.Name)
	case *ast.SelectorExpr:
		return loggerName(x.Sel.Name)
	case *ast.CallExpr:
		if sel, ok := x.Fun.(*ast.SelectorExpr); ok {
			switch sel.Sel.Name {
			case "WithField", "WithFields", "WithError", "WithContext", "WithTime":
				return true
			}
		}
	}
	return false
}

func loggerName(name string) bool {
	n := strings.ToLower(name)
	return strings.Contains(n, "log") || strings.HasSuffix(n, "entry")
}

func leftmostString(e ast.Expr) *ast.BasicLit {
	for {
		switch x := e.(type) {
		case *ast.BasicLit:
			if x.Kind == token.STRING {
				return x
			}
			return nil
		case *ast.BinaryExpr:
			e = x.X
		case *ast.ParenExpr:
			e = x.X
		default:
			return nil
		}
	}
}

// capitalised: the message starts with a capital and a lower-case letter, and its first
// word is neither CamelCase (an identifier) nor a proper name.
func capitalised(msg string) bool {
	word := msg
	if i := strings.IndexFunc(msg, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' }); i >= 0 {
		word = msg[:i]
	}
	first, size := utf8.DecodeRuneInString(word)
	second, _ := utf8.DecodeRuneInString(word[size:])
	if !unicode.IsUpper(first) || !unicode.IsLower(second) {
		return false
	}
	if strings.IndexFunc(word[size:], unicode.IsUpper) >= 0 {
		return false // DataUpload, VolumeSnapshotContent, RunWorker
	}
	return !properNames[word]
}

func lowerFirst(s string) string {
	r, size := utf8.DecodeRuneInString(s)
	return string(unicode.ToLower(r)) + s[size:]
}
