# snapmove — every entry point a person or CI uses. See README.md.
#
#   make demo     build what is missing, start the local stack, run backup → delete → restore → verify
#   make test     lint, unit tests, then the end-to-end suite on the local stack (what CI runs), started with GCS and Azure
#   make lint     gofmt -l, go vet (also -tags e2e) and staticcheck over all three Go modules, shellcheck over the scripts
#   make unit     unit tests only (no stack; includes csi-sanity against the test CSI driver)
#   make bench    data-path benchmark: snapmove's kopia path vs the kopia CLI
#   make bench-scale  fixed cost per PVC on the running stack (BENCH_PVCS=20 PVCs of 1 MiB)
#
#   SNAPMOVE_STACK_STORES=gcs make stack-up   the stack with object stores besides MinIO (space- or comma-separated;
#                 default none, which is what make demo builds and starts): gcs = fake-gcs-server, Velero's GCP
#                 plugin and BSL gcs; azure = Azurite (npm) and BSL azure, no Velero plugin (hack/stack/README.md);
#                 make test sets "gcs azure"; make e2e skips what the stack lacks
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO       ?= go
BIN      := $(CURDIR)/bin
SNAPMOVE := $(BIN)/snapmove
STACK    := hack/stack
STACK_RUN ?= /tmp/snapmove-stack
export SNAPMOVE_STACK_RUN := $(STACK_RUN)

# staticcheck comes from the Go module proxy, pinned, built once per (version, go) into the cache
# hack/stack uses (outside the repo, so a fresh clone, like CI's, finds it warm). Not a go.mod `tool`:
# v0.8.2 needs go 1.26 in go.mod and newer golang.org/x/{tools,mod,sync} than snapmove's.
STATICCHECK_VERSION := v0.8.2
GOFMT       := $(shell $(GO) env GOROOT)/bin/gofmt
TOOLS       := $(or $(SNAPMOVE_CACHE),$(HOME)/.cache/snapmove)/tools
STATICCHECK := $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)-$(shell $(GO) env GOVERSION)/staticcheck

.PHONY: help build unit lint sanity stack-build stack-up stack-down image install-mover e2e test demo bench bench-scale examples release release-check clean

help:
	@sed -n 's/^#   //p' Makefile

build: ## static binary, as the image has it
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w" -o $(SNAPMOVE) .

lint: $(STATICCHECK) ## what review would flag; test/csidriver and hack/tools are modules of their own
	@out=$$($(GOFMT) -l .); if [ -n "$$out" ]; then echo "gofmt -l: not gofmt'ed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/
	cd test/csidriver && $(GO) vet ./...
	cd hack/tools && $(GO) vet ./...
	$(STATICCHECK) ./...
	$(STATICCHECK) -tags e2e ./test/e2e/
	cd test/csidriver && $(STATICCHECK) ./...
	cd hack/tools && $(STATICCHECK) ./...
	hack/shellcheck.sh # installs shellcheck (Debian package) when it is missing

$(STATICCHECK):
	GOBIN=$(@D) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

unit: ## the Go modules' tests (csi-sanity, in test/csidriver's, needs root for mounts; the alert rules' in hack/tools/kube)
	$(GO) test ./...
	cd test/csidriver && $(GO) test ./...
	cd hack/tools && $(GO) test ./...
	cd hack/tools/kube && $(GO) test ./promrules/

stack-build:
	$(STACK)/build.sh

stack-up: stack-build build
	SNAPMOVE_BINARY=$(SNAPMOVE) $(STACK)/up.sh
	hack/install-mover.sh

stack-down:
	$(STACK)/down.sh

e2e: ## against a running stack (make stack-up)
	source $(STACK_RUN)/env && $(GO) test -tags e2e -count=1 -timeout 45m -parallel 16 -v ./test/e2e/ 2>&1 | tee $(STACK_RUN)/e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go'

# The suite's stack has every optional store (TEST_STORES), so that their tests run; make demo's has none.
TEST_STORES ?= gcs azure irsa

test: lint unit
	trap '$(STACK)/down.sh >/dev/null 2>&1 || true' EXIT; SNAPMOVE_STACK_STORES='$(TEST_STORES)' $(MAKE) stack-up && SNAPMOVE_E2E_REQUIRE_STORES='$(TEST_STORES)' $(MAKE) e2e && $(MAKE) release-check

demo:
	hack/demo.sh

bench:
	hack/bench.sh

examples: ## examples/mover.yaml and monitoring.yaml from the chart (helm template; e2e TestChart keeps them so)
	hack/render-examples.sh

release-check: ## make release for linux/amd64 (the other platforms are the same commands), then check it: make test runs it
	rm -rf dist/v0.0.0-check && PLATFORMS=linux/amd64 hack/release.sh v0.0.0-check
	cd dist/v0.0.0-check && sha256sum -c --quiet SHA256SUMS && \
	  tar -xzf snapmove_v0.0.0-check_linux_amd64.tar.gz && \
	  ./snapmove_v0.0.0-check_linux_amd64/snapmove version | grep -q 'v0.0.0-check' && \
	  grep -q '"name": "github.com/project-velero/kopia"' snapmove_v0.0.0-check.spdx.json && \
	  tar -tzf snapmove-0.0.0-check.tgz | grep -q snapmove/templates/deployment.yaml && \
	  grep -q 'sha256: ' snapmove.yaml && rm -rf snapmove_v0.0.0-check_linux_amd64
	@echo "release-check: dist/v0.0.0-check built and checked"

release: ## a release's artifacts into dist/VERSION (binaries, images, SBOM, krew manifest, SHA256SUMS); publishes nothing
	hack/release.sh $(VERSION)

bench-scale: ## against a running stack (make stack-up)
	source $(STACK_RUN)/env && SNAPMOVE_SCALE_PVCS=$${BENCH_PVCS:-20} $(GO) test -tags e2e -count=1 -timeout 30m -v \
		-run '^TestFixedCostPerPVC$$' ./test/e2e/ 2>&1 | grep -vE '^=== (RUN|PAUSE|CONT)'

clean:
	rm -rf $(BIN)
