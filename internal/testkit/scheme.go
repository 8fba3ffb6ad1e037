package testkit

import (
	"testing"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// Scheme returns a new scheme with every API snapmove reads or writes: client-go's built-in
// types (core, storage, …), Velero's v1 and v2alpha1, and snapshot.storage.k8s.io/v1.
func Scheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(s))
	require.NoError(t, velerov1.AddToScheme(s))
	require.NoError(t, velerov2alpha1.AddToScheme(s))
	require.NoError(t, snapshotv1.AddToScheme(s))
	return s
}
