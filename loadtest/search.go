package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Search is what FindRate tried, and the rate it found.
type Search struct {
	// P99 is the threshold: a rate is sustained when the p99 of every
	// request of its step, all endpoints together, stays under it.
	P99   time.Duration `json:"-"`
	P99MS float64       `json:"p99_threshold_ms"`
	Steps []SearchStep  `json:"steps"`
	// Sustained is the highest rate that passed (0: not even the first),
	// and Report its step's report.
	Sustained float64 `json:"sustained_rate"`
	Report    *Report `json:"report,omitempty"`
}

// SearchStep is one rate tried.
type SearchStep struct {
	Rate   float64 `json:"rate"`
	P99MS  float64 `json:"p99_ms"`
	Passed bool    `json:"passed"`
	Why    string  `json:"why,omitempty"` // why it did not pass
}

// FindRate finds the highest rate (requests arriving per second, the mix
// of cfg) the server sustains: every request's p99 under p99, no 5xx, no
// arrival dropped, every accepted order decided within the settle time.
// From cfg.Rate (default 50/s) it doubles the rate until a step fails, then
// halves the gap between the last rate that passed and the first that
// failed until it is within 10 %. Each step lasts cfg.Duration, with the
// same customers and products (set up once). A rate fails only when two
// steps at it fail, one right after the other: on a machine shared with
// the server, one step's tail can be a stall of the machine's, and a
// single stall would halve the rate found.
func FindRate(ctx context.Context, cfg Config, p99 time.Duration) (*Search, error) {
	if p99 <= 0 {
		return nil, fmt.Errorf("p99 threshold %s: must be positive", p99)
	}
	t, err := prepare(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer t.client.CloseIdleConnections()
	s := &Search{P99: p99, P99MS: float64(p99) / float64(time.Millisecond)}
	settle := min(t.cfg.Settle, 10*time.Second)
	once := func(rate float64) (bool, error) {
		r, err := t.step(ctx, rate, cfg.Duration, settle)
		if err != nil {
			return false, err
		}
		st := SearchStep{Rate: rate, P99MS: r.Overall.P99}
		switch {
		case r.ServerErrors > 0:
			st.Why = fmt.Sprintf("%d answers 5xx", r.ServerErrors)
		case r.Undecided > 0:
			st.Why = fmt.Sprintf("%d orders not decided within %s", r.Undecided, settle)
		case r.Dropped > 0:
			st.Why = fmt.Sprintf("%d arrivals dropped", r.Dropped)
		case r.Overall.P99 >= s.P99MS:
			st.Why = fmt.Sprintf("p99 %.1f ms", r.Overall.P99)
		default:
			st.Passed = true
			if rate > s.Sustained {
				s.Sustained, s.Report = rate, r
			}
		}
		s.Steps = append(s.Steps, st)
		return st.Passed, nil
	}
	try := func(rate float64) (bool, error) {
		ok, err := once(rate)
		if err != nil || ok {
			return ok, err
		}
		return once(rate)
	}
	good, bad := 0.0, 0.0
	rate := cfg.Rate
	if rate <= 0 {
		rate = 50
	}
	for bad == 0 {
		ok, err := try(rate)
		if err != nil {
			return s, err
		}
		if ok {
			good, rate = rate, 2*rate
		} else {
			bad = rate
		}
	}
	for good > 0 && (bad-good) > good/10 {
		mid := float64(int((good + bad) / 2))
		ok, err := try(mid)
		if err != nil {
			return s, err
		}
		if ok {
			good = mid
		} else {
			bad = mid
		}
	}
	return s, nil
}

// WriteTable writes what the search tried and found, for people.
func (s *Search) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rate/s\tp99 ms\tsustained\t")
	for _, st := range s.Steps {
		verdict := "yes"
		if !st.Passed {
			verdict = "no: " + st.Why
		}
		fmt.Fprintf(tw, "%.0f\t%.1f\t%s\t\n", st.Rate, st.P99MS, verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if s.Report == nil {
		_, err := fmt.Fprintf(w, "\nno rate tried kept p99 under %.0f ms\n", s.P99MS)
		return err
	}
	fmt.Fprintf(w, "\nsustained: %.0f requests/s with p99 under %.0f ms; that step:\n\n", s.Sustained, s.P99MS)
	return s.Report.WriteTable(w)
}

// WriteJSON writes the search as JSON.
func (s *Search) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}
