package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	sm     = "github.com/snapmove/snapmove/" // this module, as a prefix
	csiMod = "github.com/snapmove/snapmove/test/csidriver/"
	kopia  = "github.com/kopia/kopia/..."
	velero = "github.com/vmware-tanzu/velero/..."
)

// rule is one sentence of a doc.go (or of the house style) about imports, as a predicate.
type rule struct {
	says   string              // the rule, as the failure names it
	source string              // where it is written
	from   func(string) bool   // the packages it constrains (import paths)
	tests  bool                // their _test.go files too
	direct bool                // only what they import themselves; otherwise all they depend on
	forbid func(p string) bool // what they must not import or depend on
}

// mainRules are the rules for this module's packages. The graph is needed for what cannot
// be written as a pattern: which packages are the standard library, and which of Velero's
// packages use kopia.
func mainRules(g *graph) []rule {
	kopiaOrVeleroKopia := or(match(kopia), g.veleroUsingKopia)
	return []rule{{
		says:   "internal/plugin does not import internal/mover",
		source: "internal/plugin/doc.go (It must not import internal/mover); docs/style.md (never import each other)",
		from:   match(sm + "internal/plugin/..."), tests: true,
		forbid: match(sm + "internal/mover/..."),
	}, {
		says:   "internal/mover does not import internal/plugin",
		source: "internal/mover/doc.go (Nothing here imports internal/plugin); docs/style.md (never import each other)",
		from:   match(sm + "internal/mover/..."), tests: true,
		forbid: match(sm + "internal/plugin/..."),
	}, {
		says: "only internal/mover/kopia/... imports kopia and Velero's kopia-using packages",
		source: "internal/mover/kopia/doc.go (the only packages that import kopia (and Velero's kopia-using packages)); " +
			"docs/style.md (only internal/mover/kopia imports kopia)",
		from: except(match(sm+"..."), sm+"internal/mover/kopia"), tests: true, direct: true,
		forbid: kopiaOrVeleroKopia,
	}, {
		says:   "only internal/mover/connect opens repositories with internal/mover/kopia/...",
		source: "internal/mover/doc.go (connect: the one path from a BackupStorageLocation to an open repository)",
		from:   except(match(sm+"..."), sm+"internal/mover/kopia", sm+"internal/mover/connect"), direct: true,
		forbid: match(sm + "internal/mover/kopia/..."),
	}, {
		says:   "internal/mover/connect does not import internal/mover/worker",
		source: "internal/mover/connect/doc.go (It returns datapath.Repository and does not import worker, which sits above it)",
		from:   match(sm + "internal/mover/connect"), tests: true,
		forbid: match(sm + "internal/mover/worker"),
	}, {
		says:   "plugin mode stays small: internal/plugin does not depend on kopia",
		source: "internal/plugin/delete/doc.go (the plugin process cannot reach the repository itself (only the mover links kopia))",
		from:   match(sm + "internal/plugin/..."), tests: true,
		forbid: match(kopia),
	}, {
		says:   "internal/mover/velerosrv imports no other snapmove package and does not depend on kopia",
		source: "internal/mover/velerosrv/doc.go (it creates nothing, builds no pod and imports no other mover package)",
		from:   match(sm + "internal/mover/velerosrv"), tests: true,
		forbid: or(match(sm+"..."), match(kopia)),
	}, {
		says:   "internal/doctor does not import internal/plugin and does not depend on kopia",
		source: "internal/doctor/doc.go (It must not import internal/plugin (the plugin process) nor depend on kopia)",
		from:   match(sm + "internal/doctor"), tests: true,
		forbid: or(match(sm+"internal/plugin/..."), match(kopia)),
	}, {
		says:   "internal/mover/controller does not depend on kopia",
		source: "internal/mover/controller/doc.go (The package moves no bytes and does not import kopia)",
		from:   match(sm + "internal/mover/controller"), tests: true,
		forbid: match(kopia),
	}, {
		says:   "internal/mover/worker does not depend on kopia",
		source: "internal/mover/worker/doc.go (It reaches the repository only through the Opener interface ..., so it does not import kopia)",
		from:   match(sm + "internal/mover/worker"), tests: true,
		forbid: match(kopia),
	}, {
		says:   "internal/mover/repository does not depend on kopia",
		source: "internal/mover/repository/doc.go (It must not import kopia)",
		from:   match(sm + "internal/mover/repository"), tests: true,
		forbid: match(kopia),
	}, {
		says:   "internal/mover/repository does not depend on an object storage client",
		source: "internal/mover/repository/doc.go (must not talk to object storage)",
		from:   match(sm + "internal/mover/repository"),
		forbid: match("github.com/minio/minio-go/...", "cloud.google.com/go/storage/...",
			"github.com/Azure/azure-sdk-for-go/sdk/storage/...", "github.com/aws/aws-sdk-go/...",
			"github.com/aws/aws-sdk-go-v2/service/s3/..."),
	}, {
		says:   "internal/mover/kopia/... knows no Kubernetes objects and no flags",
		source: "internal/mover/kopia/doc.go (They must not know about Kubernetes objects, read the environment or flags)",
		from:   match(sm + "internal/mover/kopia/..."), direct: true,
		forbid: match("k8s.io/...", "sigs.k8s.io/...", "github.com/vmware-tanzu/velero/pkg/apis/...",
			"flag", "github.com/spf13/pflag", "github.com/spf13/cobra"),
	}, {
		says:   "internal/mover/snapmeta makes no Kubernetes API calls and does not depend on kopia",
		source: "internal/mover/snapmeta/doc.go (this package makes no Kubernetes API calls (it does not import client-go or controller-runtime) and does not import kopia)",
		from:   match(sm + "internal/mover/snapmeta"), tests: true,
		forbid: or(match("k8s.io/client-go/...", "sigs.k8s.io/controller-runtime/..."), match(kopia)),
	}, {
		says:   "internal/mover/datapath imports only the standard library",
		source: "internal/mover/datapath/doc.go (It must stay a leaf: only the standard library)",
		from:   match(sm + "internal/mover/datapath"), direct: true,
		forbid: g.nonStandard,
	}, {
		says:   "internal/naming imports no snapmove package and does not depend on kopia",
		source: "internal/naming/doc.go (It must stay small and free of behaviour: ... no kopia); docs/style.md (the only package plugin and mover share)",
		from:   match(sm + "internal/naming"),
		forbid: or(match(sm+"..."), match(kopia)),
	}, {
		says:   "internal/naming does no logging and no API calls",
		source: "internal/naming/doc.go (no API calls, no kopia, no logging)",
		from:   match(sm + "internal/naming"), direct: true,
		forbid: match("github.com/sirupsen/logrus", "log", "log/slog", "k8s.io/klog/...", "github.com/go-logr/...",
			"k8s.io/client-go/...", "sigs.k8s.io/controller-runtime/..."),
	}, {
		says:   "internal/testkit imports no snapmove package",
		source: "internal/testkit/doc.go (It must stay a leaf: it imports no snapmove package)",
		from:   match(sm + "internal/testkit"),
		forbid: match(sm + "..."),
	}, {
		says:   "internal/testkit is imported only by tests",
		source: "internal/testkit/doc.go (It is imported only by _test.go files)",
		from:   match(sm + "..."), direct: true,
		forbid: match(sm + "internal/testkit"),
	}, {
		says: "internal/mover/kopia/kopiatest is imported only by tests: the shipped binary cannot run the zero-margin reclaim maintenance",
		source: "internal/mover/kopia/kopiatest/kopiatest.go (It is imported only by _test.go files); " +
			"internal/mover/kopia/kopiatest/maintain/maintain.go (the shipped binary must not be able to run it)",
		from:   except(match(sm+"..."), sm+"internal/mover/kopia/kopiatest"),
		forbid: match(sm + "internal/mover/kopia/kopiatest/..."),
	}, {
		says:   "test/datagen imports only the standard library",
		source: "test/datagen/doc.go (It uses the standard library only ... It must not import snapmove or kopia packages)",
		from:   match(sm + "test/datagen"), direct: true,
		forbid: g.nonStandard,
	}, {
		says:   "test/treecheck depends on no kopia and no snapmove package",
		source: "test/treecheck/doc.go (It must not import kopia or snapmove packages)",
		from:   match(sm + "test/treecheck"),
		forbid: or(match(kopia), match(sm+"...")),
	}}
}

