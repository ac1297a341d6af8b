// Package relaybench holds the outbox relay benchmark of issue 3: how fast
// `shop relay` empties a backlog, how it keeps up with writers committing as
// fast as they can, and the commit→arrival latency at a steady 1,000 events/s,
// beside Watermill's forwarder (watermill-sql → watermill-amqp) and a bare
// amqp091-go publisher as the ceiling.
//
// The benchmarks live in the package's tests and only run with -bench; they
// need the local Postgres and RabbitMQ of internal/testenv:
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 60m ./outbox/relaybench/
//
// Every contender publishes the same ~300-byte JSON envelope with publisher
// confirms to the shop.events exchange, declared with the topology of an
// order.placed (the inventory and projections queues), plus one
// extra classic queue bound to "#" that the benchmark consumes to time
// arrivals. Every measurement runs on a fresh database and a fresh vhost.
//
// After a load or paced phase, ours also logs its relay's rounds over the
// phase, from the relay's metrics: how many, rows per round, and the time
// of each phase of a round (claim, send, confirm, commit) per round and per
// 1,000 rows, and the VACUUMs; so a relay that falls behind shows where its
// rounds went.
//
// Sizes and durations come from the environment, so that a smoke run is
// quick (RELAYBENCH_BACKLOG=2000 RELAYBENCH_LOAD=2s RELAYBENCH_PACED=2s):
//
//	RELAYBENCH_BACKLOG        events in the backlog to drain (100000)
//	RELAYBENCH_DRAIN_TIMEOUT  give up draining after this long (8m)
//	RELAYBENCH_LOAD           duration of the writers-at-full-speed phase (20s)
//	RELAYBENCH_PACED          duration of the paced phase (10s)
//	RELAYBENCH_RATE           total events/s of the paced phase (1000)
//	RELAYBENCH_WRITERS        writer goroutines, one event per transaction (8)
//	RELAYBENCH_GRACE          after a load or paced phase, how long to wait
//	                          for the stragglers before computing latencies (30s)
//	RELAYBENCH_VACUUM_AFTER   our relay's VacuumAfter (default 5000; -1 off)
//	RELAYBENCH_BATCH, RELAYBENCH_WORKERS
//	                          override our relay's BatchSize and Workers
//	                          (default: RelayConfig's defaults)
//	RELAYBENCH_LINGER         our relay's Linger (2ms, RELAY_LINGER's default)
//	RELAYBENCH_APART          1: the load and paced phases' writers run in a
//	                          process of their own (this binary again, see
//	                          apart_test.go), as the API runs beside
//	                          `shop relay`; 0 (default): goroutines of this one
//	RELAYBENCH_WRITERS_CPUPROFILE
//	                          with RELAYBENCH_APART=1, a file to write the
//	                          writers' CPU profile to
//	RELAYBENCH_MAX_PENDING    ours: the writers wait, as the API's commands do,
//	                          at an outbox.Backlog of this bound
//	                          (OUTBOX_MAX_PENDING; default 0: never)
//	RELAYBENCH_WRITERS_NICE   with RELAYBENCH_APART=1, the writers' nice value
//	                          (0 to 19, default 0): on a saturated machine the
//	                          broker and the relay then come before them, as
//	                          they would on cores of their own
package relaybench
