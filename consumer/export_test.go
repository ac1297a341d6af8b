package consumer

import (
	"context"
	"errors"
	"time"
)

// NewTestBatcher gives the black-box tests the batcher of a group (gather
// as Config.Gather): do hands
// it one delivery and returns when that is done, reporting whether it went
// alone (handed over after the committers stopped); apply sees the size of
// each batch.
func NewTestBatcher(ctx context.Context, committers, max int, gather time.Duration, apply func(size int)) (do func() (alone bool)) {
	b := newBatcher(ctx, committers, max, gather, func(batch []*job) { apply(len(batch)) })
	return func() bool {
		j := &job{ctx: ctx}
		b.do(j)
		return errors.Is(j.err, errAlone)
	}
}

// AckLedger gives the black-box tests the acknowledgement ledger of a
// channel: Delivered records a delivery handed out, Settle the deliveries
// settled together (acked, or nacked to be requeued), returning the frames
// that settle them.
// AckFrame is one frame of acknowledgement AckLedger decides.
type AckFrame = ackFrame

type AckLedger struct{ l ackLedger }

func (a *AckLedger) Delivered(tag uint64) { a.l.delivered(tag) }

func (a *AckLedger) Settle(acked, requeued []uint64) []AckFrame {
	var ready []settlement
	for _, t := range acked {
		ready = append(ready, settlement{tag: t, ack: true})
	}
	for _, t := range requeued {
		ready = append(ready, settlement{tag: t})
	}
	return a.l.settle(ready)
}

// RouterLogger is the logger a group's router logs to.
var RouterLogger = gatedLogger
