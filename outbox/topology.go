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

// DeliveryLimit is how many times a group's queue redelivers a message
// before RabbitMQ dead-letters it to the group's dead queue.
const DeliveryLimit = 20

// QueueArgs are the arguments the group's queue is declared with. Anyone
// declaring shop.<group> must pass exactly these: RabbitMQ refuses a
// redeclaration with other arguments (PRECONDITION_FAILED). A message
// redelivered more than DeliveryLimit times is dead-lettered (at most once)
// through the default exchange to shop.<group>.dead: quorum queues on
// RabbitMQ 3.13 and later have a default delivery limit and would drop it
// without a dead-letter exchange.
func (g Group) QueueArgs() amqp.Table {
	return amqp.Table{
		amqp.QueueTypeArg:           amqp.QueueTypeQuorum,
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": g.DeadQueue(),
		"x-delivery-limit":          DeliveryLimit,
	}
}

// DeadQueueArgs are the arguments the group's dead queue is declared with.
func (g Group) DeadQueueArgs() amqp.Table {
	return amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}
}

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

// GroupNamed returns the group of Groups called name; ok is false when
// there is none.
func GroupNamed(name string) (g Group, ok bool) {
	for _, g := range Groups() {
		if g.Name == name {
			return g, true
		}
	}
	return Group{}, false
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

// Declare declares the exchange, every group's queue (QueueArgs) with its
// bindings, and every dead queue. It is idempotent, and runs before anything is published
// so that no event goes into an exchange with no queue bound.
func Declare(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(Exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", Exchange, err)
	}
	for _, g := range Groups() {
		queues := []struct {
			name string
			args amqp.Table
		}{{g.DeadQueue(), g.DeadQueueArgs()}, {g.Queue(), g.QueueArgs()}}
		for _, q := range queues {
			if _, err := ch.QueueDeclare(q.name, true, false, false, false, q.args); err != nil {
				return fmt.Errorf("declare queue %s: %w", q.name, err)
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
