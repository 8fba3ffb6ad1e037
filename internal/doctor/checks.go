package doctor

import (
	"context"
	"fmt"
	"sort"
	"strings"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/pkg/errors"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/controller"
	"github.com/snapmove/snapmove/internal/mover/repository"
	"github.com/snapmove/snapmove/internal/mover/velerosrv"
	"github.com/snapmove/snapmove/internal/naming"
	"github.com/snapmove/snapmove/internal/snapclass"
)

// MoverDeployment is the name of the mover's Deployment (and of its ServiceAccount) in
// Velero's namespace, as examples/mover.yaml and examples/velero-values.yaml make them.
const MoverDeployment = "snapmove-mover"

// outcome gathers the findings of a check about several objects: the worst status wins,
// details and fixes are joined in order.
type outcome struct {
	status        Status
	details, fixs []string
}

func (o *outcome) add(s Status, detail, fix string) {
	if rank(s) > rank(o.status) {
		o.status = s
	}
	if detail != "" {
		o.details = append(o.details, detail)
	}
	if fix != "" {
		o.fixs = append(o.fixs, fix)
	}
}

func (o *outcome) check() Check {
	s := o.status
	if s == "" {
		s = OK
	}
	return Check{Status: s, Detail: strings.Join(o.details, "; "), Fix: strings.Join(o.fixs, "; ")}
}

func rank(s Status) int {
	switch s {
	case Warn:
		return 1
	case Fail:
		return 2
	}
	return 0
}

// snapshotCRDs: the API server serves VolumeSnapshots, VolumeSnapshotContents and
// VolumeSnapshotClasses at snapshot.storage.k8s.io/v1.
func snapshotCRDs(ctx context.Context, e *env) Check {
	const fix = "install external-snapshotter's CRDs and snapshot-controller: " +
		"kubectl kustomize https://github.com/kubernetes-csi/external-snapshotter/client/config/crd | kubectl create -f - && " +
		"kubectl -n kube-system kustomize https://github.com/kubernetes-csi/external-snapshotter/deploy/kubernetes/snapshot-controller | kubectl create -f -"
	var o outcome
	var served []string
	for _, plural := range []string{"volumesnapshots", "volumesnapshotcontents", "volumesnapshotclasses"} {
		name := plural + "." + snapshotv1.GroupName
		crd := &apiextensionsv1.CustomResourceDefinition{}
		err := e.c.Get(ctx, client.ObjectKey{Name: name}, crd)
		switch {
		case apierrors.IsNotFound(err):
			o.add(Fail, fmt.Sprintf("CRD %s is not installed", name), "")
			continue
		case err != nil:
			o.add(Fail, fmt.Sprintf("reading CRD %s: %v", name, err), "")
			continue
		}
		v1 := false
		for _, v := range crd.Spec.Versions {
			if v.Name == snapshotv1.SchemeGroupVersion.Version && v.Served {
				v1 = true
			}
		}
		if !v1 {
			o.add(Fail, fmt.Sprintf("CRD %s does not serve v1 (an external-snapshotter older than v4)", name), "")
			continue
		}
		served = append(served, plural)
	}
	if len(served) > 0 {
		o.details = append([]string{strings.Join(served, ", ") + " serve " + snapshotv1.SchemeGroupVersion.String()}, o.details...)
	}
	if o.status == Fail {
		o.fixs = []string{fix}
	}
	return o.check()
}

