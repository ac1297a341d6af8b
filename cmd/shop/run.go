package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// runCmd is `shop run`: migrate, then the API, the relay and every consumer
// group in one process, sharing one metrics registry served by the API's
// /metrics. The first part to fail stops the others; SIGINT or SIGTERM stops
// them all, each draining what it has in flight.
func runCmd(ctx context.Context, cfg config, log *slog.Logger) error {
	if err := migrateCmd(ctx, cfg, log); err != nil {
		return err
	}
	reg := newRegistry()
	api, err := apiProcess(ctx, cfg, log, reg)
	if err != nil {
		return err
	}
	defer api.close()
	relay, err := relayProcess(ctx, cfg, log, reg)
	if err != nil {
		return err
	}
	defer relay.close()
	consumers, err := consumeProcess(ctx, cfg, log, reg, consumerGroups)
	if err != nil {
		return err
	}
	defer consumers.close()
	// Commits wake the relay beside them directly, not through Postgres.
	api.notifier.WakeLocal(relay.relay)
	consumers.notifier.WakeLocal(relay.relay)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, part := range []struct {
		name string
		p    *process
	}{{"api", api}, {"relay", relay}, {"consumers", consumers}} {
		wg.Go(func() {
			if err := part.p.run(ctx); err != nil {
				errs[i] = fmt.Errorf("%s: %w", part.name, err)
			}
			cancel() // one part ended: stop the others
		})
	}
	log.Info("shop run: api, relay and consumers started", "http_addr", cfg.HTTPAddr, "groups", consumerGroups)
	wg.Wait()
	return errors.Join(errs...)
}
