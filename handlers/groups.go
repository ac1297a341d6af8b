// Package handlers holds shop's adapters, the thin layer that turns what
// comes in into use-case calls: handlers/httpapi for HTTP requests, and
// one package per consumer group for deliveries. This file is the one
// registry of the consumer groups: the topology (which queue is bound to
// which events), `shop consume`, `shop run`, the usage text and the tests
// of the manifests all read it. Adding a group is one entry here plus its
// package of handlers.
package handlers

import (
	"time"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/handlers/emails"
	"github.com/shopdev/shop/handlers/inventory"
	"github.com/shopdev/shop/handlers/orders"
	"github.com/shopdev/shop/handlers/projections"
	"github.com/shopdev/shop/outbox"
	readmodel "github.com/shopdev/shop/projections"
)

// Deps are what the groups' handlers use.
type Deps struct {
	// Now is the clock of the groups that decide (orders, inventory).
	Now func() time.Time
	// Mailer sends the emails group's mail.
	Mailer app.Mailer
	// ReadModels are the Redis read models the projections group keeps.
	ReadModels *readmodel.Store
}

// Groups returns every consumer group, wired to d.
func Groups(d Deps) []consumer.Group {
	return []consumer.Group{
		orders.Group(d.Now),
		inventory.Group(d.Now),
		emails.Group(d.Mailer),
		projections.Group(d.ReadModels),
	}
}

// Names returns the name of every group, in the registry's order.
func Names() []string {
	var names []string
	for _, g := range Groups(Deps{}) {
		names = append(names, g.Name)
	}
	return names
}

// Topology is every group's queue with the events bound to it: what the
// relay and the consumers declare, and what the relay may publish.
func Topology() outbox.Topology {
	var t outbox.Topology
	for _, g := range Groups(Deps{}) {
		t = append(t, g.Route())
	}
	return t
}
