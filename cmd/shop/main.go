// Command shop is the one binary of the shop backend: the HTTP API, the
// schema migrations and the operator commands, chosen by subcommand.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "shop:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

const usage = `usage: shop COMMAND [ARGS]

commands:
  run         migrate, then the API, the relay and every consumer group in one
              process (SHOP_ENV defaults to dev): the one-command default
  migrate     create the database if missing and apply migrations
  api         serve the HTTP API on HTTP_ADDR
  relay       forward the outbox to RabbitMQ (any number of replicas)
  outbox status
              pending rows and the age of the oldest, per partition
  user add --email E --password P [--name N] [--admin]
              create a user (how the first admin exists)
  consume GROUP...
              run consumer groups: orders, inventory, emails, projections
  dead list|replay GROUP [N]
              show or replay the messages in a group's dead queue
  projections rebuild
              rewrite every Redis read model from Postgres (safe while running)
  help        show this text

configuration comes from the environment: DATABASE_URL, AMQP_URL, HTTP_ADDR,
METRICS_ADDR, JWT_SECRET, JWT_TTL, SHOP_ENV, LOG_LEVEL, DB_MAX_CONNS,
RELAY_BATCH_SIZE, RELAY_WORKERS, RELAY_LINGER, CONSUMER_CONCURRENCY, CONSUMER_BATCH,
CONSUMER_MAX_RETRIES, CONSUMER_UNAVAILABLE_FOR, SMTP_ADDR, SMTP_FROM, SMTP_USERNAME,
SMTP_PASSWORD, REDIS_URL, REDIS_PREFIX
(see README.md)
`

// run is the whole program: it parses args, reads configuration through
// getenv, and runs one command until it ends or ctx is cancelled.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	if args[0] == "run" && strings.TrimSpace(getenv("SHOP_ENV")) == "" {
		// The one-command default runs in dev; it says so below.
		getenv = withEnv(getenv, "SHOP_ENV", "dev")
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	if args[0] == "run" && cfg.Env == "dev" {
		log.Warn("shop run: SHOP_ENV=dev (development defaults; set SHOP_ENV=prod and JWT_SECRET for production)")
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "migrate":
		return migrateCmd(ctx, cfg, log)
	case "run":
		return runCmd(ctx, cfg, log)
	case "api":
		return apiCmd(ctx, cfg, log)
	case "relay":
		return relayCmd(ctx, cfg, log)
	case "outbox":
		return outboxCmd(ctx, cfg, rest, stdout)
	case "user":
		return userCmd(ctx, cfg, log, rest, stdout, stderr)
	case "consume":
		return consumeCmd(ctx, cfg, log, rest)
	case "dead":
		return deadCmd(ctx, cfg, rest, stdout)
	case "projections":
		return projectionsCmd(ctx, cfg, rest, stdout)
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
}

// withEnv returns getenv with key set to value.
func withEnv(getenv func(string) string, key, value string) func(string) string {
	return func(k string) string {
		if k == key {
			return value
		}
		return getenv(k)
	}
}
