//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	veleroclient "github.com/vmware-tanzu/velero/pkg/client"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"
)

// stack is what hack/stack/up.sh exported in $STACK_RUN/env.
type stack struct {
	c            crclient.Client
	veleroNS     string
	velero       string // velero CLI
	kopia        string // kopia CLI, same module version snapmove links
	run          string
	csiStateDir  string
	csiDriver    string
	storageClass string
	snapClass    string
	s3Endpoint   string
	bucket       string
	bslPrefix    string
	accessKey    string
	secretKey    string
}

var env *stack

func TestMain(m *testing.M) {
	s, err := newStack()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n(start the stack first: make stack-up; then source $STACK_RUN/env)\n", err)
		os.Exit(2)
	}
	env = s
	logs := filepath.Join(os.TempDir(), "snapmove-e2e-pods")
	if run := os.Getenv("STACK_RUN"); run != "" {
		logs = filepath.Join(run, "logs", "pods")
	}
	_ = os.RemoveAll(logs) // an earlier run's
	logCtx, stopLogs := context.WithCancel(context.Background())
	go keepPodLogs(logCtx, logs)
	fmt.Fprintf(os.Stderr, "e2e: the pods' logs are kept in %s\n", logs)
	code := m.Run()
	stopLogs()
	if code == 0 {
		code = s.checkNothingLeft()
	}
	os.Exit(code)
}

// checkNothingLeft is the suite's last check: once every test has passed, and with it
// each test's own leftover check, nothing of any test is left in the cluster either
// (an object named after no test's namespace would escape the tests' checks).
func (s *stack) checkNothingLeft() int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	left, err := s.waitNoLeftovers(ctx, nil)
	if err != nil || len(left) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: after the suite: objects left behind: %v (%v)\n", left, err)
		return 1
	}
	return 0
}

// parallel marks a test that runs beside the others: it uses only namespaces, backups,
// restores and movements of its own, and changes nothing that another test relies on
// (Velero's setup, the mover's settings, RBAC or replicas, the object store, the
// repository password, snapshot classes). Tests that change any of these do not call it:
// Go runs them first, one at a time, then all parallel tests together (make e2e sets
// -parallel).
func parallel(t *testing.T) {
	parallelTests.Store(t.Name(), true)
	t.Parallel()
}

var parallelTests sync.Map // test name -> true, for requireSerial

// requireSerial fails a parallel test (or a subtest of one) that is about to change what
// the tests running beside it rely on; the reconfiguring helpers call it.
func requireSerial(t *testing.T) {
	t.Helper()
	for name := t.Name(); ; {
		if _, ok := parallelTests.Load(name); ok {
			t.Fatalf("%s runs in parallel (parallel(t)) and so may not reconfigure the stack", t.Name())
		}
		i := strings.LastIndex(name, "/")
		if i < 0 {
			return
		}
		name = name[:i]
	}
}

func newStack() (*stack, error) {
	get := func(k string) (string, error) {
		v := os.Getenv(k)
		if v == "" {
			return "", fmt.Errorf("environment variable %s is not set", k)
		}
		return v, nil
	}
	s := &stack{}
	for k, dst := range map[string]*string{
		"VELERO_NAMESPACE": &s.veleroNS, "VELERO": &s.velero, "KOPIA": &s.kopia, "STACK_RUN": &s.run,
		"CSI_STATEDIR": &s.csiStateDir, "CSI_DRIVER": &s.csiDriver, "STORAGE_CLASS": &s.storageClass, "SNAPSHOT_CLASS": &s.snapClass,
		"S3_ENDPOINT": &s.s3Endpoint, "BUCKET": &s.bucket, "BSL_PREFIX": &s.bslPrefix,
		"AWS_ACCESS_KEY_ID": &s.accessKey, "AWS_SECRET_ACCESS_KEY": &s.secretKey,
	} {
		v, err := get(k)
		if err != nil {
			return nil, err
		}
		*dst = v
	}
	c, err := veleroclient.NewFactory("snapmove-e2e", veleroclient.VeleroConfig{}).KubebuilderClient()
	if err != nil {
		return nil, err
	}
	s.c = c
	return s, nil
}

// testTimeout bounds the API calls of one test; polls have their own, shorter timeouts.
const testTimeout = 20 * time.Minute

var (
	testCtxMu sync.Mutex
	testCtxs  = map[*testing.T]context.Context{}
)

// ctxT returns the test's context: made on the test's first call with testTimeout, the
// same one for every later call (poll loops included), cancelled when the test ends.
// Subtests get their own. Cleanups use context.Background(): they may outlive it.
func ctxT(t *testing.T) context.Context {
	testCtxMu.Lock()
	defer testCtxMu.Unlock()
	if ctx, ok := testCtxs[t]; ok {
		return ctx
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	testCtxs[t] = ctx
	t.Cleanup(func() {
		cancel()
		testCtxMu.Lock()
		delete(testCtxs, t)
		testCtxMu.Unlock()
	})
	return ctx
}

// repoRoot is the repository checkout the suite runs from (test/e2e/../..).
func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}
