# The two commands a fresh machine needs: `make run` and `make test`.
# Both need only Go and the PostgreSQL server binaries (Debian: postgresql).

GO        ?= go
BIN       := bin/saasapi
PKG       := ./cmd/saasapi

.PHONY: run build test test-only lint vet fmt fmt-check cover bench gate smoke clean

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

## gate: everything CI checks (scripts/quality-gate.sh)
gate:
	scripts/quality-gate.sh

## smoke: the end-to-end demo against a running service (`make run` elsewhere)
smoke:
	scripts/smoke-demo.sh

clean:
	rm -rf bin coverage.out
