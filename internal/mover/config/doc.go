// Package config is the typed form of the mover's optional settings ConfigMap
// (naming.MoverConfigMapName in Velero's namespace): concurrency limits, the prepare
// timeout, and what the worker pods get (resources, host network, cache size, backup PVC
// access mode, scheduling).
//
// Each ConfigMap key is one setting; its value is YAML (a scalar for most keys, a mapping
// for workerResources, workerNodeSelector, workerTolerations, backupPVCAccessModes).
// Unknown keys and values of the wrong type are errors, never silently ignored.
//
// The package parses and validates only: it creates nothing and reads nothing but the one
// ConfigMap it is given or asked to load.
package config
