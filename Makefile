# Build, lint and test shop. `make test` is what CI runs (.ci/run).
GO          ?= go
BIN         := bin/shop
# staticcheck from PATH, else from $(go env GOPATH)/bin (where `go install` puts it).
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo "$$($(GO) env GOPATH)/bin/staticcheck")

.PHONY: build test lint fmt-check vet staticcheck migrate run bench bench-reads

build:
	$(GO) build -o $(BIN) ./cmd/shop

# Lint first, then every test with the race detector; any failure fails the target.
test: lint
	$(GO) test -race -count=1 -timeout 12m ./...

lint: fmt-check vet staticcheck

fmt-check:
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files need formatting (run gofmt -w):"; echo "$$unformatted"; exit 1; \
	fi; echo "gofmt: ok"

vet:
	$(GO) vet ./...

staticcheck:
	$(STATICCHECK) ./...

migrate: build
	./$(BIN) migrate

# Checks (or starts, via docker compose) Postgres, Redis and RabbitMQ, migrates, runs everything.
run: build
	./scripts/run.sh

bench:
	bash scripts/bench-orders.sh

bench-reads:
	bash scripts/bench-reads.sh