// csiDriverRules are the rules for the test CSI driver's module (test/csidriver).
func csiDriverRules(*graph) []rule {
	return []rule{{
		says:   "the test CSI driver does not talk to the Kubernetes API",
		source: "test/csidriver/driver/doc.go (It must not talk to the Kubernetes API)",
		from:   match(csiMod + "driver"),
		forbid: match("k8s.io/client-go/...", "sigs.k8s.io/controller-runtime/..."),
	}}
}

func TestImportRules(t *testing.T) {
	root := moduleRoot(t)
	for _, m := range []struct {
		dir   string
		path  string
		tests bool
		rules func(*graph) []rule
	}{
		{dir: root, path: strings.TrimSuffix(sm, "/"), tests: true, rules: mainRules},
		{dir: filepath.Join(root, "test", "csidriver"), path: strings.TrimSuffix(csiMod, "/"), rules: csiDriverRules},
	} {
		g := load(t, m.dir, m.path, m.tests)
		for _, r := range m.rules(g) {
			t.Run(r.says, func(t *testing.T) {
				if len(g.subjects(r.from, r.tests)) == 0 {
					t.Logf("no package matches this rule (renamed or removed?)")
				}
				for _, v := range g.check(r) {
					t.Errorf("%s\n\tbreaks %q\n\tas written in %s", v, r.says, r.source)
				}
			})
		}
	}
}

