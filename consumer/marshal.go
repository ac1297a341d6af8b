package consumer

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/outbox"
)

// Headers of a message in a dead queue. MetaReason says why it failed.
const (
	MetaReason   = middleware.ReasonForPoisonedKey // "reason_poisoned"
	MetaFailedAt = "failed_at"
	// MetaAttempts is how many times the handler ran for the delivery.
	MetaAttempts = "attempts"
	// MetaReplayedAt marks a message an operator replayed from a dead queue.
	MetaReplayedAt = "replayed_at"
)

const (
	metaType       = "type"              // the AMQP type property: the routing key
	metaUnexpected = "unexpected_header" // set by Unmarshal, never by a publisher
	deliveryCount  = "x-delivery-count"  // added by quorum queues on redelivery
)

// expectedHeaders are the only headers a message may carry into a handler.
// The relay sets the trace context when it traces; RabbitMQ adds
// x-delivery-count on redelivery.
var expectedHeaders = []string{deliveryCount, MetaReplayedAt, headerTraceparent, headerTracestate}

// marshaler maps AMQP deliveries to Watermill messages and back. Unmarshal
// never fails (watermill-amqp nacks and requeues forever a delivery its
// marshaler refuses; ours is built the same way): what is wrong with a
// delivery is left in its metadata for the handler, which sends it to the
// dead queue.
type marshaler struct{}

func (marshaler) Unmarshal(d amqp.Delivery) (*message.Message, error) {
	id := d.MessageId
	if id == "" {
		id = newID()
	}
	msg := message.NewMessage(id, d.Body)
	if d.Type != "" {
		msg.Metadata.Set(metaType, d.Type)
	}
	for k, v := range d.Headers {
		if !slices.Contains(expectedHeaders, k) {
			msg.Metadata.Set(metaUnexpected, k)
			continue
		}
		if s, ok := v.(string); ok {
			msg.Metadata.Set(k, s)
		}
	}
	return msg, nil
}

// Marshal builds the publishing of a message going to a dead queue: the
// original body, id and type, and the metadata as string headers.
func (marshaler) Marshal(msg *message.Message) (amqp.Publishing, error) {
	headers := amqp.Table{}
	for k, v := range msg.Metadata {
		if k != metaType {
			headers[k] = v
		}
	}
	return amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    msg.UUID,
		Type:         msg.Metadata.Get(metaType),
		Headers:      headers,
		Body:         msg.Payload,
	}, nil
}

// decode parses and checks an envelope.
func decode(body []byte) (outbox.Envelope, error) {
	var env outbox.Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return env, fmt.Errorf("decode envelope: %w", err)
	}
	switch {
	case env.ID.String() == "00000000-0000-0000-0000-000000000000":
		return env, errors.New("decode envelope: no id")
	case env.Type == "":
		return env, errors.New("decode envelope: no type")
	case env.SchemaVersion != outbox.SchemaVersion:
		return env, fmt.Errorf("decode envelope: schema version %d, want %d", env.SchemaVersion, outbox.SchemaVersion)
	case len(env.Data) == 0:
		return env, errors.New("decode envelope: no data")
	}
	return env, nil
}
