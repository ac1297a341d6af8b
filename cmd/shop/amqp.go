package main

import (
	"log/slog"

	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/outbox"
)

// broker returns the way a process named name ("shop relay") reaches
// RabbitMQ: the nodes of AMQP_URL, tried in turn, and the registry's
// topology, its queues replicated on AMQP_QUORUM_SIZE nodes.
func (s amqpSection) broker(name string, log *slog.Logger) (*outbox.Broker, error) {
	return outbox.NewBroker(outbox.BrokerConfig{URL: s.URL, Name: name,
		Topology: handlers.Topology().WithQuorumSize(s.QuorumSize), Logger: log})
}
