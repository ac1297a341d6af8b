package main_test

import (
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/internal/testenv"
)

// TestRabbitMQClusterSurvivesLosingANode runs two relays and two processes
// of every consumer group against a three-node RabbitMQ cluster, named by a
// three-URL AMQP_URL, with every queue replicated on the three nodes
// (AMQP_QUORUM_SIZE). While orders stream in, the node that leads the most
// queues is SIGKILLed, and started again a while later. Every process moves
// to another node by itself; afterwards every order is decided, each group
// applied each event once, the stock adds up, Redis equals Postgres and the
// outbox is empty: nothing was lost, whatever the relays had in flight.
func TestRabbitMQClusterSurvivesLosingANode(t *testing.T) {
	t.Parallel()
	cluster := testenv.StartRabbitCluster(t, 3)
	s := newSystem(t)
	s.env["AMQP_URL"] = cluster.URLs()
	s.env["AMQP_QUORUM_SIZE"] = "3"
	groups := []string{"orders", "inventory", "emails", "projections"}
	var procs []*exec.Cmd
	pgConns.reserve(t, 21) // two relays and two consumers: 48 connections, 21 beyond newSystem's
	for range 2 {
		procs = append(procs, startProcess(t, s.env, "relay"), startProcess(t, s.env, append([]string{"consume"}, groups...)...))
	}

	initial := s.catalogue(t, "NODE")
	// Every queue has a replica on every node.
	testenv.Eventually(t, 30*time.Second, func() error {
		queues := cluster.Queues(t)
		for _, r := range handlers.Topology() {
			for _, q := range []string{r.Queue(), r.DeadQueue()} {
				if got := len(queues[q].Members); got != len(cluster.Nodes) {
					return fmt.Errorf("queue %s has %d replicas (%v), want %d", q, got, queues[q].Members, len(cluster.Nodes))
				}
			}
		}
		return nil
	})

	// 40 orders a second: enough to have some in flight on every path when
	// the node goes, few enough that three replicas of every queue on a
	// busy 2-core machine keep up.
	endStream := s.streamOrders(t, "cluster", initial, testenv.Rand(t).Uint64(), 100*time.Millisecond)
	confirmedSince := func(since time.Time) int {
		return s.count(t, `SELECT count(*) FROM orders WHERE status = 'confirmed' AND created_at > $1`, since)
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		if n := confirmedSince(time.Time{}); n < 20 {
			return fmt.Errorf("%d orders confirmed so far", n)
		}
		return nil
	})

	leaders := cluster.Leaders(t)
	var lost *testenv.RabbitNode
	for _, node := range cluster.Nodes {
		if lost == nil || leaders[node.Name] > leaders[lost.Name] {
			lost = node
		}
	}
	lost.Kill(t)
	killed := time.Now()
	// An order placed after the node went away is confirmed once the
	// relays and the consumers are on other nodes and the queues have
	// their new leaders.
	testenv.Eventually(t, 90*time.Second, func() error {
		if confirmedSince(killed) == 0 {
			return fmt.Errorf("no order placed since %s lost its node (leader of %d queues) is confirmed", lost.Name, leaders[lost.Name])
		}
		return nil
	})
	recovered := time.Since(killed)
	time.Sleep(5 * time.Second) // orders keep flowing on two nodes
	lost.Start(t)
	time.Sleep(3 * time.Second)
	endStream()
	t.Logf("node %s (leader of %d of %d queues) SIGKILLed; orders confirmed again %s later; %d orders in all",
		lost.Name, leaders[lost.Name], 2*len(handlers.Topology()), recovered.Round(time.Millisecond), s.count(t, `SELECT count(*) FROM orders`))

	s.waitQuiet(t, 90*time.Second, groups[:3]...) // projections keep no inbox
	s.checkConverged(t, initial, groups[:3]...)
	s.waitRedisMatches(t, 60*time.Second)
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := s.count(t, `SELECT count(*) FROM outbox`); n > 0 {
			return fmt.Errorf("%d outbox rows not forwarded", n)
		}
		return nil
	})
	for _, p := range procs {
		stop(t, p) // exits 0 after SIGTERM: no data race, nothing stuck
	}
}
