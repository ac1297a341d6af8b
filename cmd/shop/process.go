package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/net/netutil"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopdev/shop/internal/ops"
	"github.com/shopdev/shop/internal/telemetry"
	"github.com/shopdev/shop/store"
)

// shutdownTimeout bounds how long in-flight requests may take after SIGTERM.
const shutdownTimeout = 20 * time.Second

// drainDeadline bounds how long a process takes to stop once told to,
// whatever its dependencies are doing: a part still running then is left
// behind, and the process exits with an error naming it. Kubernetes'
// terminationGracePeriodSeconds must be longer (deploy/kubernetes).
const drainDeadline = shutdownTimeout + 5*time.Second

// part is one long-running part of a process (the API, the relay, the
// consumer groups), wired and not started yet.
type part struct {
	name   string
	run    func(ctx context.Context) error // until ctx ends, draining what it has in flight
	checks []ops.Check                     // what it needs, for /readyz
	close  func()                          // releases what it holds, once it stopped
}

// process is what every part of a process reports to: the metrics
// registry and the readiness, which the ops server serves (and the API on
// its own port), and the tracing its parts instrument themselves with.
type process struct {
	reg   *prometheus.Registry
	ready *ops.Readiness
	tel   *telemetry.Telemetry
}

// tracing is the tracer provider the parts record spans with, or nil
// when tracing is off: each part then skips its instrumentation, at no
// cost.
func (p process) tracing() trace.TracerProvider {
	if !p.tel.Enabled() {
		return nil
	}
	return p.tel.Provider()
}

// serve runs parts, with the ops server (/healthz, /readyz of every part's
// checks, /metrics, and Go's profiles if cfg.Profiles) on cfg.MetricsAddr,
// until ctx ends or a part stops: the first to stop stops the others. banner is called once every listener is bound
// and every part started, with the ops server's address. It closes every
// part before it returns.
func serve(ctx context.Context, log *slog.Logger, cfg opsSection, proc process, banner func(opsAddr string), parts ...*part) error {
	stuck := map[*part]bool{} // parts that did not stop by the deadline: what they hold stays open
	defer func() {
		for _, p := range parts {
			if p.close != nil && !stuck[p] {
				p.close()
			}
		}
	}()
	for _, p := range parts {
		proc.ready.Add(p.checks...)
	}
	handler := proc.handler()
	if cfg.Profiles {
		handler = ops.WithProfiles(handler)
	}
	opsServer, err := listen(log, "ops", cfg.MetricsAddr, handler, opsLimits)
	if err != nil {
		return err
	}
	all := append([]*part{{name: "ops", run: opsServer.serve}}, parts...)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		part *part
		err  error
	}
	done := make(chan result, len(all))
	for _, p := range all {
		go func() {
			err := p.run(ctx)
			cancel() // one part stopped: stop the others
			done <- result{p, err}
		}()
	}
	banner(opsServer.addr())
	var errs []error
	running := map[*part]bool{}
	for _, p := range all {
		running[p] = true
	}
	stopping, deadline := ctx.Done(), (<-chan time.Time)(nil)
	for len(running) > 0 {
		select {
		case r := <-done:
			delete(running, r.part)
			if r.err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", r.part.name, r.err))
			}
		case <-stopping:
			stopping, deadline = nil, time.After(drainDeadline) // now wait for the parts, or the deadline
		case <-deadline:
			var names []string
			for _, p := range all {
				if running[p] {
					names = append(names, p.name)
					stuck[p] = true
				}
			}
			return errors.Join(append(errs, fmt.Errorf("still stopping after %s, left behind: %s", drainDeadline, strings.Join(names, ", ")))...)
		}
	}
	return errors.Join(errs...)
}