// TestPluginAndMoverShareOnlyNaming: of this module's packages, only internal/naming may
// be a dependency of both a plugin package and a mover package (docs/style.md: "the only
// package plugin and mover share"); other modules (the standard library, Velero) do not
// count. Tests are exempt: internal/testkit is shared on purpose.
func TestPluginAndMoverShareOnlyNaming(t *testing.T) {
	g := load(t, moduleRoot(t), strings.TrimSuffix(sm, "/"), false)
	plugin := g.subjects(match(sm+"internal/plugin/..."), false)
	mover := g.subjects(match(sm+"internal/mover/..."), false)
	reach := func(from []*pkg) map[string]*pkg { // module package → one of from that depends on it
		m := map[string]*pkg{}
		for _, p := range from {
			for _, d := range p.Deps {
				if match(sm + "...")(d) {
					if _, ok := m[d]; !ok {
						m[d] = p
					}
				}
			}
		}
		return m
	}
	viaPlugin, viaMover := reach(plugin), reach(mover)
	for d, p := range viaPlugin {
		m, shared := viaMover[d]
		if !shared || d == sm+"internal/naming" {
			continue
		}
		is := func(x string) bool { return x == d }
		t.Errorf("%s is shared by plugin and mover:\n\t%s\n\t%s\n\tdocs/style.md: internal/naming is the only package plugin and mover share",
			short(d), g.chains(p, is, 1)[0], g.chains(m, is, 1)[0])
	}
}

