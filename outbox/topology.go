package outbox

import (
	"fmt"
	"slices"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Exchange is the durable topic exchange every event is published to, with
// its type as routing key.
const Exchange = "shop.events"

// DeliveryLimit is how many times a group's queue redelivers a message
// before RabbitMQ dead-letters it to the group's dead queue.
const DeliveryLimit = 20

// Route is one consumer group's place in the topology: a durable quorum
// queue, shop.<group>, that the group's replicas compete on, bound to the
// routing keys the group handles, and its dead queue shop.<group>.dead.
type Route struct {
	Group string
	Keys  []string
	// QuorumSize is how many nodes of a cluster the group's queues are
	// replicated on when they are first declared
	// (x-quorum-initial-group-size); 0: the broker's default.
	QuorumSize int
}

// Queue is the group's queue.
func (r Route) Queue() string { return "shop." + r.Group }

// DeadQueue is where the group's failed messages end.
func (r Route) DeadQueue() string { return "shop." + r.Group + ".dead" }

// QueueArgs are the arguments the group's queue is declared with. Anyone
// declaring shop.<group> must pass exactly these: RabbitMQ refuses a
// redeclaration with other arguments (PRECONDITION_FAILED). A message
// redelivered more than DeliveryLimit times is dead-lettered (at most once)
// through the default exchange to shop.<group>.dead: quorum queues on
// RabbitMQ 3.13 and later have a default delivery limit and would drop it
// without a dead-letter exchange.
func (r Route) QueueArgs() amqp.Table {
	return r.replicated(amqp.Table{
		amqp.QueueTypeArg:           amqp.QueueTypeQuorum,
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": r.DeadQueue(),
		"x-delivery-limit":          DeliveryLimit,
	})
}

// DeadQueueArgs are the arguments the group's dead queue is declared with.
func (r Route) DeadQueueArgs() amqp.Table {
	return r.replicated(amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
}

// replicated adds the quorum size, when set, to a queue's arguments. It
// only counts when the queue is created: RabbitMQ does not compare it
// when the queue is declared again, so processes started with another
// size still declare the same queue.
func (r Route) replicated(args amqp.Table) amqp.Table {
	if r.QuorumSize > 0 {
		args["x-quorum-initial-group-size"] = r.QuorumSize
	}
	return args
}

// Topology is every group's route: what Declare declares, and which events
// the relay may publish. The consumer groups' registry (package handlers)
// says what it holds.
type Topology []Route

// WithQuorumSize returns the topology with every queue replicated on n
// nodes when first declared (Route.QuorumSize).
func (t Topology) WithQuorumSize(n int) Topology {
	out := slices.Clone(t)
	for i := range out {
		out[i].QuorumSize = n
	}
	return out
}

// Route returns the route of the group called name; ok is false when there
// is none.
func (t Topology) Route(group string) (r Route, ok bool) {
	i := slices.IndexFunc(t, func(r Route) bool { return r.Group == group })
	if i < 0 {
		return Route{}, false
	}
	return t[i], true
}

// Routed reports whether some group's queue is bound to routing key: an
// event of any other type would be unroutable.
func (t Topology) Routed(key string) bool {
	return slices.ContainsFunc(t, func(r Route) bool { return slices.Contains(r.Keys, key) })
}

// Declare declares the exchange, every group's queue (QueueArgs) with its
// bindings, and every dead queue. It is idempotent, and runs before anything
// is published, so that no event goes into an exchange with no queue bound.
func (t Topology) Declare(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(Exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", Exchange, err)
	}
	for _, r := range t {
		queues := []struct {
			name string
			args amqp.Table
		}{{r.DeadQueue(), r.DeadQueueArgs()}, {r.Queue(), r.QueueArgs()}}
		for _, q := range queues {
			if _, err := ch.QueueDeclare(q.name, true, false, false, false, q.args); err != nil {
				if strings.Contains(err.Error(), "x-quorum-initial-group-size") {
					return fmt.Errorf("declare queue %s: %w (AMQP_QUORUM_SIZE must be the size the queue was created with)", q.name, err)
				}
				return fmt.Errorf("declare queue %s: %w", q.name, err)
			}
		}
		for _, key := range r.Keys {
			if err := ch.QueueBind(r.Queue(), key, Exchange, false, nil); err != nil {
				return fmt.Errorf("bind %s to %s: %w", r.Queue(), key, err)
			}
		}
	}
	return nil
}
