package main_test

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/internal/testenv"
)

// TestLagMetricsFollowAStoppedGroup: while the inventory group's only
// process is stopped, orders pile up in its queue, and another consumer
// process's /metrics shows them (shop_consumer_queue_messages, from
// RabbitMQ's management API); started again, it drains the queue to 0, and
// its shop_consumer_event_age_seconds counts every event it applied.
func TestLagMetricsFollowAStoppedGroup(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	env := maps.Clone(s.env)
	env["LOG_LEVEL"], env["QUEUE_SAMPLE_INTERVAL"] = "info", "200ms"
	env["RABBITMQ_MANAGEMENT_URL"] = "http://guest:guest@127.0.0.1:15672"
	startProcess(t, env, "relay")
	_, others := startServing(t, env, "consume", "orders", "emails", "projections")
	inventory, _ := startServing(t, env, "consume", "inventory")

	buyer := s.register(t, "lag@shop.test")
	product := s.product(t, "LAG-1", 100)
	s.waitQuiet(t, 30*time.Second, "inventory")
	stop(t, inventory)
	route, _ := handlers.Topology().Route("inventory")
	before := s.count(t, `SELECT count(*) FROM committed WHERE routing_key = ANY($1)`, route.Keys)

	const orders = 12
	for range orders {
		s.mustPlace(t, buyer, order.Item{ProductID: product, Quantity: 1})
	}
	backlog := s.count(t, `SELECT count(*) FROM committed WHERE routing_key = ANY($1)`, route.Keys) - before
	if backlog < orders {
		t.Fatalf("%d events for inventory after %d orders", backlog, orders)
	}
	ready := `shop_consumer_queue_messages{group="inventory",state="ready"}`
	testenv.Eventually(t, 30*time.Second, func() error {
		if v := sample(metrics(t, others), ready); v != float64(backlog) {
			return fmt.Errorf("%s = %v on the other process, want %d", ready, v, backlog)
		}
		return nil
	})

	_, again := startServing(t, env, "consume", "inventory")
	s.waitQuiet(t, 30*time.Second, "inventory")
	testenv.Eventually(t, 30*time.Second, func() error {
		body := metrics(t, others)
		for _, series := range []string{ready, `shop_consumer_queue_messages{group="inventory",state="unacked"}`, `shop_consumer_dead_messages{group="inventory"}`} {
			if v := sample(body, series); v != 0 {
				return fmt.Errorf("%s = %v, want 0", series, v)
			}
		}
		return nil
	})
	count := `shop_consumer_event_age_seconds_count{group="inventory"}`
	if v := sample(metrics(t, again), count); v != float64(backlog) {
		t.Errorf("%s = %v on the restarted process, want %d: every event it applied", count, v, backlog)
	}
}
