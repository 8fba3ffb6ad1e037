// Package tools holds small programs the local test stack (hack/stack) and the benchmark need and no
// registry ships.
//
// It is its own module so that its dependencies never enter the snapmove module's go.mod:
//   - pause:   the sandbox ("pause") container process, imported as registry.k8s.io/pause:3.10
//   - imgtool: builds a single-layer docker-archive image from local static binaries (no registry)
//   - s3mb:    creates a bucket on an S3 endpoint
//   - benchreport: hack/bench.sh's report, the medians and tables of the rows it records
//
// Nothing here is part of snapmove itself.
package tools
