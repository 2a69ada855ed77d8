# l4raw: build, test, demo and release entry points. `make help` lists them.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BUILD    := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
# Release targets: GOOS/GOARCH/GOARM and the suffix of the file in dist/.
CROSS    := amd64:amd64: arm64:arm64: armv7:arm:7 armv6:arm:6

.PHONY: all help build test vet unit e2e demo cross fuzz clean

all: build

help:
	@echo "make build   static binaries in bin/ (l4raw, l4echo)"
	@echo "make test    vet, unit tests (race detector), end-to-end tests (needs root)"
	@echo "make demo    namespaces, 3 backends, l4raw, traffic, the result (needs root)"
	@echo "make cross   static binaries for linux amd64, arm64, armv7, armv6 in dist/"
	@echo "make test-arm  unit tests as arm64 and armv7 under qemu-user, --help of every build"
	@echo "make deb     Debian packages in dist/;  make dist: packages, tarballs, SHA256SUMS"
	@echo "make image   container images FROM scratch;  make test-compose: the compose demo for real"
	@echo "make bench   l4raw against kernel NAT, HAProxy and a Go proxy (needs root)"
	@echo "make fuzz    run every fuzz target for FUZZTIME (default 10s)"

build:
	$(BUILD) -o bin/ ./cmd/...

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: not formatted:"; echo "$$out"; exit 1; fi

# Unit tests run with the race detector (it needs cgo; the binaries do not).
# Tests that need root (network namespaces) run for real as root and skip,
# saying why, otherwise; the e2e suite fails without root.
unit:
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...

e2e:
	CGO_ENABLED=0 $(GO) test -tags e2e -count=1 -timeout 20m -v ./test/e2e/

test: vet unit e2e

demo: build
	scripts/demo.sh

cross:
	@mkdir -p dist
	@for t in $(CROSS); do \
		name=$${t%%:*}; rest=$${t#*:}; arch=$${rest%%:*}; arm=$${rest#*:}; \
		echo "dist/l4raw-linux-$$name"; \
		GOOS=linux GOARCH=$$arch GOARM=$$arm $(BUILD) -o dist/l4raw-linux-$$name ./cmd/l4raw || exit 1; \
		GOOS=linux GOARCH=$$arch GOARM=$$arm $(BUILD) -o dist/l4echo-linux-$$name ./cmd/l4echo || exit 1; \
	done

FUZZTIME ?= 10s
fuzz:
	@for p in $$($(GO) list ./pkg/...); do \
		for f in $$($(GO) test -list '^Fuzz' $$p | grep '^Fuzz'); do \
			echo "$$p $$f"; $(GO) test -run XXX -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 1x $$p || exit 1; \
		done; \
	done

clean:
	rm -rf bin dist

# Packaging, ARM and containers (deploy/). nfpm is a pinned build tool run
# with "go run", not a dependency of the binaries (go.mod stays as it is).
NFPM ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

.PHONY: test-arm deb dist image test-compose

# Unit tests as arm64 and armv7 under qemu-user-static (root-only tests skip:
# see scripts/test-arm.sh), then --help of every dist/ binary under qemu.
test-arm: cross
	GO='$(GO)' scripts/test-arm.sh

# dist/l4raw_<version>_{amd64,arm64,armhf}.deb
deb: cross
	GO='$(GO)' NFPM='$(NFPM)' VERSION='$(VERSION)' scripts/package.sh deb

# The packages, dist/l4raw-<version>-linux-<arch>.tar.gz and dist/SHA256SUMS.
dist: cross
	GO='$(GO)' NFPM='$(NFPM)' VERSION='$(VERSION)' scripts/package.sh dist

# Images l4raw:<version> and l4echo:<version> (and :latest) FROM scratch, from bin/.
image: build
	GO='$(GO)' VERSION='$(VERSION)' scripts/image.sh

# The compose demo for real; starts (and stops) its own dockerd if none runs.
test-compose: build
	GO='$(GO)' VERSION='$(VERSION)' scripts/test-compose.sh

# Benchmark (needs root): l4raw against kernel NAT, HAProxy and a Go proxy in
# network namespaces; results in bench-results/<time>/. BENCH_FLAGS passes
# flags on, e.g. BENCH_FLAGS="--reps 5"; scripts/bench.sh --help lists them.
.PHONY: bench bench-smoke
bench: build
	scripts/bench.sh --bin bin $(BENCH_FLAGS)

# The CI check of the benchmark: one short repetition of everything.
bench-smoke: build
	scripts/bench.sh --smoke --bin bin $(BENCH_FLAGS)
