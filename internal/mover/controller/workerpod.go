package controller

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/snapmove/snapmove/internal/mover/config"
	"github.com/snapmove/snapmove/internal/mover/expose"
)

// podParams are the worker pod settings common to backups and restores.
func (r *Reconciler) podParams(op expose.Operation, name string, owner metav1.OwnerReference, pvc string, block bool, cfg config.Config, extra func(*expose.PodParams)) expose.PodParams {
	flags := map[string]string{"cache-limit-mb": fmt.Sprint(cfg.CacheLimitMB)}
	if r.Options.DefaultCredentials != "" {
		flags["default-credentials-secret"] = r.Options.DefaultCredentials
	}
	if op == expose.Restore {
		flags["write-sparse-default"] = expose.FormatBool(cfg.WriteSparseFiles)
	}
	p := expose.PodParams{
		Operation: op, Name: name, Namespace: r.Options.Namespace, Owner: owner,
		Image: r.Options.WorkerImage, ImagePullPolicy: cfg.WorkerImagePullPolicy, ServiceAccount: r.Options.WorkerServiceAccount,
		PVC: pvc, Block: block, HostNetwork: cfg.WorkerHostNetwork, Resources: cfg.WorkerResources,
		CacheSize: cfg.CacheSizeLimit, Args: expose.WorkerArgs(flags),
		NodeSelector: cfg.WorkerNodeSelector, Tolerations: cfg.WorkerTolerations, PriorityClassName: cfg.WorkerPriorityClassName,
	}
	if extra != nil {
		extra(&p)
	}
	return p
}
