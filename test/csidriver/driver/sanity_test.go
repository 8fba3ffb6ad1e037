package driver

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// sanityAccessTypeEnv selects the access type ("mount" or "block") of a sanity child run.
const sanityAccessTypeEnv = "CSIDRIVER_SANITY_ACCESS_TYPE"

var (
	sanitySummary    = regexp.MustCompile(`(?m)^(Ran \d+ of \d+ Specs.*|(SUCCESS|FAIL)! -- .*)$`)
	sanitySkipReason = regexp.MustCompile(`(?m)^  \[SKIPPED\] ([A-Z].*)$`)
)

// TestSanity runs the csi-sanity suite (csi-test v5) against the driver twice: with
// filesystem volumes and with block volumes. Ginkgo allows one RunSpecs per process,
// so each run re-executes this test binary as TestSanityChild.
func TestSanity(t *testing.T) {
	if os.Getenv(sanityAccessTypeEnv) != "" {
		t.Skip("this process is a sanity child")
	}
	requireRoot(t)
	for _, accessType := range []string{"mount", "block"} {
		t.Run(accessType, func(t *testing.T) {
			if accessType == "block" {
				if reason := loopUnavailable(); reason != "" {
					t.Skip("block volumes need loop devices: " + reason)
				}
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestSanityChild$", "-test.v", "-test.timeout=20m",
				"-ginkgo.v", "-ginkgo.no-color")
			cmd.Env = append(os.Environ(), sanityAccessTypeEnv+"="+accessType)
			out, err := cmd.CombinedOutput()
			// Specs skip only for capabilities the driver does not advertise; list why.
			skips := map[string]int{}
			for _, m := range sanitySkipReason.FindAllStringSubmatch(string(out), -1) {
				skips[m[1]]++
			}
			for _, reason := range slices.Sorted(maps.Keys(skips)) {
				t.Logf("csi-sanity (%s volumes): skipped %d: %s", accessType, skips[reason], reason)
			}
			for _, line := range sanitySummary.FindAllString(string(out), -1) {
				t.Logf("csi-sanity (%s volumes): %s", accessType, line)
			}
			require.NoError(t, err, "csi-sanity with %s volumes failed:\n%s", accessType, out)
		})
	}
}

// TestSanityChild is the body of one TestSanity run; it does nothing on its own.
func TestSanityChild(t *testing.T) {
	accessType := os.Getenv(sanityAccessTypeEnv)
	if accessType == "" {
		t.Skip("run by TestSanity only")
	}
	dir := t.TempDir()
	d := newTestDriver(t, dir)
	sock := filepath.Join(dir, "csi.sock")
	serve(t, d, sock)

	cfg := sanity.NewTestConfig()
	cfg.TargetPath = filepath.Join(dir, "target")   // sanity creates and removes this parent
	cfg.StagingPath = filepath.Join(dir, "staging") // unused: no STAGE_UNSTAGE_VOLUME
	cfg.TestVolumeAccessType = accessType

	// This is sanity.Test, except for the connection. csi-test's utils.Connect loops on
	// conn.WaitForStateChange(ctx, conn.GetState()) and so waits out its one-minute
	// timeout ("Connection timed out") whenever a unix socket is READY before its first
	// GetState: it failed about one run in three here. The suite connects only while
	// TestContext.Conn is nil or Config.Address differs from the address it connected
	// to, so with Address (and ControllerAddress) left empty it uses the connection
	// handed to it.
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	sc := sanity.GinkgoTest(&cfg)
	sc.Conn, sc.ControllerConn = conn, conn
	gomega.RegisterFailHandler(ginkgo.Fail)
	ginkgo.RunSpecs(t, "CSI Driver Test Suite")
	sc.Finalize()

	mounts, loops := leftovers(t, dir)
	require.Empty(t, mounts, "mounts left behind by the sanity run")
	require.Empty(t, loops, "loop devices left behind by the sanity run")
}