// TestRulesCatch runs the rules over a made-up graph that breaks some of them, so that a
// rule that can no longer fail (a wrong pattern, a broken chain search) is noticed.
func TestRulesCatch(t *testing.T) {
	mod := &struct{ Path string }{Path: strings.TrimSuffix(sm, "/")}
	const (
		naming, datapath, csisnapshot = sm + "internal/naming", sm + "internal/mover/datapath", sm + "internal/csisnapshot"
		backup                        = sm + "internal/plugin/backup"
		backupTest                    = backup + " [" + backup + ".test]"
		kopiaRepo, veleroKopia        = "github.com/kopia/kopia/repo", "github.com/vmware-tanzu/velero/pkg/kopia"
	)
	g := newGraph(mod.Path, []*pkg{
		{ImportPath: "time", Standard: true},
		{ImportPath: kopiaRepo},
		{ImportPath: veleroKopia, Imports: []string{kopiaRepo}, Deps: []string{kopiaRepo}},
		{ImportPath: naming, Module: mod, Imports: []string{"time"}, Deps: []string{"time"}},
		{ImportPath: datapath, Module: mod, Imports: []string{"time", naming}, Deps: []string{"time", naming}},
		{ImportPath: csisnapshot, Module: mod, Imports: []string{veleroKopia}, Deps: []string{kopiaRepo, veleroKopia}},
		{ImportPath: backup, Module: mod, Imports: []string{csisnapshot, naming},
			Deps: []string{"time", kopiaRepo, veleroKopia, csisnapshot, naming}},
		{ImportPath: backupTest, ForTest: backup, Module: mod, Imports: []string{csisnapshot, datapath, naming},
			Deps: []string{"time", kopiaRepo, veleroKopia, csisnapshot, datapath, naming}},
	})
	var got []string
	for _, r := range mainRules(g) {
		for _, v := range g.check(r) {
			got = append(got, r.says+": "+v)
		}
	}
	require.ElementsMatch(t, []string{
		"internal/plugin does not import internal/mover: internal/plugin/backup → internal/mover/datapath",
		"only internal/mover/kopia/... imports kopia and Velero's kopia-using packages: " +
			"internal/csisnapshot imports github.com/vmware-tanzu/velero/pkg/kopia",
		"plugin mode stays small: internal/plugin does not depend on kopia: " +
			"internal/plugin/backup → internal/csisnapshot → github.com/vmware-tanzu/velero/pkg/kopia → github.com/kopia/kopia/repo",
		"internal/mover/datapath imports only the standard library: internal/mover/datapath imports internal/naming",
	}, got)
}

// pkg is what `go list -json` says of a package (the fields used here).
type pkg struct {
	ImportPath string // test variants carry a suffix: "p [p.test]"
	ForTest    string // set on test variants: the package under test
	Standard   bool
	Module     *struct{ Path string }
	Imports    []string // direct imports, as ImportPaths of this graph
	Deps       []string // everything it depends on, transitively
	Error      *struct{ Err string }
}

// graph is every package that `go list -e -deps [-test] ./...` printed for one module.
type graph struct {
	module   string
	pkgs     map[string]*pkg
	order    []*pkg // as printed: dependencies before their importers
	standard map[string]bool
	usesKop  map[string]bool // Velero packages that depend on kopia
}

