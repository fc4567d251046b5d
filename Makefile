# hsmkms build. `make test` is what CI runs; every target installs what it
# needs from the distribution first (see softhsm/deps.sh).
GO      ?= go
BIN     := bin/hsmkms
GOFLAGS ?=
export CGO_ENABLED := 1

.PHONY: all deps build test bench lint clean

all: build

deps:
	@bash softhsm/deps.sh

build:
	$(GO) build $(GOFLAGS) -o $(BIN) ./cmd/hsmkms

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted" >&2; exit 1; fi
	$(GO) vet ./...

test: deps lint
	$(GO) test -race -count=1 -timeout 20m ./...

# Benchmarks print the hsm package's calls beside a raw miekg/pkcs11
# baseline making the same PKCS#11 calls, measured in one run.
BENCHTIME ?= 2s
bench: deps
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count 1 ./hsm/

clean:
	rm -rf bin