// snapshotClasses: each CSI driver in use has exactly one VolumeSnapshotClass labelled
// velero.io/csi-volumesnapshot-class=true.
func snapshotClasses(ctx context.Context, e *env) Check {
	drivers, err := driversInUse(ctx, e.c)
	if err != nil {
		return Check{Status: Fail, Detail: err.Error()}
	}
	if len(drivers) == 0 {
		return Check{Status: Warn, Detail: "no CSI driver in use (no bound PV of a CSI driver, no StorageClass of a CSIDriver): snapmove moves only CSI volumes",
			Fix: "create PVCs of a StorageClass whose provisioner is a CSI driver with snapshot support"}
	}
	classes, err := snapclass.List(ctx, e.c)
	if err != nil {
		return Check{Status: Fail, Detail: err.Error(), Fix: "see snapshotCRDs"}
	}
	var o outcome
	for _, d := range drivers {
		var ofDriver, labelled []string
		for _, c := range classes {
			if c.Driver != d {
				continue
			}
			ofDriver = append(ofDriver, c.Name)
			if strings.EqualFold(c.Labels[snapclass.SelectorLabel], "true") {
				labelled = append(labelled, c.Name)
			}
		}
		sort.Strings(ofDriver)
		sort.Strings(labelled)
		switch len(labelled) {
		case 1:
			o.add(OK, fmt.Sprintf("%s: %s", d, labelled[0]), "")
		case 0:
			if len(ofDriver) == 0 {
				o.add(Fail, fmt.Sprintf("%s: no VolumeSnapshotClass", d),
					fmt.Sprintf("create a VolumeSnapshotClass of driver %s (e.g. examples/rook-ceph-volumesnapshotclass.yaml) labelled %s: \"true\"", d, snapclass.SelectorLabel))
				continue
			}
			o.add(Fail, fmt.Sprintf("%s: none of %s is labelled %s=true", d, strings.Join(ofDriver, ", "), snapclass.SelectorLabel),
				fmt.Sprintf("kubectl label volumesnapshotclass %s %s=true", suggest(classes, d, ofDriver), snapclass.SelectorLabel))
		default:
			// Velero's CSI action takes the first class of the driver that carries the
			// label (pkg/util/csi GetVolumeSnapshotClassForStorageClass, in list order:
			// by name); snapmove's refuses to guess (snapclass.Choose).
			_, _, why := snapclass.Choose(classes, nil, nil, d)
			detail := fmt.Sprintf("%s: %d classes are labelled %s (%s): Velero's CSI action takes the first by name, %s; snapmove's actions fail the PVC unless annotation %s on it (or %s on the backup) names one",
				d, len(labelled), snapclass.SelectorLabel, strings.Join(labelled, ", "), labelled[0], snapclass.PVCAnnotation, snapclass.BackupAnnotation(d))
			if why != nil {
				detail += " (" + why.Error() + ")"
			}
			o.add(Warn, detail, fmt.Sprintf("keep the label on one: kubectl label volumesnapshotclass %s %s-", strings.Join(labelled[1:], " "), snapclass.SelectorLabel))
		}
	}
	return o.check()
}

// suggest is the class of driver to label: the one annotated as Kubernetes' default,
// else the first by name.
func suggest(classes []snapshotv1.VolumeSnapshotClass, driver string, ofDriver []string) string {
	for _, c := range classes {
		if c.Driver == driver && strings.EqualFold(c.Annotations[snapclass.DefaultAnnotation], "true") {
			return c.Name
		}
	}
	return ofDriver[0]
}

