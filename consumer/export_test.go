package consumer

import (
	"context"
	"errors"
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
