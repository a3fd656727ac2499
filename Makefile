# The two commands a fresh machine needs: `make run` and `make test`.
# Both need only Go and the PostgreSQL server binaries (Debian: postgresql).

GO        ?= go
BIN       := bin/saasapi
PKG       := ./cmd/saasapi

.PHONY: run build test test-only lint vet fmt fmt-check cover bench bench-http bench-rebuild gate smoke clean

## run: start the API with its own private PostgreSQL under .data
## (built first and run directly, so that Ctrl-C reaches it unrelayed)
run: build
	./$(BIN) dev

## build: build the binary into bin/ (-buildvcs=auto records the git
## revision that `saasapi version` prints, even where GOFLAGS turns it off)
build:
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -trimpath -o $(BIN) $(PKG)

## test: gofmt check, vet, golangci-lint and the race-enabled test suite
## against one private PostgreSQL cluster started for the run
test: fmt-check vet lint test-only

test-only:
	$(GO) run ./internal/withcluster -- $(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...

lint:
	$(GO) tool golangci-lint run ./...

fmt:
	gofmt -w .

fmt-check:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## cover: the test suite with a coverage total
cover:
	$(GO) run ./internal/withcluster -- $(GO) test -count=1 -coverpkg=./... -coverprofile=coverage.out ./...
	$(GO) tool cover -func=coverage.out | tail -1

## bench: benchmarks (figures are printed, never asserted)
bench:
	$(GO) run ./internal/withcluster -- $(GO) test -run='^$$' -bench=. -benchmem ./...

## bench-http: the service against PostgreSQL's own pgbench on one private
## cluster with fsync on (docs/performance.md); installs wrk when missing.
## BENCH_FLAGS passes flags, e.g. BENCH_FLAGS='-rounds 5 -fill 1000000'.
bench-http: build
	@command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }
	$(GO) run ./internal/benchhttp -bin $(BIN) $(BENCH_FLAGS)

## bench-rebuild: projections rebuild and verify, audit verify and the
## audit export at 100k, 500k and 1M events of a history built through the
## API on one private cluster with fsync on, and a writer's latency through
## a rebuild (docs/performance.md). BENCH_FLAGS passes flags, e.g.
## BENCH_FLAGS='-sizes 20000' for a short run.
bench-rebuild: build
	$(GO) run ./internal/benchrebuild -bin $(BIN) $(BENCH_FLAGS)

## gate: everything CI checks (scripts/quality-gate.sh)
gate:
	scripts/quality-gate.sh

## smoke: the end-to-end demo against a running service (`make run` elsewhere)
smoke:
	scripts/smoke-demo.sh

clean:
	rm -rf bin coverage.out
