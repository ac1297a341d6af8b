package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// endpoint is what one endpoint's requests saw: latencies in microseconds,
// from 1 µs to 5 minutes at 3 significant digits, and the count of each
// status (0: no answer, -1: an answer that could not be read).
type endpoint struct {
	mu       sync.Mutex
	hist     *hdrhistogram.Histogram
	statuses map[int]int
}

func newEndpoint() *endpoint {
	return &endpoint{hist: hdrhistogram.New(1, int64(5*time.Minute/time.Microsecond), 3), statuses: map[int]int{}}
}

// record records a request that started (or was due) at start.
func (e *endpoint) record(start time.Time, status int, err error) {
	if err != nil {
		status = 0
	}
	us := time.Since(start).Microseconds()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.statuses[status]++
	if status > 0 {
		_ = e.hist.RecordValue(max(us, 1)) // beyond 5 minutes: not recorded, still counted
	}
}

// Latency is a latency distribution, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p99_9_ms"`
	Max  float64 `json:"max_ms"`
}

func (e *endpoint) latency() Latency {
	e.mu.Lock()
	defer e.mu.Unlock()
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{P50: ms(e.hist.ValueAtQuantile(50)), P90: ms(e.hist.ValueAtQuantile(90)), P99: ms(e.hist.ValueAtQuantile(99)),
		P999: ms(e.hist.ValueAtQuantile(99.9)), Max: ms(e.hist.Max())}
}

// EndpointReport is what one endpoint's requests saw.
type EndpointReport struct {
	Endpoint string  `json:"endpoint"`
	Requests int     `json:"requests"`
	Rate     float64 `json:"rate"` // requests answered per second of load
	Latency  Latency `json:"latency"`
	// Statuses counts the answers by status ("202": n); "error" counts
	// requests that got no answer, "unreadable" answers that could not be
	// read.
	Statuses map[string]int `json:"statuses"`
}

// Report is what a load test saw.
type Report struct {
	URL         string           `json:"url"`
	Seed        uint64           `json:"seed"`
	Rate        float64          `json:"target_rate"` // 0: closed model
	Connections int              `json:"connections,omitempty"`
	Seconds     float64          `json:"seconds"` // of load
	Endpoints   []EndpointReport `json:"endpoints"`
	// Overall is the latency of every request, all endpoints together.
	Overall Latency `json:"overall"`
	// Dropped counts arrivals the client did not send: too many requests
	// were waiting already (the server had stopped answering).
	Dropped int64 `json:"dropped"`
	// EndToEnd is from an order's 202 to the order seen decided through
	// GET with min_version, for the Decided orders of the Accepted; the
	// rest were not decided within the settle time.
	EndToEnd  Latency `json:"end_to_end"`
	Accepted  int64   `json:"orders_accepted"`
	Decided   int64   `json:"orders_decided"`
	Undecided int64   `json:"orders_undecided"`
	// ServerErrors counts 5xx answers.
	ServerErrors int `json:"server_errors"`
	// Slowest is the decided order that took longest, and when it was
	// accepted; Orders, every accepted order's id, when Config.ListOrders.
	Slowest SlowOrder `json:"slowest_order"`
	Orders  []string  `json:"accepted_orders,omitempty"`
}

// SlowOrder is an order and how long it took to be seen decided.
type SlowOrder struct {
	ID         string    `json:"id"`
	AcceptedAt time.Time `json:"accepted_at"`
	WaitedMS   float64   `json:"waited_ms"`
}

// Failed reports whether the server failed the test: a 5xx answer, or an
// accepted order never decided.
func (r *Report) Failed() bool { return r.ServerErrors > 0 || r.Undecided > 0 }

func (t *test) report(loaded time.Duration) *Report {
	r := &Report{URL: t.cfg.URL, Seed: t.cfg.Seed, Rate: t.cfg.Rate, Seconds: loaded.Seconds(), Dropped: t.dropped.Load(),
		EndToEnd: t.e2e.latency(), Accepted: t.accepted.Load(), Decided: t.decided.Load()}
	if t.cfg.Rate == 0 {
		r.Connections = t.cfg.Connections
	}
	r.Undecided = r.Accepted - r.Decided
	t.mu.Lock()
	r.Slowest = t.slowest
	if t.cfg.ListOrders {
		r.Orders = slices.Clone(t.orders)
	}
	t.mu.Unlock()
	all := newEndpoint()
	for _, name := range []string{EndpointPlace, EndpointProduct, EndpointOrder, EndpointCancel, EndpointRestock} {
		e := t.stats[name]
		e.mu.Lock()
		er := EndpointReport{Endpoint: name, Statuses: map[string]int{}}
		for status, n := range e.statuses {
			er.Requests += n
			switch {
			case status == 0:
				er.Statuses["error"] += n
			case status < 0:
				er.Statuses["unreadable"] += n
			default:
				er.Statuses[strconv.Itoa(status)] += n
				if status >= 500 {
					r.ServerErrors += n
				}
			}
		}
		all.hist.Merge(e.hist)
		e.mu.Unlock()
		if er.Requests == 0 {
			continue
		}
		er.Rate = float64(er.Requests) / loaded.Seconds()
		er.Latency = e.latency()
		r.Endpoints = append(r.Endpoints, er)
	}
	r.Overall = all.latency()
	return r
}

