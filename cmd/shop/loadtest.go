package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/shopdev/shop/loadtest"
)

// loadtestConfig is what shop loadtest reads of the environment: nothing
// but how to log. It talks to the API only, never to the databases.
type loadtestConfig struct {
	Log logSection
}

// loadtestInput is what shop loadtest is told.
type loadtestInput struct {
	cfg  loadtest.Config
	mix  string
	json bool
	find bool
	p99  time.Duration
}

// loadtestFlags declares the flags of shop loadtest into in.
func loadtestFlags(in *loadtestInput) func(*flag.FlagSet) {
	return func(fs *flag.FlagSet) {
		fs.StringVar(&in.cfg.URL, "url", "http://127.0.0.1:8080", "the API; several, comma-separated, are used in turn (API replicas without a balancer)")
		fs.Float64Var(&in.cfg.Rate, "rate", 0, "requests per second, arriving at fixed times whatever the answers (open model);\n0: --connections back to back instead (closed model, the server's top speed)")
		fs.IntVar(&in.cfg.Connections, "connections", 16, "workers sending requests back to back, when --rate is 0")
		fs.DurationVar(&in.cfg.Duration, "duration", 30*time.Second, "how long load is sent")
		fs.StringVar(&in.mix, "mix", loadtest.DefaultMix, "each request kind's weight: place (an order of 1 to 3 lines), read (a product, or one of\nthe customer's orders), cancel (a recent order), restock (as the admin)")
		fs.IntVar(&in.cfg.Products, "products", 20, "products the load uses: created with an admin, else the first the catalogue lists")
		fs.IntVar(&in.cfg.Customers, "customers", 20, "customers registered and signed in before the load (not timed)")
		fs.StringVar(&in.cfg.AdminEmail, "admin-email", "", "an admin (shop user add --admin), who creates the products and restocks")
		fs.StringVar(&in.cfg.AdminPassword, "admin-password", "", "the admin's password")
		fs.Uint64Var(&in.cfg.Seed, "seed", 0, "makes the choices repeatable; 0: a random one, printed")
		fs.DurationVar(&in.cfg.Settle, "settle", 30*time.Second, "how long after the load an accepted order may take to be seen decided")
		fs.BoolVar(&in.json, "json", false, "the summary as JSON on stdout, instead of a table")
		fs.BoolVar(&in.cfg.ListOrders, "list-orders", false, "with --json, every accepted order's id too (accepted_orders)")
		fs.BoolVar(&in.find, "find-rate", false, "find the highest rate the server sustains with every request's p99 under --p99,\nno 5xx and every order decided: steps of --duration from --rate (default 50/s), doubling, then halving the gap;\na rate fails when two steps at it fail in a row")
		fs.DurationVar(&in.p99, "p99", 100*time.Millisecond, "the p99 a sustained rate keeps under, with --find-rate")
	}
}

// errLoadFailed is a load test the server failed: a 5xx answer, or an
// accepted order never decided.
var errLoadFailed = errors.New("load test failed")

// loadtestCmd is shop loadtest.
func loadtestCmd(ctx context.Context, inv invocation) error {
	var in loadtestInput
	if err := parseFlags(inv, "loadtest", loadtestFlags(&in)); err != nil {
		return err
	}
	var cfg loadtestConfig
	if _, err := inv.load(&cfg); err != nil {
		return err
	}
	mix, err := loadtest.ParseMix(in.mix)
	if err != nil {
		return fmt.Errorf("%w: --%w", errUsage, err)
	}
	in.cfg.Mix = mix
	in.cfg.Progress = inv.stderr
	if f, ok := inv.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		in.cfg.Terminal = true
	}
	if err := in.cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if in.find {
		return findRate(ctx, inv, in)
	}
	report, err := loadtest.Run(ctx, in.cfg)
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	if in.json {
		err = report.WriteJSON(inv.stdout)
	} else {
		err = report.WriteTable(inv.stdout)
	}
	if err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	if report.Failed() {
		return fmt.Errorf("%w: %d answers 5xx, %d accepted orders not decided within %s (seed %d)",
			errLoadFailed, report.ServerErrors, report.Undecided, in.cfg.Settle, report.Seed)
	}
	return nil
}

// findRate is shop loadtest --find-rate.
func findRate(ctx context.Context, inv invocation, in loadtestInput) error {
	search, err := loadtest.FindRate(ctx, in.cfg, in.p99)
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	if in.json {
		err = search.WriteJSON(inv.stdout)
	} else {
		err = search.WriteTable(inv.stdout)
	}
	if err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	if search.Sustained == 0 {
		return fmt.Errorf("%w: no rate tried kept p99 under %s", errLoadFailed, in.p99)
	}
	return nil
}
