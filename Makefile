# snapmove — every entry point a person or CI uses. See README.md.
#
#   make demo     build what is missing, start the local stack, run backup → delete → restore → verify
#   make test     unit tests, then the end-to-end suite on the local stack (what CI runs)
#   make unit     unit tests only (no stack; includes csi-sanity against the test CSI driver)
#   make bench    data-path benchmark: snapmove's kopia path vs the kopia CLI
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO       ?= go
BIN      := $(CURDIR)/bin
SNAPMOVE := $(BIN)/snapmove
STACK    := hack/stack
STACK_RUN ?= /tmp/snapmove-stack
export SNAPMOVE_STACK_RUN := $(STACK_RUN)

.PHONY: help build unit sanity stack-build stack-up stack-down image install-mover e2e test demo bench vet clean

help:
	@sed -n 's/^#   //p' Makefile

build: ## static binary, as the image has it
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w" -o $(SNAPMOVE) .

vet:
	$(GO) vet ./...

unit: ## main module + test CSI driver (csi-sanity needs root for mounts)
	$(GO) test ./...
	cd test/csidriver && $(GO) test ./...

stack-build:
	$(STACK)/build.sh

stack-up: stack-build build
	SNAPMOVE_BINARY=$(SNAPMOVE) $(STACK)/up.sh
	hack/image.sh $(SNAPMOVE)
	hack/install-mover.sh

stack-down:
	$(STACK)/down.sh

e2e: ## against a running stack (make stack-up)
	source $(STACK_RUN)/env && $(GO) test -tags e2e -count=1 -timeout 45m -v ./test/e2e/ 2>&1 | tee $(STACK_RUN)/e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go'

test: unit
	trap '$(STACK)/down.sh >/dev/null 2>&1 || true' EXIT; $(MAKE) stack-up && $(MAKE) e2e

demo:
	hack/demo.sh

bench:
	hack/bench.sh

clean:
	rm -rf $(BIN)
