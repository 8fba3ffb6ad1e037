package cmd

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmware-tanzu/velero/pkg/apis/velero/shared"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapmove/snapmove/internal/mover/catalog"
	"github.com/snapmove/snapmove/internal/mover/datapath"
	"github.com/snapmove/snapmove/internal/testkit"
)

// fakeClock is a clock that a test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }
func testProgress(tty bool) (*progress, *bytes.Buffer, *fakeClock) {
	var b bytes.Buffer
	clock := &fakeClock{t: time.Date(2026, 12, 7, 21, 0, 0, 0, time.UTC)}
	return &progress{w: &b, tty: tty, now: clock.now, every: plainEvery}, &b, clock
}

func TestProgress(t *testing.T) {
	t.Run("terminal: a bar redrawn in place, the line ended once", func(t *testing.T) {
		p, out, clock := testProgress(true)
		p.Transfer(datapath.Progress{BytesDone: 0, TotalBytes: 4_000_000})
		clock.advance(time.Second)
		p.Transfer(datapath.Progress{BytesDone: 1_000_000, TotalBytes: 4_000_000})
		p.Status("pod velero/x: Running")
		p.Done()
		p.Done()
		const second, status = "[######..................] 1.00 MB of 4.00 MB (25.0%)", "pod velero/x: Running"
		assert.Equal(t, "\r[........................] 0 B of 4.00 MB (0.0%)"+"\r"+second+
			"\r"+status+strings.Repeat(" ", len(second)-len(status))+"\n", out.String(), "a shorter line blanks the rest of the longer")
	})
	t.Run("elsewhere: a plain line every 5s once it has run that long, the last state at the end", func(t *testing.T) {
		p, out, clock := testProgress(false)
		for i := range 12 {
			p.Step(i, 12, "waiting")
			clock.advance(time.Second)
		}
		p.Bytes(2500, 0)
		p.Done()
		p.Done()
		assert.Equal(t, "5s: waiting\n10s: waiting\n12s: 2.50 kB\n", out.String())
	})
	t.Run("elsewhere: a quick command writes nothing", func(t *testing.T) {
		p, out, clock := testProgress(false)
		p.Step(0, 2, "0 of 2 volumes verified")
		clock.advance(4 * time.Second)
		p.Step(2, 2, "2 of 2 volumes verified")
		p.Done()
		assert.Empty(t, out.String())
	})
	t.Run("nothing shown: nothing written", func(t *testing.T) {
		for _, tty := range []bool{true, false} {
			p, out, _ := testProgress(tty)
			p.Done()
			assert.Empty(t, out.String())
		}
	})
	t.Run("names from the cluster are escaped", func(t *testing.T) {
		p, out, clock := testProgress(false)
		p.Status("pod \x1b[2Jx")
		clock.advance(plainEvery)
		p.Status("pod \x1b[2Jx")
		assert.Equal(t, "5s: pod \\x1b[2Jx\n", out.String())
	})
	t.Run("called from several goroutines", func(t *testing.T) {
		p, _, _ := testProgress(true)
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Add(1)
			go func() { defer wg.Done(); p.Bytes(int64(i), 4) }()
		}
		wg.Wait()
		p.Done()
	})
}

func TestWatchMovements(t *testing.T) {
	start := metav1.NewTime(time.Date(2026, 12, 7, 20, 59, 0, 0, time.UTC))
	du := &velerov2alpha1.DataUpload{ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: "du1", Labels: map[string]string{velerov1.BackupNameLabel: "b1"}},
		Spec: velerov2alpha1.DataUploadSpec{SourceNamespace: "app", SourcePVC: "data", DataMover: "snapmove"},
		Status: velerov2alpha1.DataUploadStatus{Phase: velerov2alpha1.DataUploadPhaseInProgress, StartTimestamp: &start, Node: "node-1",
			Progress: shared.DataMoveOperationProgress{BytesDone: 500, TotalBytes: 2000}}}
	at := time.Date(2026, 12, 7, 21, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		format string
		want   []string
	}{
		{catalog.FormatText, []string{": 1 volume move\n", "DataUpload  du1   b1  app/data  InProgress  500 B  2.00 kB  25.0%    1m0s     node-1  -\n",
			"\n\n"}},
		{catalog.FormatJSON, []string{`"time": "2026-12-07T21:00:00Z"`, `"bytesDone": 500`, `"totalBytes": 2000`}},
		{catalog.FormatYAML, []string{"---\nmovements:\n- backup: b1\n  bytesDone: 500\n", "time: \"2026-12-07T21:00:00Z\"\n"}},
	} {
		t.Run(tc.format, func(t *testing.T) {
			// Frames until the third List: then Ctrl-C, which ends the watch without an error.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			lists := 0
			c := fake.NewClientBuilder().WithScheme(testkit.Scheme(t)).WithObjects(du).WithInterceptorFuncs(interceptor.Funcs{
				List: func(ctx context.Context, c client.WithWatch, l client.ObjectList, o ...client.ListOption) error {
					if _, ok := l.(*velerov2alpha1.DataUploadList); ok {
						if lists++; lists == 3 {
							cancel()
						}
					}
					return c.List(ctx, l, o...)
				}}).Build()
			var out bytes.Buffer
			require.NoError(t, watchMovements(ctx, c, "velero", "", tc.format, &out, time.Millisecond, func() time.Time { return at }))
			for _, w := range tc.want {
				assert.Contains(t, out.String(), w)
			}
			assert.Equal(t, 2, strings.Count(out.String(), "du1"), "two frames before Ctrl-C")
		})
	}
}
