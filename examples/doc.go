// Package examples holds no code: it is the home of the manifests and helm values in this
// directory, and of the test that keeps every one of them valid (each document decodes
// strictly into its Kubernetes, Velero or snapshot type, the mover settings parse, the
// resource policy is accepted by Velero's own volume-policy code, and the helm values carry
// the same mover objects as mover.yaml).
package examples
