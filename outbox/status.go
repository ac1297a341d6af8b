package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PartitionStatus is what waits in one partition of the outbox.
type PartitionStatus struct {
	Partition int
	Pending   int64
	OldestAge time.Duration // zero when nothing waits
}

// ReadStatus returns every partition's pending rows and the age of its
// oldest row, partitions in order.
func ReadStatus(ctx context.Context, pool *pgxpool.Pool) ([]PartitionStatus, error) {
	rows, err := pool.Query(ctx, `
		SELECT p, count(o.id), coalesce(extract(epoch FROM clock_timestamp() - min(o.created_at)), 0)::float8
		FROM generate_series(0, $1 - 1) AS p LEFT JOIN outbox o ON o.partition = p
		GROUP BY p ORDER BY p`, Partitions)
	if err != nil {
		return nil, fmt.Errorf("read outbox status: %w", err)
	}
	status, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (PartitionStatus, error) {
		var s PartitionStatus
		var age float64
		err := row.Scan(&s.Partition, &s.Pending, &age)
		s.OldestAge = time.Duration(age * float64(time.Second))
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("read outbox status: %w", err)
	}
	return status, nil
}
