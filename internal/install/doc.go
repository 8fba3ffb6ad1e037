// Package install owns the image entrypoint: copying the running snapmove binary into a
// directory (Velero's plugins folder, mounted at /target by the helm chart's
// initContainers). It copies exactly one file, the binary itself, so that nothing that is
// not a Velero plugin lands in the plugins folder (Velero execs every executable there and
// refuses to start if one does not answer the plugin handshake).
//
// It must not depend on a shell: the final image has none.
package install
