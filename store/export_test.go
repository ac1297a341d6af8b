package store

// QueueBehindTheBack queues a statement in tx that changes rows without the
// stores knowing: how a test makes an aggregate's row move on between its
// load and its write, which nothing in shop does.
func QueueBehindTheBack(tx *Tx, sql string, args ...any) { tx.queue(sql, args...) }