// serveCmd is what every long-running command does: it loads cfg (whose
// ops section is ops, and telemetry section otel), starts tracing as
// service unless OTEL_SERVICE_NAME names it, builds its parts with build,
// and serves them, with the ops server, until ctx ends; then it flushes
// the spans. build returns the parts and the banner to log once they
// started.
func serveCmd(ctx context.Context, inv invocation, service string, cfg any, ops *opsSection, otel *otelSection,
	build func(log *slog.Logger, proc process) (banner func(opsAddr string), parts []*part, err error)) (err error) {
	log, err := inv.load(cfg)
	if err != nil {
		return err
	}
	tel, err := telemetry.Start(ctx, otel.config(service), log)
	if err != nil {
		return err
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err = errors.Join(err, tel.Shutdown(fctx))
	}()
	if tel.Enabled() {
		log.Info("tracing on", "service", otel.config(service).Service(), "endpoint", redact(otel.endpoint()), "protocol", otel.Protocol)
	}
	proc := newProcess(tel)
	banner, parts, err := build(log, proc)
	if err != nil {
		return err
	}
	return serve(ctx, log, *ops, proc, banner, parts...)
}

// newProcess returns a process whose registry has the Go runtime's and the
// process's own metrics, and that is ready once its parts' checks pass.
func newProcess(tel *telemetry.Telemetry) process {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return process{reg: reg, ready: ops.NewReadiness(), tel: tel}
}

// register adds the collectors of a part's pools to the process's metrics.
func (p process) register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := p.reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// pgTracing is the tracing of a part's Postgres work (telemetry.Postgres):
// its pool's statements and its unit of work's transactions, each a span
// inside the caller's; nothing when tracing is off.
type pgTracing struct{ pg *telemetry.Postgres }

func (p process) postgres() pgTracing {
	if tp := p.tracing(); tp != nil {
		return pgTracing{telemetry.NewPostgres(tp)}
	}
	return pgTracing{}
}

// queries is the pool's tracer; nil when tracing is off.
func (t pgTracing) queries() pgx.QueryTracer {
	if t.pg == nil {
		return nil
	}
	return t.pg
}

// units returns u, its transactions traced when tracing is on.
func (t pgTracing) units(u *store.UnitOfWork) *store.UnitOfWork {
	if t.pg == nil {
		return u
	}
	return u.Traced(t.pg)
}

// traceRedis adds the spans of a part's Redis commands, when tracing is on.
func traceRedis(p process, rdb *redis.Client) {
	if tp := p.tracing(); tp != nil {
		rdb.AddHook(telemetry.RedisHook(tp))
	}
}

// handler serves /healthz, /readyz and /metrics of the process.
func (p process) handler() http.Handler { return ops.Handler(p.reg, p.ready) }

// httpServer is an HTTP server whose address is bound.
type httpServer struct {
	log *slog.Logger
	ln  net.Listener
	srv *http.Server
}

// serverLimits bound what clients may hold of a server: time to send a
// request, to read an answer, to keep an idle connection, and connections
// at once (0: no cap).
type serverLimits struct {
	read, write, idle time.Duration
	maxConns          int
}

// opsLimits are the ops server's: few, short requests from scrapers and
// probes.
var opsLimits = serverLimits{read: 30 * time.Second, write: 30 * time.Second, idle: 120 * time.Second, maxConns: 64}

// listen binds addr for handler and logs where it listens; serve serves.
func listen(log *slog.Logger, name, addr string, handler http.Handler, limits serverLimits) (*httpServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", name, addr, err)
	}
	if limits.maxConns > 0 {
		// Past the cap, connections wait in the kernel's backlog instead
		// of each costing a goroutine and buffers.
		ln = netutil.LimitListener(ln, limits.maxConns)
	}
	log = log.With("server", name)
	log.Info("listening", "addr", ln.Addr().String())
	return &httpServer{log: log, ln: ln, srv: &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: min(5*time.Second, limits.read),
		ReadTimeout:       limits.read,
		WriteTimeout:      limits.write,
		IdleTimeout:       limits.idle,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}, nil
}

// addr is the address the server listens on.
func (s *httpServer) addr() string { return s.ln.Addr().String() }

// serve serves until ctx ends, then drains in-flight requests for up to
// shutdownTimeout.
func (s *httpServer) serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	s.log.Debug("stopped")
	return nil
}

// urlOf turns a listening address into a URL someone on this machine can
// open: a wildcard host becomes localhost.
func urlOf(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}