// driversInUse are the CSI drivers of bound PVs and the provisioners of StorageClasses
// that name a CSIDriver object, sorted.
func driversInUse(ctx context.Context, c client.Reader) ([]string, error) {
	set := map[string]bool{}
	pvs := &corev1.PersistentVolumeList{}
	if err := c.List(ctx, pvs); err != nil {
		return nil, errors.Wrap(err, "listing PersistentVolumes")
	}
	for _, pv := range pvs.Items {
		if pv.Status.Phase == corev1.VolumeBound && pv.Spec.CSI != nil && pv.Spec.CSI.Driver != "" {
			set[pv.Spec.CSI.Driver] = true
		}
	}
	drivers := &storagev1.CSIDriverList{}
	if err := c.List(ctx, drivers); err != nil {
		return nil, errors.Wrap(err, "listing CSIDrivers")
	}
	csi := map[string]bool{}
	for _, d := range drivers.Items {
		csi[d.Name] = true
	}
	scs := &storagev1.StorageClassList{}
	if err := c.List(ctx, scs); err != nil {
		return nil, errors.Wrap(err, "listing StorageClasses")
	}
	for _, sc := range scs.Items {
		if csi[sc.Provisioner] {
			set[sc.Provisioner] = true
		}
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out, nil
}

// veleroServer: Velero's server Deployment exists and is Available; its features and
// node-agent, and the one combination that leaves DataUploads unserved.
func veleroServer(ctx context.Context, e *env) Check {
	srv, err := e.server(ctx)
	if err != nil {
		return Check{Status: Fail, Detail: err.Error(), Fix: "install Velero into namespace " + e.ns + " (helm install velero vmware-tanzu/velero -n " + e.ns + "), or name Velero's namespace with -n"}
	}
	var o outcome
	d := &appsv1.Deployment{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: srv.Deployment}, d); err != nil {
		return Check{Status: Fail, Detail: fmt.Sprintf("getting Deployment %s/%s: %v", e.ns, srv.Deployment, err)}
	}
	if available(d) {
		o.add(OK, fmt.Sprintf("Deployment %s Available", srv.Deployment), "")
	} else {
		o.add(Fail, fmt.Sprintf("Deployment %s not Available (%d of %d replicas available)", srv.Deployment, d.Status.AvailableReplicas, replicas(d)),
			fmt.Sprintf("kubectl -n %s describe deployment %s; kubectl -n %s logs deployment/%s", e.ns, srv.Deployment, e.ns, srv.Deployment))
	}
	csi := false
	for _, f := range srv.Features {
		if f == naming.FeatureEnableCSI {
			csi = true
		}
	}
	if len(srv.Features) == 0 {
		o.add(OK, "--features: none", "")
	} else {
		o.add(OK, "--features="+strings.Join(srv.Features, ","), "")
	}
	nodeAgent := true
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: controller.NodeAgentDaemonSet}, &appsv1.DaemonSet{}); apierrors.IsNotFound(err) {
		nodeAgent = false
		o.add(OK, "no node-agent DaemonSet", "")
	} else if err != nil {
		o.add(Fail, fmt.Sprintf("getting DaemonSet %s/%s: %v", e.ns, controller.NodeAgentDaemonSet, err), "")
		return o.check()
	} else {
		o.add(OK, "node-agent DaemonSet present", "")
	}
	if !csi || nodeAgent {
		return o.check()
	}
	cfg, err := config.Load(ctx, e.c, e.ns)
	if err != nil {
		o.add(Warn, err.Error(), "see moverReady")
		return o.check()
	}
	if !cfg.ServeVeleroDataMover {
		o.add(Warn, "with EnableCSI and no node-agent, backups that neither pass --data-mover snapmove nor match a volume policy of snapmove create DataUploads of Velero's built-in mover that nothing serves",
			fmt.Sprintf("set serveVeleroDataMover: \"true\" in ConfigMap %s/%s (README: Velero's CSI feature), or pass --data-mover snapmove, or install node-agent", e.ns, naming.MoverConfigMapName))
	} else {
		o.add(OK, "serveVeleroDataMover: snapmove serves Velero's built-in data mover", "")
	}
	return o.check()
}

func available(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func replicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

// moverReady: the mover's Deployment has an available replica, and its settings parse.
func moverReady(ctx context.Context, e *env) Check {
	d := &appsv1.Deployment{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: MoverDeployment}, d); err != nil {
		if apierrors.IsNotFound(err) {
			return Check{Status: Fail, Detail: fmt.Sprintf("no Deployment %s/%s", e.ns, MoverDeployment),
				Fix: "kubectl apply -f examples/mover.yaml (or the extraObjects of examples/velero-values.yaml) in Velero's namespace"}
		}
		return Check{Status: Fail, Detail: fmt.Sprintf("getting Deployment %s/%s: %v", e.ns, MoverDeployment, err)}
	}
	var o outcome
	image, workerImage := moverImages(d)
	what := fmt.Sprintf("image %s, --worker-image %s", image, workerImage)
	if d.Status.AvailableReplicas >= 1 {
		o.add(OK, fmt.Sprintf("%d of %d replicas available, %s", d.Status.AvailableReplicas, replicas(d), what), "")
	} else {
		o.add(Fail, fmt.Sprintf("no replica available, %s", what),
			fmt.Sprintf("kubectl -n %s describe deployment %s; kubectl -n %s logs deployment/%s", e.ns, MoverDeployment, e.ns, MoverDeployment))
	}
	if _, err := config.Load(ctx, e.c, e.ns); err != nil {
		o.add(Fail, err.Error(), fmt.Sprintf("kubectl -n %s edit configmap %s (examples/mover.yaml lists every setting)", e.ns, naming.MoverConfigMapName))
	}
	return o.check()
}