// WriteTable writes the report as a table for people.
func (r *Report) WriteTable(w io.Writer) error {
	model := fmt.Sprintf("%.0f requests/s arriving (open model)", r.Rate)
	if r.Rate == 0 {
		model = fmt.Sprintf("%d connections back to back (closed model)", r.Connections)
	}
	fmt.Fprintf(w, "%s, %.1f s of load, %s, seed %d\n\n", r.URL, r.Seconds, model, r.Seed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "endpoint\trequests\treq/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tanswers\t")
	row := func(name string, n int, rate float64, l Latency, answers string) {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t\n", name, n, rate, l.P50, l.P90, l.P99, l.P999, l.Max, answers)
	}
	total := 0
	for _, e := range r.Endpoints {
		row(e.Endpoint, e.Requests, e.Rate, e.Latency, statusList(e.Statuses))
		total += e.Requests
	}
	row("all requests", total, float64(total)/r.Seconds, r.Overall, "")
	row("202 → decided (end to end)", int(r.Decided), float64(r.Decided)/r.Seconds, r.EndToEnd,
		fmt.Sprintf("%d of %d decided", r.Decided, r.Accepted))
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Slowest.ID != "" {
		fmt.Fprintf(w, "\nthe slowest order, %s, accepted at %s, was decided %.1f ms later\n",
			r.Slowest.ID, r.Slowest.AcceptedAt.Format("15:04:05.000"), r.Slowest.WaitedMS)
	}
	if r.Dropped > 0 {
		fmt.Fprintf(w, "\n%d arrivals dropped by the client: %d requests were waiting already\n", r.Dropped, maxInFlight)
	}
	switch {
	case r.Failed():
		_, err := fmt.Fprintf(w, "\nFAILED: %d answers 5xx, %d accepted orders not decided in time\n", r.ServerErrors, r.Undecided)
		return err
	default:
		_, err := fmt.Fprintln(w, "\nok: no 5xx, every accepted order decided")
		return err
	}
}

// WriteJSON writes the report as JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// statusList reads "202×1200 409×3 error×1".
func statusList(statuses map[string]int) string {
	keys := make([]string, 0, len(statuses))
	for k := range statuses {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, statuses[k])
	}
	return strings.Join(parts, " ")
}

// progress writes a line a second (a bar, redrawn in place, on a
// terminal) until the returned stop is called.
func (t *test) progress(start time.Time) (stop func()) {
	if t.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		last := 0
		for {
			select {
			case <-done:
				if t.cfg.Terminal {
					fmt.Fprintln(t.cfg.Progress)
				}
				return
			case <-tick.C:
			}
			total, errs, p99 := 0, 0, 0.0
			for _, e := range t.stats {
				e.mu.Lock()
				for status, n := range e.statuses {
					total += n
					if status <= 0 || status >= 500 {
						errs += n
					}
				}
				p99 = max(p99, float64(e.hist.ValueAtQuantile(99))/1000)
				e.mu.Unlock()
			}
			elapsed := time.Since(start)
			line := fmt.Sprintf("%4.0fs  %6d req/s  p99 %7.1f ms  errors %d  in flight %d  orders decided %d/%d",
				elapsed.Seconds(), total-last, p99, errs, t.inFlight.Load(), t.decided.Load(), t.accepted.Load())
			last = total
			if t.cfg.Terminal {
				frac := min(elapsed.Seconds()/t.cfg.Duration.Seconds(), 1)
				bar := strings.Repeat("█", int(frac*20)) + strings.Repeat("░", 20-int(frac*20))
				fmt.Fprintf(t.cfg.Progress, "\r%s %s", bar, line)
			} else {
				fmt.Fprintln(t.cfg.Progress, line)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
