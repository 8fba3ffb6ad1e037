package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite docs/settings.md from Config")

// referencePath is the settings reference, generated from Config's fields, their doc
// comments and Default(): it cannot drift from the code.
const referencePath = "../../../docs/settings.md"

// TestSettingsReference keeps docs/settings.md what Config says: every key the mover
// accepts, its default as the ConfigMap writes it, and its field's doc comment.
// Regenerate with `go test ./internal/mover/config/ -run TestSettingsReference -update`.
func TestSettingsReference(t *testing.T) {
	docs := fieldDocs(t)
	def, err := json.Marshal(Default())
	require.NoError(t, err)
	defaults := map[string]json.RawMessage{}
	require.NoError(t, json.Unmarshal(def, &defaults))

	var b bytes.Buffer
	b.WriteString("<!-- Generated from internal/mover/config (Config, Default) by\n" +
		"     go test ./internal/mover/config/ -run TestSettingsReference -update; do not edit. -->\n")
	b.WriteString("# Mover settings\n\n")
	b.WriteString("The optional ConfigMap `snapmove-mover` in Velero's namespace sets the mover's settings, one key a\n" +
		"setting, each value in YAML. A key it does not know, or a value that cannot work, is refused: new\n" +
		"movements wait with the error in their `status.message` (and an Event), and movements already claimed\n" +
		"keep the last valid settings. A change applies to movements claimed after it.\n\n")
	b.WriteString("| key | default | meaning |\n|---|---|---|\n")
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		f := typ.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		doc := docs[f.Name]
		require.NotEmpty(t, doc, "Config.%s has no doc comment: the reference would say nothing of %s", f.Name, key)
		doc = keysFor(typ).Replace(doc)
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", key, defaultText(t, defaults[key]), doc)
	}
	if *update {
		require.NoError(t, os.WriteFile(referencePath, b.Bytes(), 0o644))
	}
	got, err := os.ReadFile(referencePath)
	require.NoError(t, err, "run the test with -update")
	require.Equal(t, b.String(), string(got), "docs/settings.md is not what Config says: run `go test ./internal/mover/config/ -run TestSettingsReference -update`")
}

// defaultText is a default as the ConfigMap's value writes it (YAML, on one line).
func defaultText(t *testing.T, raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" || string(raw) == `""` || string(raw) == "{}" {
		return "(none)"
	}
	y, err := yaml.JSONToYAML(raw)
	require.NoError(t, err)
	s := strings.TrimSpace(string(y))
	if strings.Contains(s, "\n") { // a structure: its JSON is one line
		s = string(raw)
	}
	return "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
}

// keysFor replaces the Go names of Config's fields, as words, with their keys: the
// reference speaks of what users write.
func keysFor(typ reflect.Type) *strings.Replacer {
	var pairs []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		for _, end := range []string{" ", ":", ",", ".", ";", ")"} {
			pairs = append(pairs, f.Name+end, "`"+key+"`"+end)
		}
	}
	return strings.NewReplacer(pairs...)
}

// fieldDocs are the doc comments of Config's fields in config.go, each on one line.
func fieldDocs(t *testing.T) map[string]string {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "config.go", nil, parser.ParseComments)
	require.NoError(t, err)
	docs := map[string]string{}
	ast.Inspect(file, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "Config" {
			return true
		}
		for _, f := range ts.Type.(*ast.StructType).Fields.List {
			if f.Doc == nil {
				continue
			}
			text := strings.Join(strings.Fields(f.Doc.Text()), " ")
			for _, name := range f.Names {
				docs[name.Name] = strings.ReplaceAll(text, "|", `\|`)
			}
		}
		return false
	})
	return docs
}
