// Command confirmlatency measures, against a running shop, the time from
// POST /v1/orders answered 202 to the order visible as confirmed in the
// Redis read model: it places orders at a fixed rate and listens to the
// projector's announcements on Redis Pub/Sub (<prefix>changes, "<key>
// <version>"), so nothing polls. Version 2 of an order is its decision.
//
//	confirmlatency -url http://127.0.0.1:8080 -token T -products id,id -rate 300 -for 20s
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "confirmlatency:", err)
		os.Exit(1)
	}
}

func run() error {
	url := flag.String("url", "http://127.0.0.1:8080", "the API")
	token := flag.String("token", "", "a customer's token, or several, comma-separated: the orders take turns")
	products := flag.String("products", "", "comma-separated product ids")
	rate := flag.Int("rate", 300, "orders per second")
	dur := flag.Duration("for", 20*time.Second, "how long to place orders")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis")
	prefix := flag.String("prefix", "shop:", "the read models' key prefix")
	timeline := flag.Bool("timeline", false, "also print, for each second of placing, its orders' median and slowest latency")
	flag.Parse()
	ids := strings.Split(*products, ",")
	tokens := strings.Split(*token, ",")
	if *token == "" || len(ids) == 0 || ids[0] == "" {
		return errors.New("-token and -products are required")
	}

	rdb := redis.NewClient(&redis.Options{Addr: *redisAddr})
	defer rdb.Close()
	ctx := context.Background()
	sub := rdb.Subscribe(ctx, *prefix+"changes")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}

	var mu sync.Mutex
	accepted := map[string]time.Time{} // order key → when the 202 arrived
	decided := map[string]time.Time{}  // order key → when version 2 was announced
	go func() {
		for msg := range sub.Channel() {
			key, v, _ := strings.Cut(msg.Payload, " ")
			if v == "2" && strings.HasPrefix(key, *prefix+"order:") {
				mu.Lock()
				decided[key] = time.Now()
				mu.Unlock()
			}
		}
	}()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	// Order i is due at start + i/rate: a late wake-up places the orders
	// it missed at once, so the rate holds on a busy machine (a ticker
	// would drop the ticks it missed).
	interval := time.Second / time.Duration(*rate)
	start := time.Now()
	total := int(*dur / interval)
	var wg sync.WaitGroup
	var failures int
	for i := range total {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		wg.Go(func() {
			body := fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}]}`, ids[rand.IntN(len(ids))])
			req, _ := http.NewRequest(http.MethodPost, *url+"/v1/orders", bytes.NewBufferString(body))
			req.Header.Set("Authorization", "Bearer "+tokens[i%len(tokens)])
			req.Header.Set("Content-Type", "application/json")
			res, err := client.Do(req)
			if err != nil {
				mu.Lock()
				failures++
				mu.Unlock()
				return
			}
			raw, _ := io.ReadAll(res.Body)
			res.Body.Close()
			at := time.Now()
			var o struct{ ID string }
			if res.StatusCode != http.StatusAccepted || json.Unmarshal(raw, &o) != nil {
				mu.Lock()
				failures++
				mu.Unlock()
				return
			}
			mu.Lock()
			accepted[*prefix+"order:"+o.ID] = at
			mu.Unlock()
		})
	}
	wg.Wait()
	time.Sleep(5 * time.Second) // the last decisions
	mu.Lock()
	defer mu.Unlock()
	// An order not seen decided within the 5 s after the last one was placed
	// counts as slower than every order seen: it is in the percentiles, as
	// "> 5s", not left out of them.
	const never = time.Duration(1<<63 - 1)
	if *timeline {
		printTimeline(start, accepted, decided)
	}
	var lat []time.Duration
	missing := 0
	for key, at := range accepted {
		d, ok := decided[key]
		if !ok {
			missing++
			lat = append(lat, never)
			continue
		}
		// A decision announced before the 202 was read counts as 0.
		lat = append(lat, max(0, d.Sub(at)))
	}
	if len(lat) == missing {
		return errors.New("no order was seen decided")
	}
	slices.Sort(lat)
	show := func(d time.Duration) string {
		if d == never {
			return "> 5s after the last order"
		}
		return d.Round(100 * time.Microsecond).String()
	}
	q := func(p float64) string { return show(lat[int(p*float64(len(lat)-1))]) }
	fmt.Printf("orders placed %d (%.0f/s), failed %d, decided in Redis %d, not seen %d\n",
		len(accepted), float64(len(accepted))/dur.Seconds(), failures, len(lat)-missing, missing)
	fmt.Printf("202 → confirmed in Redis: p50 %s, p90 %s, p99 %s, max %s\n",
		q(0.50), q(0.90), q(0.99), show(lat[len(lat)-1]))
	return nil
}

// printTimeline prints, for each second of placing, how many orders were
// accepted in it and their median and slowest time to be decided: a
// backlog that builds shows as a climb, a stall as a step.
func printTimeline(start time.Time, accepted, decided map[string]time.Time) {
	perSecond := map[int][]time.Duration{}
	last := 0
	for key, at := range accepted {
		s := int(at.Sub(start) / time.Second)
		d, ok := decided[key]
		if !ok {
			d = at.Add(time.Hour)
		}
		perSecond[s] = append(perSecond[s], max(0, d.Sub(at)))
		last = max(last, s)
	}
	for s := 0; s <= last; s++ {
		lat := perSecond[s]
		if len(lat) == 0 {
			continue
		}
		slices.Sort(lat)
		fmt.Printf("second %2d: %4d orders, p50 %s, max %s\n", s, len(lat),
			lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	}
}
