// Package projections is the projections consumer group's adapter: it
// hands product and order events to the Redis read models
// (projections.Store.ApplyEach), one at a time or every delivery in hand in
// one round trip. The group keeps no inbox: every write is guarded by the
// aggregate's version, so duplicates and late events change nothing.
package projections

import (
	"context"

	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/internal/ops"
	"github.com/shopdev/shop/outbox"
	readmodel "github.com/shopdev/shop/projections"
)

// Group is the projections group, writing to models.
func Group(models *readmodel.Store) consumer.Group {
	each := func(ctx context.Context, envs []outbox.Envelope) ([]bool, []error) {
		events := make([]readmodel.Event, len(envs))
		for i, e := range envs {
			events[i] = readmodel.Event{Type: e.Type, AggregateID: e.AggregateID,
				AggregateVersion: e.AggregateVersion, OccurredAt: e.OccurredAt, Data: e.Data}
		}
		return models.ApplyEach(ctx, events)
	}
	return consumer.Group{
		Name:    "projections",
		About:   "keeps the Redis read models that the API's GETs serve",
		Keys:    readmodel.Types(),
		Batches: true,
		Project: func(ctx context.Context, e outbox.Envelope) (bool, error) {
			changed, errs := each(ctx, []outbox.Envelope{e})
			return changed[0], errs[0]
		},
		ProjectEach: each,
		Checks:      []ops.Check{{Name: "redis", Ready: models.Ping}},
	}
}
