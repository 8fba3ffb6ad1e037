package doctor

import (
	"context"
	"fmt"
	"time"

	"github.com/pkg/errors"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/velerosrv"
)

// Status is the outcome of one check.
type Status string

// The outcomes: a warning does not fail the report.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Check is the outcome of one check: what was found, and for a warning or failure what
// to do about it.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Report is every check, in the order they ran. OK is false when one failed.
type Report struct {
	Checks []Check `json:"checks"`
	OK     bool    `json:"ok"`
}

// Failed returns the names of the failed checks.
func (r Report) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if c.Status == Fail {
			out = append(out, c.Name)
		}
	}
	return out
}

// Options are what Run needs besides the client.
type Options struct {
	// Namespace is Velero's namespace.
	Namespace string
	// PluginTimeout is how long to wait for Velero's server to answer the
	// ServerStatusRequest (default 30s), polled every PluginPoll (default 500ms).
	PluginTimeout, PluginPoll time.Duration
}

// The defaults of Options.
const (
	DefaultPluginTimeout = 30 * time.Second
	DefaultPluginPoll    = 500 * time.Millisecond
)

// check is one check: it reads through env and returns its outcome (Name is set by Run).
type check struct {
	name string
	run  func(ctx context.Context, e *env) Check
}

// checks are run in this order.
var checks = []check{
	{"snapshotCRDs", snapshotCRDs},
	{"snapshotClasses", snapshotClasses},
	{"veleroServer", veleroServer},
	{"pluginRegistered", pluginRegistered},
	{"moverReady", moverReady},
	{"credentials", credentials},
	{"storageLocations", storageLocations},
	{"repositoryPassword", repositoryPassword},
}

// Names are the names of the checks, in the order Run runs them.
func Names() []string {
	out := make([]string, len(checks))
	for i, c := range checks {
		out[i] = c.name
	}
	return out
}

// env is what the checks share: the client, the options, and Velero's server as
// discovered once.
type env struct {
	c    client.Client
	ns   string
	opts Options

	discovered bool
	srv        velerosrv.Server
	srvErr     error
}

// server is Velero's server (velerosrv.Discover), discovered on first use.
func (e *env) server(ctx context.Context) (velerosrv.Server, error) {
	if !e.discovered {
		e.srv, e.srvErr = velerosrv.Discover(ctx, e.c, e.ns)
		e.discovered = true
	}
	return e.srv, e.srvErr
}

// Run runs every check against the cluster c reads and returns their outcomes. It never
// fails as a whole: a check that cannot read what it needs fails alone, saying why.
// c must know apiextensions.k8s.io/v1 (AddToScheme) besides snapmove's usual types.
func Run(ctx context.Context, c client.Client, opts Options) Report {
	if opts.PluginTimeout <= 0 {
		opts.PluginTimeout = DefaultPluginTimeout
	}
	if opts.PluginPoll <= 0 {
		opts.PluginPoll = DefaultPluginPoll
	}
	e := &env{c: c, ns: opts.Namespace, opts: opts}
	r := Report{OK: true}
	for _, ch := range checks {
		res := runOne(ctx, e, ch)
		if res.Status == Fail {
			r.OK = false
		}
		r.Checks = append(r.Checks, res)
	}
	return r
}

// runOne runs ch; a panic (a bug) is ch's failure, not the end of the report.
func runOne(ctx context.Context, e *env, ch check) (res Check) {
	defer func() {
		if p := recover(); p != nil {
			res = Check{Status: Fail, Detail: fmt.Sprintf("the check panicked: %v", p), Fix: "report this as a bug of snapmove doctor"}
		}
		res.Name = ch.name
	}()
	return ch.run(ctx, e)
}

// AddToScheme adds what the doctor reads beyond snapmove's usual types: the
// CustomResourceDefinitions of apiextensions.k8s.io/v1.
func AddToScheme(s *runtime.Scheme) error {
	return errors.Wrap(apiextensionsv1.AddToScheme(s), "adding apiextensions.k8s.io/v1 to the scheme")
}
