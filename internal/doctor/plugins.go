package doctor

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/naming"
)

// wantPlugins are the plugins snapmove registers (internal/plugin's register).
var wantPlugins = []string{naming.BackupActionName, naming.RestoreActionName, naming.DeleteActionName}

// pluginRegistered: Velero's server lists snapmove's plugins, as `velero plugin get`
// asks it: a ServerStatusRequest, answered with the plugins the server loaded.
func pluginRegistered(ctx context.Context, e *env) Check {
	const fix = "add snapmove's initContainer to Velero's values (examples/velero-values.yaml, initContainers) and helm upgrade velero vmware-tanzu/velero -n NAMESPACE --reuse-values -f VALUES; " +
		"without helm, add it to Velero's Deployment"
	req := &velerov1.ServerStatusRequest{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, GenerateName: "snapmove-doctor-"}}
	if err := e.c.Create(ctx, req); err != nil {
		return Check{Status: Fail, Detail: fmt.Sprintf("creating a ServerStatusRequest in %s: %v", e.ns, err),
			Fix: "grant create, get and delete on serverstatusrequests (velero.io) in Velero's namespace, or run velero plugin get"}
	}
	defer func() {
		// The request is ours; Velero's server would delete it a minute after answering.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = client.IgnoreNotFound(e.c.Delete(dctx, req))
	}()
	key := client.ObjectKeyFromObject(req)
	var got velerov1.ServerStatusRequest
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, e.opts.PluginPoll, e.opts.PluginTimeout, true, func(ctx context.Context) (bool, error) {
		if err := e.c.Get(ctx, key, &got); err != nil {
			lastErr = err
			return false, nil
		}
		return got.Status.Phase == velerov1.ServerStatusRequestPhaseProcessed, nil
	})
	if err != nil {
		detail := fmt.Sprintf("Velero's server does not answer: ServerStatusRequest %s not Processed within %s", key, e.opts.PluginTimeout)
		if lastErr != nil {
			detail += fmt.Sprintf(" (last read: %v)", lastErr)
		}
		return Check{Status: Fail, Detail: detail, Fix: "see veleroServer; kubectl -n " + e.ns + " logs deployment/velero"}
	}
	kinds := map[string][]string{}
	for _, p := range got.Status.Plugins {
		if strings.HasPrefix(p.Name, naming.PluginDomain+"/") {
			kinds[p.Name] = append(kinds[p.Name], p.Kind)
		}
	}
	var found, missing []string
	for _, name := range wantPlugins {
		if k, ok := kinds[name]; ok {
			sort.Strings(k)
			found = append(found, fmt.Sprintf("%s (%s)", name, strings.Join(k, ", ")))
		} else {
			missing = append(missing, name)
		}
	}
	switch {
	case len(found) == 0:
		return Check{Status: Fail, Detail: fmt.Sprintf("Velero's server lists no %s/ plugin (of %d plugins)", naming.PluginDomain, len(got.Status.Plugins)), Fix: fix}
	case len(missing) > 0:
		return Check{Status: Fail, Detail: fmt.Sprintf("registered: %s; missing: %s (an older snapmove image?)", strings.Join(found, ", "), strings.Join(missing, ", ")),
			Fix: "use the same snapmove image for Velero's initContainer and the mover, and restart Velero's server"}
	}
	return Check{Status: OK, Detail: strings.Join(found, ", ")}
}
