package consumer_test

import (
	"context"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

func TestAcknowledgementsSettledTogetherShareAFrame(t *testing.T) {
	t.Parallel()
	type step struct {
		acked, requeued []uint64
		want            []consumer.AckFrame
	}
	tests := []struct {
		name      string
		delivered int // tags 1..delivered
		steps     []step
	}{
		{"the oldest deliveries settled together: one multiple ack", 4, []step{
			{acked: []uint64{2, 1, 4, 3}, want: []consumer.AckFrame{{Tag: 4, Multiple: true}}},
		}},
		{"an ack behind a delivery still handled goes alone, at once", 3, []step{
			{acked: []uint64{3, 2}, want: []consumer.AckFrame{{Tag: 2}, {Tag: 3}}},
			{acked: []uint64{1}, want: []consumer.AckFrame{{Tag: 1, Multiple: true}}},
		}},
		{"a multiple ack names a delivery not yet acknowledged", 3, []step{
			{acked: []uint64{3}, want: []consumer.AckFrame{{Tag: 3}}},
			{acked: []uint64{1}, want: []consumer.AckFrame{{Tag: 1, Multiple: true}}},
			{acked: []uint64{2}, want: []consumer.AckFrame{{Tag: 2, Multiple: true}}},
		}},
		{"a nack goes alone, before the ack that covers its neighbours", 3, []step{
			{acked: []uint64{1, 3}, requeued: []uint64{2}, want: []consumer.AckFrame{{Tag: 2, Requeue: true}, {Tag: 3, Multiple: true}}},
		}},
		{"nothing more to send when the front was already settled", 2, []step{
			{acked: []uint64{2}, want: []consumer.AckFrame{{Tag: 2}}},
			{requeued: []uint64{1}, want: []consumer.AckFrame{{Tag: 1, Requeue: true}}},
		}},
		{"later deliveries start a new run", 2, []step{
			{acked: []uint64{1, 2}, want: []consumer.AckFrame{{Tag: 2, Multiple: true}}},
			{acked: nil, want: nil},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l consumer.AckLedger
			for tag := range tt.delivered {
				l.Delivered(uint64(tag + 1))
			}
			for i, s := range tt.steps {
				if got := l.Settle(s.acked, s.requeued); !reflect.DeepEqual(got, s.want) {
					t.Fatalf("step %d: settling acked %v, requeued %v sent %+v, want %+v", i+1, s.acked, s.requeued, got, s.want)
				}
			}
		})
	}
}

func TestADeliveryStillBeingHandledHoldsNoOtherBack(t *testing.T) {
	t.Parallel()
	const others = 10
	var applied atomic.Int32
	blocker := envelope(t)
	release := make(chan struct{}) // closed when the test ends, before the group stops
	// Two deliveries in flight at most: the blocker's handler waits until
	// every other event was handled, each of which needs the one before it
	// acknowledged while the blocker is not.
	x := start(t, func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
		if e.ID != blocker.ID {
			applied.Add(1)
			return nil
		}
		for applied.Load() < others {
			select {
			case <-release:
				return nil
			case <-time.After(10 * time.Millisecond):
			}
		}
		return nil
	}, func(c *consumer.Config) { c.Concurrency = 2; c.Prefetch = 1 })
	t.Cleanup(func() { close(release) })
	x.publishEnvelope(t, blocker)
	for range others {
		x.publishEnvelope(t, envelope(t))
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		n := testenv.Count(t, x.pool, `SELECT count(*) FROM inbox WHERE consumer = $1`, group.Group)
		if n != others+1 {
			return fmt.Errorf("%d of %d events applied; the others handled while the first waited: %d", n, others+1, applied.Load())
		}
		return nil
	})
}
