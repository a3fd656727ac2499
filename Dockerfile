# syntax=docker/dockerfile:1
#
# The API image: a static binary of ./cmd/saasapi on distroless, running as
# a non-root user. The same image runs every subcommand; docker-compose.yml
# uses it for `migrate` (once) and `serve`.
#
#   docker build -t saasapi .
#   docker run --rm -e SAAS_API_DATABASE_URL=... saasapi migrate
#   docker run --rm -p 8000:8000 -e SAAS_API_DATABASE_URL=... saasapi   # serve

FROM golang:1.26-bookworm AS build
WORKDIR /src
# The cache mounts keep the module and build caches between builds without
# putting them in a layer. There is no separate `go mod download` step: it
# would also fetch the modules of the go.mod tool dependencies (golangci-lint
# and its hundreds of modules), which the build never needs; `go build`
# fetches only what ./cmd/saasapi imports.
COPY . .
# CGO_ENABLED=0: a static binary that needs no libc in the final image.
# -trimpath and -s -w: no build paths or debug tables in the binary.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w" -o /out/saasapi ./cmd/saasapi

# distroless/static: CA certificates, tzdata and /etc/passwd with the nonroot
# user (65532), and nothing else: no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/saasapi /saasapi
USER nonroot:nonroot
# A small live heap and a few kilobytes allocated per request: with the
# default GOGC=100 the collector runs many times a second under load
# (docs/performance.md, tail latency). Override with -e GOGC=...
ENV GOGC=400
# serve listens on SAAS_API_HTTP_ADDR, :8000 unless set.
EXPOSE 8000
# No HEALTHCHECK: the image has no shell or curl to run one, and saasapi has
# no health-probe subcommand. Liveness and readiness are HTTP endpoints
# (/healthz, /readyz) for the orchestrator to probe from outside, and
# Prometheus records whether each scrape of /metrics succeeded (the up series).
ENTRYPOINT ["/saasapi"]
CMD ["serve"]
