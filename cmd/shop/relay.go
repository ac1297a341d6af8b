package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

func relayCmd(ctx context.Context, cfg config, log *slog.Logger) error {
	reg := newRegistry()
	p, err := relayProcess(ctx, cfg, log, reg)
	if err != nil {
		return err
	}
	defer p.close()
	return runWithOps(ctx, log, cfg.MetricsAddr, reg, p.ready, p.run)
}

// relayProcess wires an outbox relay; its metrics go to reg.
func relayProcess(ctx context.Context, cfg config, log *slog.Logger, reg *prometheus.Registry) (*process, error) {
	pool, err := store.Open(ctx, store.Config{DatabaseURL: cfg.DatabaseURL, MaxConns: int32(cfg.RelayWorkers) + 4})
	if err != nil {
		return nil, err
	}
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		Pool: pool, AMQPURL: cfg.AMQPURL, Logger: log, Metrics: outbox.NewMetrics(reg),
		BatchSize: cfg.RelayBatchSize, Workers: cfg.RelayWorkers, Linger: cfg.RelayLinger,
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &process{
		relay: relay,
		run:   relay.Run,
		ready: func(ctx context.Context) error {
			if err := pool.Ping(ctx); err != nil {
				return fmt.Errorf("postgres: %w", err)
			}
			if !relay.Connected() {
				return errors.New("rabbitmq: not connected")
			}
			return nil
		},
		close: pool.Close,
	}, nil
}

func outboxCmd(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) != 1 || args[0] != "status" {
		return fmt.Errorf("%w: shop outbox status", errUsage)
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer pool.Close()
	status, err := outbox.ReadStatus(ctx, pool)
	if err != nil {
		return err
	}
	var total int64
	fmt.Fprintf(stdout, "%-9s %10s %14s\n", "partition", "pending", "oldest")
	for _, s := range status {
		total += s.Pending
		oldest := "-"
		if s.Pending > 0 {
			oldest = s.OldestAge.Round(time.Millisecond).String()
		}
		fmt.Fprintf(stdout, "%-9d %10d %14s\n", s.Partition, s.Pending, oldest)
	}
	fmt.Fprintf(stdout, "%-9s %10d\n", "total", total)
	return nil
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// process is a long-running part of shop, wired and not yet started: its
// run loop, its readiness, and what to release once it ended.
type process struct {
	run   func(ctx context.Context) error
	ready func(ctx context.Context) error
	close func()

	notifier *outbox.Notifier // wakes the relays after its commits, if it writes
	relay    *outbox.Relay    // if it relays
}

// runWithOps runs a long-lived process with its operations server on addr:
// /healthz (alive), /readyz (ready answers nil) and /metrics.
func runWithOps(ctx context.Context, log *slog.Logger, addr string, reg *prometheus.Registry,
	ready func(context.Context) error, run func(context.Context) error) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		if err := ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `{"status":"unavailable","reason":%q}`, err.Error())
			return
		}
		_, _ = io.WriteString(w, `{"status":"ready"}`)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opsErr := make(chan error, 1)
	go func() { opsErr <- serve(ctx, log, addr, mux) }()
	err := run(ctx)
	cancel()
	if opsE := <-opsErr; err == nil {
		err = opsE
	}
	return err
}
