package handlers_test

import (
	"slices"
	"testing"

	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/outbox"
)

// TestTopologyIsTheContract: the registry binds each group's queue to the
// routing keys DESIGN.md gives it, and nothing else.
func TestTopologyIsTheContract(t *testing.T) {
	t.Parallel()
	want := outbox.Topology{
		{Group: "orders", Keys: []string{"stock.reserved", "stock.rejected", "stock.released"}},
		{Group: "inventory", Keys: []string{"order.placed", "order.cancelled"}},
		{Group: "emails", Keys: []string{"user.registered", "order.confirmed", "order.rejected", "order.cancelled"}},
		{Group: "projections", Keys: []string{"product.created", "product.updated", "stock.changed",
			"order.placed", "order.confirmed", "order.rejected", "order.cancelled"}},
	}
	got := handlers.Topology()
	if len(got) != len(want) {
		t.Fatalf("topology has %d groups, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Group != w.Group || !slices.Equal(slices.Sorted(slices.Values(g.Keys)), slices.Sorted(slices.Values(w.Keys))) {
			t.Errorf("group %d = %s bound to %v, want %s bound to %v", i, g.Group, g.Keys, w.Group, w.Keys)
		}
		if g.Queue() != "shop."+w.Group || g.DeadQueue() != "shop."+w.Group+".dead" {
			t.Errorf("%s: queues %s and %s", w.Group, g.Queue(), g.DeadQueue())
		}
	}
	if !slices.Equal(handlers.Names(), []string{"orders", "inventory", "emails", "projections"}) {
		t.Errorf("Names() = %v", handlers.Names())
	}
}

// TestEveryGroupHandlesExactlyItsKeys: each group of the registry has a
// handler for every event its queue is bound to, and none for another;
// and says what it does.
func TestEveryGroupHandlesExactlyItsKeys(t *testing.T) {
	t.Parallel()
	for _, g := range handlers.Groups(handlers.Deps{}) {
		if err := g.Validate(); err != nil {
			t.Errorf("group %s: %v", g.Name, err)
		}
		if g.About == "" {
			t.Errorf("group %s does not say what it does", g.Name)
		}
	}
}
