package consumer

import (
	"context"
	"errors"

	"github.com/shopdev/shop/outbox"
)

// NewTestBatcher gives the black-box tests the batcher of a group: do hands
// it one delivery and returns when that is done, reporting whether it went
// alone (handed over after the committers stopped); apply sees the size of
// each batch.
func NewTestBatcher(ctx context.Context, committers, max int, apply func(size int)) (do func() (alone bool)) {
	b := newBatcher(ctx, committers, max, func(batch []*job) { apply(len(batch)) })
	return func() bool {
		j := &job{ctx: ctx}
		b.do(j)
		return errors.Is(j.err, errAlone)
	}
}

// ApplyBatch applies envs as a batch of the group's deliveries, without
// RabbitMQ: it reports for each whether it was applied now, and committed
// false when the batch failed (nothing of it was committed: the group would
// apply each delivery alone).
func ApplyBatch(ctx context.Context, g *Group, envs []outbox.Envelope) (applied []bool, committed bool) {
	jobs := make([]*job, len(envs))
	for i, env := range envs {
		jobs[i] = &job{ctx: outbox.WithMetadata(ctx, causedBy(env)), log: g.cfg.Logger, env: env, h: g.cfg.Handlers[env.Type]}
	}
	g.applyBatch(jobs)
	applied = make([]bool, len(jobs))
	for i, j := range jobs {
		if j.err != nil {
			return nil, false
		}
		applied[i] = j.applied
	}
	return applied, true
}
