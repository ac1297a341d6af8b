package testenv_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shopdev/shop/internal/testenv"
)

// TestSentinelsFailOverAKilledMaster: a client of the Sentinels writes to
// the master; once the master is SIGKILLed, the Sentinels promote the
// replica, which has the write, and the same client writes to it.
func TestSentinelsFailOverAKilledMaster(t *testing.T) {
	t.Parallel()
	f := testenv.Sentinels(t)
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: f.Name, SentinelAddrs: f.Addrs})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	testenv.Must(t, rdb.Set(ctx, "before", "1", 0).Err(), "write to the master")
	replica := f.ReplicaAddr(t)
	testenv.Must(t, f.Client(t, f.MasterAddr(t)).Wait(ctx, 1, time.Second).Err(), "wait for the replica")

	killed := time.Now()
	old := f.KillMaster(t)
	master := f.WaitFailover(t, old, 30*time.Second)
	t.Logf("the Sentinels promoted %s %s after the master was killed", master, time.Since(killed).Round(time.Millisecond))
	if master != replica {
		t.Fatalf("new master %s, want the replica %s", master, replica)
	}
	testenv.Eventually(t, 10*time.Second, func() error { return rdb.Set(ctx, "after", "1", 0).Err() })
	if got, err := f.Client(t, master).MGet(ctx, "before", "after").Result(); err != nil || got[0] != "1" || got[1] != "1" {
		t.Fatalf("the new master holds %v (%v), want both writes", got, err)
	}
}

// TestSentinelsDetachLosesAWrite: a write the master acknowledged while its
// replica was detached is not on the replica, and so is lost when the
// master is killed and the replica promoted.
func TestSentinelsDetachLosesAWrite(t *testing.T) {
	t.Parallel()
	f := testenv.Sentinels(t)
	ctx := context.Background()
	master := f.Client(t, f.MasterAddr(t))
	replica := f.ReplicaAddr(t)
	testenv.Must(t, master.Set(ctx, "kept", "1", 0).Err(), "write")
	testenv.Must(t, master.Wait(ctx, 1, time.Second).Err(), "wait for the replica")

	reattach := f.Detach(t)
	testenv.Must(t, master.Set(ctx, "lost", "1", 0).Err(), "write while detached")
	time.Sleep(200 * time.Millisecond) // what replication there were would be done
	old := f.KillMaster(t)
	reattach()
	if got := f.WaitFailover(t, old, 30*time.Second); got != replica {
		t.Fatalf("new master %s, want the replica %s", got, replica)
	}
	got, err := f.Client(t, replica).MGet(ctx, "kept", "lost").Result()
	testenv.Must(t, err, "read the new master")
	if got[0] != "1" || got[1] != nil {
		t.Fatalf("the new master holds kept=%v lost=%v; want kept=1 and lost missing", got[0], got[1])
	}
}
