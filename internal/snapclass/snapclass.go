package snapclass

import (
	"context"
	"fmt"
	"sort"
	"strings"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/pkg/errors"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// SelectorLabel marks the class Velero (and snapmove) should use for its driver.
	SelectorLabel = velerov1.VolumeSnapshotClassSelectorLabel
	// PVCAnnotation on a PVC names the class to use for that PVC.
	PVCAnnotation = velerov1.VolumeSnapshotClassDriverPVCAnnotation
	// BackupAnnotationPrefix + "_" + <driver> on a Backup names the class for that driver.
	BackupAnnotationPrefix = velerov1.VolumeSnapshotClassDriverBackupAnnotationPrefix
	// DefaultAnnotation is Kubernetes' default-class marker.
	DefaultAnnotation = velerov1.VolumeSnapshotClassKubernetesAnnotation
)

// ErrCRDsMissing is returned (wrapped) by List when the API server does not serve
// VolumeSnapshotClasses.
var ErrCRDsMissing = errors.New("the VolumeSnapshot CRDs are not installed (external-snapshotter)")

// List returns every VolumeSnapshotClass in the cluster. A missing CRD is reported as
// ErrCRDsMissing rather than as a REST mapping error.
func List(ctx context.Context, c client.Reader) ([]snapshotv1.VolumeSnapshotClass, error) {
	var list snapshotv1.VolumeSnapshotClassList
	if err := c.List(ctx, &list); err != nil {
		if meta.IsNoMatchError(err) {
			return nil, errors.Wrap(ErrCRDsMissing, "listing VolumeSnapshotClasses")
		}
		return nil, errors.Wrap(err, "listing VolumeSnapshotClasses")
	}
	return list.Items, nil
}

// BackupAnnotation is the backup annotation key that names the class for driver.
func BackupAnnotation(driver string) string {
	return BackupAnnotationPrefix + "_" + strings.ToLower(driver)
}

// Choose returns the name of the VolumeSnapshotClass to use for pvc, whose volume belongs to
// the CSI driver driver, and a short reason for the log. backup may be nil. It never
// guesses: an annotation naming a missing class or a class of another driver, several
// labelled (or several default) classes for the driver, or several unmarked classes are
// errors that say what to change.
func Choose(classes []snapshotv1.VolumeSnapshotClass, pvc *corev1.PersistentVolumeClaim, backup *velerov1.Backup, driver string) (name, reason string, err error) {
	byName := make(map[string]*snapshotv1.VolumeSnapshotClass, len(classes))
	var ofDriver []*snapshotv1.VolumeSnapshotClass
	for i := range classes {
		c := &classes[i]
		byName[c.Name] = c
		if c.Driver == driver {
			ofDriver = append(ofDriver, c)
		}
	}
	sort.Slice(ofDriver, func(i, j int) bool { return ofDriver[i].Name < ofDriver[j].Name })

	named := func(source, want string) (string, string, error) {
		c, ok := byName[want]
		if !ok {
			return "", "", errors.Errorf("%s names %q, which does not exist", source, want)
		}
		if c.Driver != driver {
			return "", "", errors.Errorf("%s names %q, whose driver is %s, not %s", source, want, c.Driver, driver)
		}
		return c.Name, source, nil
	}

	if pvc != nil {
		if want, ok := pvc.Annotations[PVCAnnotation]; ok {
			return named(fmt.Sprintf("PVC annotation %s", PVCAnnotation), want)
		}
	}
	if backup != nil {
		key := BackupAnnotation(driver)
		if want, ok := backup.Annotations[key]; ok {
			return named(fmt.Sprintf("backup annotation %s", key), want)
		}
	}

	labelled := filter(ofDriver, func(c *snapshotv1.VolumeSnapshotClass) bool {
		return strings.EqualFold(c.Labels[SelectorLabel], "true")
	})
	switch len(labelled) {
	case 0:
	case 1:
		return labelled[0].Name, fmt.Sprintf("label %s", SelectorLabel), nil
	default:
		return "", "", errors.Errorf("%d VolumeSnapshotClasses for driver %s are labelled %s: %s; keep the label on one",
			len(labelled), driver, SelectorLabel, names(labelled))
	}

	defaults := filter(ofDriver, func(c *snapshotv1.VolumeSnapshotClass) bool {
		return strings.EqualFold(c.Annotations[DefaultAnnotation], "true")
	})
	switch len(defaults) {
	case 0:
	case 1:
		return defaults[0].Name, fmt.Sprintf("annotation %s", DefaultAnnotation), nil
	default:
		return "", "", errors.Errorf("%d VolumeSnapshotClasses for driver %s are annotated %s: %s; label the one to use %s: \"true\"",
			len(defaults), driver, DefaultAnnotation, names(defaults), SelectorLabel)
	}

	switch len(ofDriver) {
	case 0:
		return "", "", errors.Errorf("no VolumeSnapshotClass for driver %s: create one and label it %s: \"true\"", driver, SelectorLabel)
	case 1:
		return ofDriver[0].Name, "only class of the driver", nil
	default:
		return "", "", errors.Errorf("%d VolumeSnapshotClasses for driver %s (%s) and none is labelled %s: \"true\": label the one to use",
			len(ofDriver), driver, names(ofDriver), SelectorLabel)
	}
}

func filter(in []*snapshotv1.VolumeSnapshotClass, keep func(*snapshotv1.VolumeSnapshotClass) bool) []*snapshotv1.VolumeSnapshotClass {
	var out []*snapshotv1.VolumeSnapshotClass
	for _, c := range in {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

func names(in []*snapshotv1.VolumeSnapshotClass) string {
	s := make([]string, len(in))
	for i, c := range in {
		s[i] = c.Name
	}
	return strings.Join(s, ", ")
}