// moverImages are the image of the mover's container (the one running `mover
// controller`, else the first) and its --worker-image ("unset" when absent).
func moverImages(d *appsv1.Deployment) (image, workerImage string) {
	cs := d.Spec.Template.Spec.Containers
	if len(cs) == 0 {
		return "none", "unset"
	}
	c := cs[0]
	for _, x := range cs {
		if strings.Contains(strings.Join(append(append([]string(nil), x.Command...), x.Args...), " "), "mover controller") {
			c = x
		}
	}
	workerImage = "unset"
	argv := append(append([]string(nil), c.Command...), c.Args...)
	for i, a := range argv {
		switch {
		case strings.HasPrefix(a, "--worker-image="):
			workerImage = strings.TrimPrefix(a, "--worker-image=")
		case a == "--worker-image" && i+1 < len(argv):
			workerImage = argv[i+1]
		}
	}
	return c.Image, workerImage
}

// credentials: for each BackupStorageLocation, the credentials the mover uses (as
// --default-credentials-secret auto resolves them) exist; Velero's workload identity is
// on the mover's account too.
func credentials(ctx context.Context, e *env) Check {
	bsls := &velerov1.BackupStorageLocationList{}
	if err := e.c.List(ctx, bsls, client.InNamespace(e.ns)); err != nil {
		return Check{Status: Fail, Detail: fmt.Sprintf("listing BackupStorageLocations in %s: %v", e.ns, err)}
	}
	var o outcome
	if len(bsls.Items) == 0 {
		o.add(Warn, "no BackupStorageLocation", "see storageLocations")
	}
	creds := velerosrv.Credentials{Default: velerosrv.Default{Auto: true}, Server: e.server}
	for i := range bsls.Items {
		bsl := &bsls.Items[i]
		how, err := creds.Describe(ctx, bsl)
		if err != nil {
			o.add(Fail, fmt.Sprintf("%s: %v", bsl.Name, err), "")
			continue
		}
		sel := bsl.Spec.Credential
		if sel == nil {
			if sel, err = creds.DefaultFor(ctx, bsl); err != nil {
				o.add(Fail, fmt.Sprintf("%s: %v", bsl.Name, err), "")
				continue
			}
		}
		if sel == nil {
			o.add(OK, fmt.Sprintf("%s: %s", bsl.Name, how), "")
			continue
		}
		secret := &corev1.Secret{}
		switch err := e.c.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: sel.Name}, secret); {
		case apierrors.IsNotFound(err):
			o.add(Fail, fmt.Sprintf("%s: %s: secret %s/%s does not exist", bsl.Name, how, e.ns, sel.Name),
				fmt.Sprintf("kubectl -n %s create secret generic %s --from-file=%s=CREDENTIALS_FILE (or point BackupStorageLocation %s's spec.credential at the right secret)", e.ns, sel.Name, sel.Key, bsl.Name))
		case err != nil:
			o.add(Fail, fmt.Sprintf("%s: %s: getting secret %s/%s: %v", bsl.Name, how, e.ns, sel.Name, err), "")
		case len(secret.Data[sel.Key]) == 0:
			o.add(Fail, fmt.Sprintf("%s: %s: secret %s/%s has no key %s", bsl.Name, how, e.ns, sel.Name, sel.Key),
				fmt.Sprintf("add key %s to secret %s/%s, or name the key that holds the credentials in BackupStorageLocation %s's spec.credential", sel.Key, e.ns, sel.Name, bsl.Name))
		default:
			o.add(OK, fmt.Sprintf("%s: %s", bsl.Name, how), "")
		}
	}
	identity(ctx, e, &o)
	return o.check()
}

