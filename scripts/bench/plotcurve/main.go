// Command plotcurve draws placed → decided latency (p50 and p99) against the
// offered rate, from `shop loadtest --json` summaries, as an SVG; it also
// prints the points as a Markdown table. scripts/bench-latency-curve.sh
// runs it.
//
//	plotcurve -o docs/benchmarks/placed-to-decided.svg run-100.json run-200.json ...
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// summary is the part of a loadtest JSON summary the plot reads.
type summary struct {
	Rate     float64 `json:"target_rate"`
	EndToEnd struct {
		P50 float64 `json:"p50_ms"`
		P99 float64 `json:"p99_ms"`
	} `json:"end_to_end"`
	Accepted  int64 `json:"orders_accepted"`
	Undecided int64 `json:"orders_undecided"`
	Dropped   int64 `json:"dropped"`
	Errors    int   `json:"server_errors"`
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "plotcurve:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("plotcurve", flag.ContinueOnError)
	out := fs.String("o", "placed-to-decided.svg", "the SVG to write")
	title := fs.String("title", "placed → decided (shop loadtest, orders only)", "the plot's title")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("give the loadtest JSON summaries to plot")
	}
	var points []summary
	for _, name := range fs.Args() {
		raw, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		var s summary
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		points = append(points, s)
	}
	slices.SortFunc(points, func(a, b summary) int { return int(a.Rate - b.Rate) })
	fmt.Fprintln(stdout, "| offered orders/s | accepted | p50 | p99 | undecided | dropped | 5xx |")
	fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|---:|---:|")
	for _, p := range points {
		fmt.Fprintf(stdout, "| %.0f | %d | %.1f ms | %.1f ms | %d | %d | %d |\n", p.Rate, p.Accepted, p.EndToEnd.P50, p.EndToEnd.P99, p.Undecided, p.Dropped, p.Errors)
	}
	return os.WriteFile(*out, []byte(svg(*title, points)), 0o644)
}

// svg draws both percentiles on a log scale of milliseconds.
func svg(title string, points []summary) string {
	const w, h, left, right, top, bottom = 640.0, 400.0, 70.0, 20.0, 40.0, 50.0
	maxRate := 0.0
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range points {
		maxRate = max(maxRate, p.Rate)
		for _, v := range []float64{p.EndToEnd.P50, p.EndToEnd.P99} {
			if v > 0 {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	x := func(rate float64) float64 { return left + rate/maxRate*(w-left-right) }
	y := func(ms float64) float64 {
		return top + (1-(math.Log10(max(ms, lo))-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo)))*(h-top-bottom)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%.0f" y="20" font-size="14">%s</text>`+"\n", left, title)
	for d := lo; d <= hi*1.0001; d *= 10 {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" text-anchor="end">%g ms</text>`+"\n",
			left, w-right, y(d), y(d), left-6, y(d)+4, d)
	}
	for _, p := range points {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0f</text>`+"\n", x(p.Rate), h-bottom+18, p.Rate)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">offered orders/s</text>`+"\n", (left+w-right)/2, h-10)
	for _, series := range []struct {
		name, color string
		at          func(summary) float64
		dy          float64
	}{{"p50", "#1f77b4", func(s summary) float64 { return s.EndToEnd.P50 }, 0}, {"p99", "#d62728", func(s summary) float64 { return s.EndToEnd.P99 }, 16}} {
		var path []string
		for _, p := range points {
			path = append(path, fmt.Sprintf("%.1f,%.1f", x(p.Rate), y(series.at(p))))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(p.Rate), y(series.at(p)), series.color)
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(path, " "), series.color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s">%s</text>`+"\n", w-right-40, top+series.dy, series.color, series.name)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
