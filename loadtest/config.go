// Package loadtest drives a running shop over HTTP with a realistic mix of
// customers' and an admin's requests, and measures what they see: per
// endpoint, the rate, the latency distribution (HDR histograms) and the
// errors by status; end to end, the time from an order's 202 to the order
// seen decided through GET with min_version. It never talks to shop's
// databases: only to its API.
//
// Load is open (Config.Rate: arrivals at fixed times, whatever the server
// does, so a slow server is measured slow rather than sent less: no
// coordinated omission) or closed (Config.Connections workers, each sending
// its next request when the last one is answered: the server's top speed).
package loadtest

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Op is one kind of request of the mix.
type Op string

// The ops of the mix.
const (
	Place   Op = "place"   // POST /v1/orders, 1 to 3 lines
	Read    Op = "read"    // GET a product (most), or one of the customer's orders
	Cancel  Op = "cancel"  // POST /v1/orders/{id}/cancel of a recent order of the customer
	Restock Op = "restock" // POST /v1/products/{id}/restock, as the admin
)

// Mix is each op's weight; only the ratios matter.
type Mix map[Op]int

// DefaultMix is what a shop sees most of the day: mostly reads, many
// orders, a few cancels and restocks.
const DefaultMix = "place=40,read=50,cancel=5,restock=5"

// ParseMix parses "place=40,read=50,cancel=5,restock=5"; an op left out
// weighs 0.
func ParseMix(s string) (Mix, error) {
	m := Mix{}
	total := 0
	for part := range strings.SplitSeq(s, ",") {
		name, weight, ok := strings.Cut(strings.TrimSpace(part), "=")
		op := Op(name)
		if !ok || (op != Place && op != Read && op != Cancel && op != Restock) {
			return nil, fmt.Errorf("mix: %q is not op=weight with op one of place, read, cancel, restock", part)
		}
		if _, dup := m[op]; dup {
			return nil, fmt.Errorf("mix: %s given twice", op)
		}
		w, err := strconv.Atoi(weight)
		if err != nil || w < 0 {
			return nil, fmt.Errorf("mix: the weight of %s must be a whole number, 0 or more, not %q", op, weight)
		}
		m[op] = w
		total += w
	}
	if total == 0 {
		return nil, errors.New("mix: every weight is 0")
	}
	return m, nil
}

// Config configures a load test.
type Config struct {
	// URL is the API's, or several APIs' separated by commas (replicas
	// without a balancer), used in turn. Default http://127.0.0.1:8080.
	URL string
	// Rate is how many requests per second arrive, at fixed times
	// whatever the answers (open model). 0: Connections workers as fast as
	// the server answers (closed model) instead.
	Rate float64
	// Connections is how many workers send requests back to back when Rate
	// is 0. Default 16.
	Connections int
	// Duration is how long load is sent; the settle time comes after.
	// Default 30s.
	Duration time.Duration
	// Mix weighs the ops. Default DefaultMix.
	Mix Mix
	// Products is how many products the load uses: created (with
	// ProductStock each) when an admin is given, else the first that many
	// the catalogue lists. Default 20.
	Products int
	// ProductStock is the stock each product is created with. Default
	// 100,000: a few products run out only under long runs.
	ProductStock int64
	// Customers is how many customers are registered and signed in before
	// the load starts (not timed). Default 20.
	Customers int
	// AdminEmail and AdminPassword sign in the admin who creates the
	// products and restocks them; without them, restock must weigh 0.
	AdminEmail, AdminPassword string
	// Seed makes the choices (ops, products, quantities) repeatable. 0: a
	// random one, reported.
	Seed uint64
	// Settle bounds how long, after the load, an accepted order may take to
	// be seen decided. Default 30s.
	Settle time.Duration
	// ListOrders puts every accepted order's id in the report (for a
	// check of each against the system's state afterwards).
	ListOrders bool
	// Progress receives a line a second while the test runs (a bar,
	// redrawn, when Terminal); nil: none.
	Progress io.Writer
	Terminal bool
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	if c.URL == "" {
		c.URL = "http://127.0.0.1:8080"
	}
	if _, err := c.urls(); err != nil {
		return err
	}
	if c.Connections == 0 {
		c.Connections = 16
	}
	if c.Duration == 0 {
		c.Duration = 30 * time.Second
	}
	if c.Mix == nil {
		c.Mix, _ = ParseMix(DefaultMix)
	}
	if c.Products == 0 {
		c.Products = 20
	}
	if c.ProductStock == 0 {
		c.ProductStock = 100_000
	}
	if c.Customers == 0 {
		c.Customers = 20
	}
	if c.Settle == 0 {
		c.Settle = 30 * time.Second
	}
	switch {
	case c.Rate < 0:
		return fmt.Errorf("rate %v is negative", c.Rate)
	case c.Connections < 1:
		return fmt.Errorf("connections %d: at least 1", c.Connections)
	case c.Duration < 0 || c.Settle < 0:
		return errors.New("duration and settle must not be negative")
	case c.Products < 1 || c.Customers < 1:
		return errors.New("products and customers: at least 1 each")
	case (c.AdminEmail == "") != (c.AdminPassword == ""):
		return errors.New("give the admin's email and password together")
	case c.AdminEmail == "" && c.Mix[Restock] > 0:
		return errors.New("the mix restocks, which needs the admin's email and password (or restock=0)")
	}
	return nil
}

// urls are the APIs of URL, without a trailing slash.
func (c *Config) urls() ([]string, error) {
	var out []string
	for raw := range strings.SplitSeq(c.URL, ",") {
		raw = strings.TrimRight(strings.TrimSpace(raw), "/")
		if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("url %q is not an http(s) URL", raw)
		}
		out = append(out, raw)
	}
	return out, nil
}