// identity adds to o whether Velero's ServiceAccount carries workload-identity
// annotations and whether the mover's account carries the same.
func identity(ctx context.Context, e *env, o *outcome) {
	srv, err := e.server(ctx)
	if err != nil || len(srv.Annotations) == 0 {
		return // no identity to compare (a discovery error is veleroServer's)
	}
	keys := make([]string, 0, len(srv.Annotations))
	for k := range srv.Annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	o.add(OK, fmt.Sprintf("Velero's ServiceAccount %s carries workload identity %s", srv.ServiceAccount, strings.Join(keys, ", ")), "")
	account := MoverDeployment
	d := &appsv1.Deployment{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: MoverDeployment}, d); err == nil && d.Spec.Template.Spec.ServiceAccountName != "" {
		account = d.Spec.Template.Spec.ServiceAccountName
	}
	sa := &corev1.ServiceAccount{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: account}, sa); err != nil {
		o.add(Warn, fmt.Sprintf("getting the mover's ServiceAccount %s/%s: %v", e.ns, account, err), "")
		return
	}
	var missing []string
	for _, k := range keys {
		if sa.Annotations[k] != srv.Annotations[k] {
			missing = append(missing, k+"="+srv.Annotations[k])
		}
	}
	if len(missing) == 0 {
		o.add(OK, fmt.Sprintf("the mover's ServiceAccount %s carries the same", account), "")
		return
	}
	o.add(Warn, fmt.Sprintf("the mover's ServiceAccount %s lacks %s: it opens repositories too (checks, forgetting deleted backups' snapshots)", account, strings.Join(missing, ", ")),
		fmt.Sprintf("kubectl -n %s annotate serviceaccount %s --overwrite %s && kubectl -n %s rollout restart deployment/%s", e.ns, account, strings.Join(missing, " "), e.ns, MoverDeployment))
}

// storageLocations: each BackupStorageLocation is Available; at least one is.
func storageLocations(ctx context.Context, e *env) Check {
	bsls := &velerov1.BackupStorageLocationList{}
	if err := e.c.List(ctx, bsls, client.InNamespace(e.ns)); err != nil {
		return Check{Status: Fail, Detail: fmt.Sprintf("listing BackupStorageLocations in %s: %v", e.ns, err)}
	}
	if len(bsls.Items) == 0 {
		return Check{Status: Fail, Detail: "no BackupStorageLocation in " + e.ns,
			Fix: "velero backup-location create default --provider aws --bucket BUCKET --config region=REGION (or configuration.backupStorageLocation in Velero's helm values)"}
	}
	var o outcome
	anyAvailable := false
	for _, b := range bsls.Items {
		name := b.Name
		if b.Spec.Default {
			name += " (default)"
		}
		switch b.Status.Phase {
		case velerov1.BackupStorageLocationPhaseAvailable:
			anyAvailable = true
			o.add(OK, name+": Available", "")
		case velerov1.BackupStorageLocationPhaseUnavailable:
			msg := b.Status.Message
			if msg == "" {
				msg = "no message"
			}
			o.add(Warn, fmt.Sprintf("%s: Unavailable: %s", name, msg),
				fmt.Sprintf("velero backup-location get %s; check its bucket, prefix, config and credentials, and Velero's server log", b.Name))
		default:
			o.add(Warn, name+": not validated yet (no phase)", "Velero's server validates locations every minute; see veleroServer")
		}
	}
	if !anyAvailable {
		o.add(Fail, "none is Available", "")
	}
	return o.check()
}

// repositoryPassword: Velero's repository password secret exists (Velero's server
// creates it when it starts; without it no repository opens).
func repositoryPassword(ctx context.Context, e *env) Check {
	where := fmt.Sprintf("secret %s/%s key %s", e.ns, repository.PasswordSecretName, repository.PasswordSecretKey)
	_, err := repository.Password(ctx, e.c, e.ns)
	if err == nil {
		return Check{Status: OK, Detail: where + " present"}
	}
	if !apierrors.IsNotFound(err) {
		return Check{Status: Fail, Detail: err.Error(),
			Fix: "restore the secret from where you keep it: every repository of this Velero is encrypted with it"}
	}
	backups := &velerov1.BackupList{}
	if err := e.c.List(ctx, backups, client.InNamespace(e.ns), client.Limit(1)); err != nil {
		return Check{Status: Fail, Detail: fmt.Sprintf("%s is missing, and listing Backups: %v", where, err)}
	}
	if len(backups.Items) == 0 {
		deployment := "velero"
		if srv, err := e.server(ctx); err == nil {
			deployment = srv.Deployment
		}
		return Check{Status: Warn, Detail: where + " is missing; no backup exists yet",
			Fix: fmt.Sprintf("Velero's server creates it when it starts: kubectl -n %s rollout restart deployment/%s", e.ns, deployment)}
	}
	return Check{Status: Fail, Detail: where + " is missing, and backups exist: their repositories cannot be opened",
		Fix: "restore the secret from where you keep it (a new password cannot open the existing repositories)"}
}