func load(t *testing.T, dir, module string, tests bool) *graph {
	t.Helper()
	args := []string{"list", "-e", "-deps", "-json=ImportPath,ForTest,Standard,Module,Imports,Deps,Error"}
	if tests {
		args = append(args, "-test")
	}
	cmd := exec.Command("go", append(args, "./...")...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go %s in %s: %s", strings.Join(args, " "), dir, stderr.String())

	var pkgs []*pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := &pkg{}
		err := dec.Decode(p)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "decoding go list output")
		if p.Error != nil && p.Module != nil && p.Module.Path == module {
			// Not this test's business (go vet and the build report it), but deps may be missing.
			t.Logf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
	return newGraph(module, pkgs)
}

// newGraph indexes pkgs, listed dependencies first, as go list prints them.
func newGraph(module string, pkgs []*pkg) *graph {
	g := &graph{module: module, pkgs: map[string]*pkg{}, order: pkgs, standard: map[string]bool{}, usesKop: map[string]bool{}}
	isKopia, isVelero := match(kopia), match(velero)
	for _, p := range pkgs {
		g.pkgs[p.ImportPath] = p
		if p.Standard {
			g.standard[p.ImportPath] = true
		}
		if p.ForTest != "" || !isVelero(p.ImportPath) {
			continue
		}
		for _, d := range p.Deps {
			if isKopia(d) {
				g.usesKop[p.ImportPath] = true
				break
			}
		}
	}
	return g
}

func (g *graph) nonStandard(p string) bool      { return !g.standard[p] }
func (g *graph) veleroUsingKopia(p string) bool { return g.usesKop[p] }

// subjects are this module's packages that from matches, with their test variants
// ("p [p.test]" and "p_test [p.test]") if tests.
func (g *graph) subjects(from func(string) bool, tests bool) []*pkg {
	var out []*pkg
	for _, p := range g.order {
		if p.Module == nil || p.Module.Path != g.module || strings.HasSuffix(p.ImportPath, ".test") {
			continue
		}
		switch base := strip(p.ImportPath); {
		case p.ForTest == "":
			if from(p.ImportPath) {
				out = append(out, p)
			}
		case tests && (base == p.ForTest || base == p.ForTest+"_test"):
			if from(p.ForTest) {
				out = append(out, p)
			}
		}
	}
	return out
}

// check returns the violations of r, each once (a package and its test variant often
// break a rule the same way).
func (g *graph) check(r rule) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range g.subjects(r.from, r.tests) {
		for _, v := range g.violations(s, r) {
			if !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
	}
	return out
}

// violations are the import chains from s to what r forbids, one line each.
func (g *graph) violations(s *pkg, r rule) []string {
	forbid := func(p string) bool { return p != strip(s.ImportPath) && r.forbid(p) }
	if r.direct {
		var out []string
		for _, imp := range s.Imports {
			if forbid(strip(imp)) {
				out = append(out, short(strip(s.ImportPath))+" imports "+short(strip(imp)))
			}
		}
		return out
	}
	return g.chains(s, forbid, 3)
}

// chains returns up to max shortest import chains from s to packages that hit matches
// (not looking past them), and how many more there are.
func (g *graph) chains(s *pkg, hit func(string) bool, max int) []string {
	parent := map[string]string{s.ImportPath: ""}
	queue := []string{s.ImportPath}
	var found []string
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		p := g.pkgs[id]
		if p == nil {
			continue
		}
		for _, imp := range p.Imports {
			if _, seen := parent[imp]; seen {
				continue
			}
			parent[imp] = id
			if hit(strip(imp)) {
				found = append(found, imp)
				continue
			}
			queue = append(queue, imp)
		}
	}
	var out []string
	for i, f := range found {
		if i == max {
			out = append(out, fmt.Sprintf("(and %d more)", len(found)-max))
			break
		}
		var chain []string
		for id := f; id != ""; id = parent[id] {
			chain = append([]string{short(strip(id))}, chain...)
		}
		out = append(out, strings.Join(chain, " → "))
	}
	return out
}

// match reports whether an import path matches one of the patterns: "x/..." is x and
// everything below it, anything else an exact path.
func match(patterns ...string) func(string) bool {
	return func(p string) bool {
		for _, pat := range patterns {
			if prefix, ok := strings.CutSuffix(pat, "/..."); ok {
				if p == prefix || strings.HasPrefix(p, prefix+"/") {
					return true
				}
			} else if p == pat {
				return true
			}
		}
		return false
	}
}

// except is f, less the packages named (and their subpackages).
func except(f func(string) bool, paths ...string) func(string) bool {
	var pats []string
	for _, p := range paths {
		pats = append(pats, p+"/...")
	}
	not := match(pats...)
	return func(p string) bool { return f(p) && !not(p) }
}

func or(fs ...func(string) bool) func(string) bool {
	return func(p string) bool {
		for _, f := range fs {
			if f(p) {
				return true
			}
		}
		return false
	}
}

// strip drops a test variant's suffix: "p [q.test]" → "p".
func strip(id string) string {
	if i := strings.Index(id, " ["); i >= 0 {
		return id[:i]
	}
	return id
}

// short drops this module's prefix, for readable messages.
func short(p string) string { return strings.TrimPrefix(p, sm) }

// moduleRoot is the directory of this module's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	require.NoError(t, err, "go env GOMOD")
	gomod := strings.TrimSpace(string(out))
	require.NotEmpty(t, gomod, "not inside a module")
	return filepath.Dir(gomod)
}
