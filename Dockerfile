# syntax=docker/dockerfile:1

# --- build: a static binary -------------------------------------------------
FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0
# Dependencies first, so this layer is cached until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/shop ./cmd/shop

# --- runtime: distroless, no shell, non-root (uid/gid 65532) ------------------
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/shop /shop
USER nonroot:nonroot
# 8080: HTTP API (HTTP_ADDR); 9090: /healthz, /readyz, /metrics of the other processes (METRICS_ADDR)
EXPOSE 8080 9090
ENTRYPOINT ["/shop"]
CMD ["api"]
