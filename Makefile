# shop's two commands are `make run` and `make test`; the rest helps them.
# Every tool a target needs beyond Go is fetched into bin/tools, at the
# version pinned here.
GO          ?= go
BIN         := bin/shop
TOOLS       := $(CURDIR)/bin/tools
STATICCHECK := $(TOOLS)/staticcheck@v0.8.2
GOTESTSUM   := $(TOOLS)/gotestsum@v1.13.0
GOVULNCHECK := $(TOOLS)/govulncheck@v1.9.0

.PHONY: build run up down reset test rabbitmq-management test-short chaos fuzz vuln lint fmt-check vet staticcheck bench bench-reads contracts-snapshot

build:
	$(GO) build -o $(BIN) ./cmd/shop

# The whole system in this terminal: Postgres, Redis and RabbitMQ checked (or started with
# docker compose), migrations, then the API, the relay and every consumer group; Ctrl-C stops it.
run: build
	./scripts/run.sh

# The same in the background, for a walkthrough in one terminal: it returns once shop is
# ready; `make down` stops it. Its log is in bin/shop-run.log.
up: build
	./scripts/run.sh --background

down:
	./scripts/run.sh --stop

# Stops shop and wipes what it keeps: its database, its Redis keys and its RabbitMQ queues
# (those DATABASE_URL, REDIS_URL/REDIS_PREFIX and AMQP_URL name).
reset: down build
	SHOP_ENV=dev ./$(BIN) reset

# Lint, then every test with the race detector against the real services (each fuzz
# target's seed corpus runs as a plain test; `make fuzz` explores beyond it). The summary
# at the end lists every test that was skipped, and why. Four tests of a package run at
# once (-parallel 4, not one per core): most of them wait on processes and services.
test: lint rabbitmq-management $(GOTESTSUM)
	@command -v nginx >/dev/null || echo "make test: nginx is not installed, so TestNginxFrontsTheAPI will be SKIPPED (apt-get install nginx-light; CI installs it)"
	$(GOTESTSUM) --format pkgname --format-hide-empty-pkg -- -race -count=1 -parallel 4 -timeout 15m ./...

# The queue-depth tests read RabbitMQ's management API: enabled here if it is off.
rabbitmq-management:
	./scripts/rabbitmq-management.sh

# The soak: two APIs, two relays and two processes of every group, with a RabbitMQ node and a
# Redis of their own, under `shop loadtest` while processes are SIGKILLed and RabbitMQ, Redis
# and Postgres's connections are cut at seeded moments; then every invariant is checked
# (cmd/shop/chaos_test.go). `make test` runs it for 40 s. CHAOS_SEED=N replays a run.
CHAOS_DURATION ?= 10m
chaos:
	CHAOS_DURATION=$(CHAOS_DURATION) $(GO) test -race -count=1 -v -run '^TestChaos$$' -timeout 60m ./cmd/shop/

# What needs no service: the domain and the other pure packages, in seconds.
test-short:
	$(GO) test -short -count=1 ./...

# Each fuzz target (the request decoders, the event envelope's) for FUZZTIME; the seed
# corpora in testdata/fuzz also run with every plain `go test`. Not part of `make test`:
# on a 2-core machine with a cold build cache its instrumented builds took 8 minutes of CI.
FUZZTIME ?= 3s
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

# govulncheck against vuln.go.dev (GOVULNDB to use another copy): fails on a reachable
# vulnerability; offline it warns that nothing was checked. Not part of `make test`.
vuln: $(GOVULNCHECK)
	./scripts/vuln.sh $(GOVULNCHECK)

lint: fmt-check vet staticcheck

fmt-check:
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files need formatting (run gofmt -w):"; echo "$$unformatted"; exit 1; \
	fi; echo "gofmt: ok"

# vet and staticcheck build as the tests do (-race): on a cold cache every package is
# compiled once, for the three of them, instead of once without -race and again with it.
vet:
	$(GO) vet -race ./...

staticcheck: $(STATICCHECK)
	GOFLAGS="$$GOFLAGS -race" $(STATICCHECK) ./...

# The package of each tool's command; a tool is fetched as $(TOOLS)/<name>@<version>.
staticcheck_pkg := honnef.co/go/tools/cmd/staticcheck
gotestsum_pkg   := gotest.tools/gotestsum
govulncheck_pkg := golang.org/x/vuln/cmd/govulncheck

$(TOOLS)/%:
	@mkdir -p $(TOOLS)/build
	@echo "fetching $*"
	GOBIN=$(TOOLS)/build $(GO) install $($(firstword $(subst @, ,$*))_pkg)@$(lastword $(subst @, ,$*))
	mv $(TOOLS)/build/$(firstword $(subst @, ,$*)) $@

# Benchmarks (see BENCHMARKS.md); they need wrk and pgbench, and say so.
bench:
	bash scripts/bench-orders.sh

bench-reads:
	bash scripts/bench-reads.sh

# At a release: the contracts as published become the baseline that
# TestContractsKeepTheirCompatibility compares every later change with.
contracts-snapshot:
	cp api/openapi.yaml api/asyncapi.yaml api/compat/
