package controller

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// Every repository a movement uses becomes Velero's own BackupRepository, named and
// labelled as Velero's ensurer names it, unless Velero has one already; failing to create
// it never holds up the movement.
func TestMovementsMakeVeleroBackupRepositories(t *testing.T) {
	velerosOwn := backupRepository(veleroNS, appNS, "default")
	velerosOwn.Name = "app-default-kopia-x7k2p" // Velero < 1.10 named them with GenerateName
	forbidden := &interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if _, ok := obj.(*velerov1.BackupRepository); ok {
			return apierrors.NewForbidden(schema.GroupResource{Group: "velero.io", Resource: "backuprepositories"}, obj.GetName(), nil)
		}
		return c.Create(ctx, obj, opts...)
	}}
	for _, tc := range []struct {
		name     string
		existing []client.Object
		funcs    *interceptor.Funcs
		want     []string
	}{
		{name: "created with Velero's name", want: []string{"app-default-kopia"}},
		{name: "Velero's is used", existing: []client.Object{velerosOwn}, want: []string{"app-default-kopia-x7k2p"}},
		{name: "forbidden: the movement goes on", funcs: forbidden, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			du := dataUpload(velerov2alpha1.DataUploadPhaseAccepted)
			e := newEnv(t, tc.funcs, append(backupFixtures(du), tc.existing...)...)
			e.reconcileDU()
			require.Equal(t, []string{"default/" + appNS + "/create"}, e.repos.verified, "the repository was checked")
			require.NotEqual(t, velerov2alpha1.DataUploadPhaseFailed, e.du().Status.Phase, e.du().Status.Message)

			list := &velerov1.BackupRepositoryList{}
			require.NoError(t, e.c.List(context.Background(), list))
			var names []string
			for _, br := range list.Items {
				names = append(names, br.Name)
				require.Equal(t, map[string]string{
					"velero.io/volume-namespace": appNS, "velero.io/storage-location": "default", "velero.io/repository-type": "kopia",
				}, br.Labels)
				require.Equal(t, velerov1.BackupRepositorySpec{VolumeNamespace: appNS, BackupStorageLocation: "default", RepositoryType: "kopia"}, br.Spec)
			}
			require.Equal(t, tc.want, names)
		})
	}
	require.Equal(t, metav1.ObjectMeta{Namespace: veleroNS, Name: "app-default-kopia", Labels: backupRepositoryLabels(appNS, "default")},
		backupRepository(veleroNS, appNS, "default").ObjectMeta)
}
