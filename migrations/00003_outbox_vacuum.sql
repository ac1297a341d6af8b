-- +goose Up
-- The outbox is a queue: rows are inserted and deleted all day. Vacuum it as
-- soon as a thousand rows are dead, without the cost delay, so that the
-- relay's index scans never wade through a growing head of dead tuples.
ALTER TABLE outbox SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 1000
);

-- +goose Down
ALTER TABLE outbox RESET (
    autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, autovacuum_vacuum_cost_delay,
    autovacuum_analyze_scale_factor, autovacuum_analyze_threshold
);
