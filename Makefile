# Lifeboat. `make help` lists the targets.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:/usr/sbin:/sbin:$(PATH)
export GOTOOLCHAIN ?= auto

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOFLAGS_BUILD := -trimpath -ldflags "-s -w -X main.version=$(VERSION)"
STATICCHECK_VERSION := v0.8.2

.PHONY: help deps build appliance iso demo demo-cli test test-short lint fuzz bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

deps: ## install the Debian packages builds and tests need
	@build/deps.sh

build: ## build out/lifeboat
	go build $(GOFLAGS_BUILD) -o out/lifeboat ./cmd/lifeboat

appliance: deps ## build out/lifeboat.iso and out/netboot (kernel, initramfs, iPXE and GRUB configs) with a report
	go run ./cmd/lifeboat-build --out out --version $(VERSION)

iso: appliance ## the same as appliance

demo: deps appliance ## boot the appliance in QEMU on this terminal with an "old disk" and an empty "new SSD"
	build/demo-appliance.sh out

demo-cli: deps build ## without QEMU: clone a demo disk onto a larger one with the host's lifeboat and check it
	build/demo.sh out/demo

test: deps lint ## lint, then every test (root runs the loop-device and mount tests too)
	go test -count=1 -timeout 40m ./...

test-short: ## the quick tests only
	go test -short ./...

lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

FUZZTIME ?= 30s
fuzz: ## run every fuzz target for FUZZTIME each
	@for pkg in $$(go list ./...); do \
	  for f in $$(go test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; go test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 1s $$pkg || exit 1; \
	  done; \
	done

bench: deps build ## side-by-side benchmarks against e2image, dd, ntfsclone (needs root)
	bench/run.sh
	bench/backup.sh

clean: ## remove build outputs
	rm -rf out
