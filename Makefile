# hsmkms build. `make test` is what CI runs; every target installs what it
# needs from the distribution first (see softhsm/deps.sh).
GO      ?= go
BIN     := bin/hsmkms
GOFLAGS ?=
export CGO_ENABLED := 1

.PHONY: all deps build run test bench lint clean

all: build

deps:
	@bash softhsm/deps.sh

build:
	$(GO) build $(GOFLAGS) -o $(BIN) ./cmd/hsmkms

# The server on embedded defaults: a private SoftHSM2 dev token and the
# embedded store, both under .hsmkms/ (git-ignored), kept across runs.
run: deps build
	./$(BIN) serve --dev --dev-dir .hsmkms

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted" >&2; exit 1; fi
	$(GO) vet ./...

test: deps lint
	$(GO) test -race -count=1 -timeout 20m ./...

# Benchmarks, each a ratio measured in one run: the hsm package beside raw
# miekg/pkcs11 calls, the key service beside the hsm package, and the
# server beside the raw token and a null SigV4 server (tests/bench.sh).
BENCHTIME ?= 2s
bench: deps build
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count 1 ./hsm/ ./service/ ./cli/esdk/
	bash tests/bench.sh

clean:
	rm -rf bin
