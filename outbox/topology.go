package outbox

import (
	"fmt"
	"slices"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Exchange is the durable topic exchange every event is published to, with
// its type as routing key.
const Exchange = "shop.events"

// Group is a consumer group: one durable quorum queue, shop.<name>, that
// its replicas compete on, bound to the routing keys the group handles, and
// its dead-letter queue shop.<name>.dead.
type Group struct {
	Name string
	Keys []string
}

// Queue is the group's queue.
func (g Group) Queue() string { return "shop." + g.Name }

// DeadQueue is where the group's failed messages end.
func (g Group) DeadQueue() string { return "shop." + g.Name + ".dead" }

// Groups is the topology of DESIGN.md: who consumes which events.
func Groups() []Group {
	return []Group{
		{Name: "orders", Keys: []string{"stock.reserved", "stock.rejected", "stock.released"}},
		{Name: "inventory", Keys: []string{"order.placed", "order.cancelled"}},
		{Name: "emails", Keys: []string{"user.registered", "order.confirmed", "order.rejected", "order.cancelled"}},
		{Name: "projections", Keys: []string{
			"product.created", "product.updated", "stock.changed",
			"order.placed", "order.confirmed", "order.rejected", "order.cancelled",
		}},
	}
}

// Routed reports whether some group's queue is bound to routing key: an
// event of any other type would be unroutable.
func Routed(key string) bool {
	for _, g := range Groups() {
		if slices.Contains(g.Keys, key) {
			return true
		}
	}
	return false
}

// Declare declares the exchange, every group's queue with its bindings, and
// every dead queue. It is idempotent, and runs before anything is published
// so that no event goes into an exchange with no queue bound.
func Declare(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(Exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", Exchange, err)
	}
	quorum := amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}
	for _, g := range Groups() {
		for _, q := range []string{g.Queue(), g.DeadQueue()} {
			if _, err := ch.QueueDeclare(q, true, false, false, false, quorum); err != nil {
				return fmt.Errorf("declare queue %s: %w", q, err)
			}
		}
		for _, key := range g.Keys {
			if err := ch.QueueBind(g.Queue(), key, Exchange, false, nil); err != nil {
				return fmt.Errorf("bind %s to %s: %w", g.Queue(), key, err)
			}
		}
	}
	return nil
}
