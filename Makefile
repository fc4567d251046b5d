# hsmkms build. `make test` is what CI runs; every target installs what it
# needs from the distribution first (see softhsm/deps.sh).
GO      ?= go
BIN     := bin/hsmkms
GOFLAGS ?=
export CGO_ENABLED := 1

.PHONY: all deps deps-run build install run test fuzz fuzz-short bench lint clean

all: build

deps:
	@bash softhsm/deps.sh

# What the server alone needs: make run installs no test tools.
deps-run:
	@bash softhsm/deps.sh run

build:
	$(GO) build $(GOFLAGS) -buildvcs=auto -o $(BIN) ./cmd/hsmkms

# The binary, its manual page and shell completions under PREFIX (and
# DESTDIR, for packaging).
PREFIX ?= /usr/local
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/hsmkms
	./$(BIN) man > $(DESTDIR)$(PREFIX)/share/man/man1/hsmkms.1
	./$(BIN) completion bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/hsmkms
	./$(BIN) completion zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_hsmkms
	./$(BIN) completion fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/hsmkms.fish

# The server on embedded defaults: a private SoftHSM2 dev token and the
# embedded store, both under .hsmkms/ (git-ignored), kept across runs.
run: deps-run build
	./$(BIN) serve --dev --dev-dir .hsmkms

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted" >&2; exit 1; fi
	$(GO) vet ./...

# The hsm package runs on SoftHSM2 with everything else, then on
# openCryptoki's soft token and NSS's softoken (HSMKMS_TEST_TOKEN). The
# key service's tests run again with every store transaction run twice, the
# first rolled back (HSMKMS_TEST_RERUN_UPDATES), as PostgreSQL's
# serialization failures have them: each must be safe to run again.
test: deps lint
	$(GO) test -race -count=1 -timeout 20m ./...
	HSMKMS_TEST_RERUN_UPDATES=1 $(GO) test -count=1 -timeout 10m ./service/
	HSMKMS_TEST_TOKEN=opencryptoki $(GO) test -race -count=1 -timeout 10m ./hsm/
	HSMKMS_TEST_TOKEN=nss $(GO) test -race -count=1 -timeout 10m ./hsm/
	@$(call fuzz_run,$(FUZZTIME_SHORT))

# Native Go fuzzing of every parser of untrusted input, as package:target
# (go test fuzzes one target per run). The seed corpus is each target's
# f.Add cases plus the files under its package's testdata/fuzz/<target>/;
# the inputs a run finds interesting stay in the Go build cache. A failing
# input is written to testdata/fuzz/<target>/: keep it, it becomes a
# regression case of `go test`, and fix the bug. `make test` fuzzes each
# target for FUZZTIME_SHORT after the unit tests; `make fuzz` for FUZZTIME.
FUZZ_TARGETS := \
	./service/ciphertext:FuzzParse \
	./service/ciphertext:FuzzCanonical \
	./service/auth:FuzzParseAuthorization \
	./service/auth:FuzzVerifyMatchesSDK \
	./service/auth:FuzzXKSVerify \
	./service/xks:FuzzRequest \
	./service/api:FuzzDecodeInput \
	./service/policy:FuzzGlobMatch \
	./service/audit:FuzzLineMatchesHclog \
	./cli/esdk:FuzzReadHeader \
	./cli/esdk:FuzzDecrypt \
	./cli/esdk:FuzzRoundTrip \
	./cli:FuzzConfigEntries
FUZZTIME_SHORT ?= 8s
FUZZTIME ?= 5m
# Each new interesting input is minimized for up to this long, and no
# fuzzing happens meanwhile: go's 60s default can eat a whole short run.
FUZZMINIMIZETIME ?= 5s

# fuzz_run fuzzes every target for $(1) (tests/fuzz.sh says how a failure
# is told from Go 1.26's deadline race).
fuzz_run = GO=$(GO) bash tests/fuzz.sh $(1) $(FUZZMINIMIZETIME) $(FUZZ_TARGETS)

fuzz-short: deps
	@$(call fuzz_run,$(FUZZTIME_SHORT))

fuzz: deps
	@$(call fuzz_run,$(FUZZTIME))

# Benchmarks, each a ratio measured in one run: the hsm package beside raw
# miekg/pkcs11 calls (the portable mechanism on openCryptoki and NSS too), the key service beside the hsm package and on
# PostgreSQL beside bbolt, the server beside the raw token and a null SigV4
# server (tests/bench.sh), 1, 2 and 3 replicas (tests/bench-replicas.sh);
# and how long a disable takes to reach another replica (p50, p99).
BENCHTIME ?= 2s
bench: deps build
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count 1 ./hsm/ ./service/ ./cli/esdk/
	HSMKMS_TEST_TOKEN=opencryptoki $(GO) test -run '^$$' -bench '^Benchmark(SealDataKey|Unseal)Portable$$' -benchtime $(BENCHTIME) -count 1 ./hsm/
	HSMKMS_TEST_TOKEN=nss $(GO) test -run '^$$' -bench '^Benchmark(SealDataKey|Unseal)Portable$$' -benchtime $(BENCHTIME) -count 1 ./hsm/
	$(GO) test -run '^$$' -bench DisableVisibility -benchtime 200x -count 1 ./tests/
	bash tests/bench.sh
	bash tests/bench-replicas.sh

clean:
	rm -rf bin
