package order_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
)

var (
	t0 = time.Date(2025, 7, 1, 9, 0, 0, 0, time.FixedZone("UTC-7", -7*60*60))
	t1 = t0.Add(30 * time.Minute)
)

// fieldErrors asserts err is a validation error and returns its fields by
// name, failing on a field named twice.
func fieldErrors(t *testing.T, err error) map[string]string {
	t.Helper()
	if err == nil {
		t.Fatal("error = nil, want a validation error")
	}
	if !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("errors.Is(%v, domain.ErrInvalid) = false", err)
	}
	var ve *domain.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("%v is not a *domain.ValidationError", err)
	}
	out := make(map[string]string, len(ve.Fields))
	for _, f := range ve.Fields {
		if _, dup := out[f.Field]; dup {
			t.Errorf("field %q reported twice", f.Field)
		}
		if f.Message == "" {
			t.Errorf("field %q has an empty message", f.Field)
		}
		out[f.Field] = f.Message
	}
	return out
}

// assertFields asserts err names exactly the want fields, or is nil when
// want is empty.
func assertFields(t *testing.T, err error, want ...string) map[string]string {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("error = %v, want nil", err)
		}
		return nil
	}
	fields := fieldErrors(t, err)
	got := make([]string, 0, len(fields))
	for f := range fields {
		got = append(got, f)
	}
	sort.Strings(got)
	want = append([]string(nil), want...)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("invalid fields = %v, want %v (error: %v)", got, want, err)
	}
	return fields
}

// items returns n valid items with distinct product ids and quantity 1.
func items(n int) []order.Item {
	out := make([]order.Item, n)
	for i := range out {
		out[i] = order.Item{ProductID: uuid.New(), Quantity: 1}
	}
	return out
}

// with returns a copy of items(n) with f applied.
func with(n int, f func([]order.Item)) []order.Item {
	it := items(n)
	f(it)
	return it
}

func TestValidateItems(t *testing.T) {
	tests := []struct {
		name       string
		items      []order.Item
		wantFields []string
		wantMsg    map[string]string // substrings of messages
	}{
		{name: "one item", items: items(1)},
		{name: "max lines", items: items(order.MaxLines)},
		{name: "quantity max", items: with(3, func(it []order.Item) { it[1].Quantity = order.MaxQuantity })},

		{name: "nil", items: nil, wantFields: []string{"items"}},
		{name: "empty", items: []order.Item{}, wantFields: []string{"items"}},
		{name: "101 lines", items: items(order.MaxLines + 1), wantFields: []string{"items"},
			wantMsg: map[string]string{"items": fmt.Sprint(order.MaxLines)}},
		{name: "101 lines with bad lines reports only the count", items: with(order.MaxLines+1, func(it []order.Item) {
			it[0].Quantity = 0
			it[1].ProductID = uuid.Nil
		}), wantFields: []string{"items"}},
		{name: "quantity zero", items: with(3, func(it []order.Item) { it[2].Quantity = 0 }), wantFields: []string{"items[2].quantity"}},
		{name: "quantity negative", items: with(3, func(it []order.Item) { it[2].Quantity = -1 }), wantFields: []string{"items[2].quantity"}},
		{name: "quantity min int64", items: with(1, func(it []order.Item) { it[0].Quantity = math.MinInt64 }), wantFields: []string{"items[0].quantity"}},
		{name: "quantity too high", items: with(3, func(it []order.Item) { it[2].Quantity = order.MaxQuantity + 1 }), wantFields: []string{"items[2].quantity"},
			wantMsg: map[string]string{"items[2].quantity": fmt.Sprint(order.MaxQuantity)}},
		{name: "nil product id", items: with(3, func(it []order.Item) { it[1].ProductID = uuid.Nil }), wantFields: []string{"items[1].product_id"}},
		{name: "duplicate product id", items: with(3, func(it []order.Item) { it[2].ProductID = it[0].ProductID }), wantFields: []string{"items[2].product_id"},
			wantMsg: map[string]string{"items[2].product_id": "items[0]"}},
		{name: "product three times", items: with(4, func(it []order.Item) {
			it[1].ProductID = it[0].ProductID
			it[3].ProductID = it[0].ProductID
		}), wantFields: []string{"items[1].product_id", "items[3].product_id"},
			wantMsg: map[string]string{"items[1].product_id": "items[0]", "items[3].product_id": "items[0]"}},
		{name: "two nil ids are not duplicates", items: with(2, func(it []order.Item) {
			it[0].ProductID = uuid.Nil
			it[1].ProductID = uuid.Nil
		}), wantFields: []string{"items[0].product_id", "items[1].product_id"},
			wantMsg: map[string]string{"items[0].product_id": "required", "items[1].product_id": "required"}},
		{name: "bad id and bad quantity on one line", items: with(2, func(it []order.Item) {
			it[1].ProductID = uuid.Nil
			it[1].Quantity = 0
		}), wantFields: []string{"items[1].product_id", "items[1].quantity"}},
		{name: "several lines", items: with(5, func(it []order.Item) {
			it[0].Quantity = 1001
			it[2].ProductID = uuid.Nil
			it[4].ProductID = it[3].ProductID
		}), wantFields: []string{"items[0].quantity", "items[2].product_id", "items[4].product_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fields := assertFields(t, order.ValidateItems(tt.items), tt.wantFields...)
			for f, sub := range tt.wantMsg {
				if !strings.Contains(fields[f], sub) {
					t.Errorf("message of %s = %q, want it to mention %q", f, fields[f], sub)
				}
			}
		})
	}
}

func line(price, qty int64) order.Line {
	id := uuid.New()
	return order.Line{ProductID: id, SKU: "SKU-" + id.String()[:8], Name: "Thing", Quantity: qty, UnitPriceCents: price}
}

func TestPlace(t *testing.T) {
	many := make([]order.Line, order.MaxLines)
	var manyTotal int64
	for i := range many {
		many[i] = line(int64(i+1)*100, int64(i%order.MaxQuantity)+1)
		manyTotal += int64(i+1) * 100 * (int64(i%order.MaxQuantity) + 1)
	}
	tests := []struct {
		name      string
		lines     []order.Line
		wantTotal int64
	}{
		{"one line", []order.Line{line(1999, 1)}, 1999},
		{"quantity multiplies", []order.Line{line(250, 4)}, 1000},
		{"several lines", []order.Line{line(100, 2), line(1999, 3), line(5, 1000)}, 200 + 5997 + 5000},
		{"free line", []order.Line{line(0, 5), line(300, 1)}, 300},
		{"max lines", many, manyTotal},
		{"largest realistic order", []order.Line{line(100_000_000, order.MaxQuantity)}, 100_000_000_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, customer := uuid.New(), uuid.New()
			o, err := order.Place(id, customer, tt.lines, t0)
			if err != nil {
				t.Fatalf("Place: %v", err)
			}
			want := order.State{ID: id, CustomerID: customer, Status: order.StatusPending, Lines: tt.lines,
				TotalCents: tt.wantTotal, Version: 1, CreatedAt: t0.UTC(), UpdatedAt: t0.UTC()}
			if got := o.State(); !reflect.DeepEqual(got, want) {
				t.Errorf("State() = %+v, want %+v", got, want)
			}
			if o.ID() != id || o.CustomerID() != customer || o.Status() != "pending" || o.TotalCents() != tt.wantTotal || o.Version() != 1 {
				t.Errorf("accessors: id %v customer %v status %q total %d version %d", o.ID(), o.CustomerID(), o.Status(), o.TotalCents(), o.Version())
			}
			if o.CreatedAt().Location() != time.UTC || !o.CreatedAt().Equal(t0) {
				t.Errorf("CreatedAt = %v, want %v in UTC", o.CreatedAt(), t0.UTC())
			}
			events := o.Events()
			if len(events) != 1 {
				t.Fatalf("recorded %d events, want 1", len(events))
			}
			e := events[0]
			if e.Type != "order.placed" || e.AggregateType != "order" || e.AggregateID != id || e.AggregateVersion != 1 {
				t.Errorf("event = %s %s %v v%d, want order.placed order %v v1", e.Type, e.AggregateType, e.AggregateID, e.AggregateVersion, id)
			}
			if e.ID.Version() != 7 || !e.OccurredAt.Equal(t0) || e.OccurredAt.Location() != time.UTC {
				t.Errorf("event id %v (v%d), occurred %v", e.ID, e.ID.Version(), e.OccurredAt)
			}
			wantData := order.Placed{OrderID: id, UserID: customer, Status: order.StatusPending, Lines: tt.lines, TotalCents: tt.wantTotal}
			if !reflect.DeepEqual(e.Data, wantData) {
				t.Errorf("event data = %+v, want %+v", e.Data, wantData)
			}
			if len(o.Events()) != 0 {
				t.Error("events not cleared after Events()")
			}
		})
	}
}

func TestPlaceCopiesLines(t *testing.T) {
	lines := []order.Line{line(100, 1), line(200, 2)}
	orig := append([]order.Line(nil), lines...)
	o, err := order.Place(uuid.New(), uuid.New(), lines, t0)
	if err != nil {
		t.Fatalf("Place: %v", err)
	}
	e := o.Events()[0]
	lines[0].Quantity = 999
	lines[1].UnitPriceCents = 1
	if got := o.Lines(); !reflect.DeepEqual(got, orig) {
		t.Errorf("order lines changed with the caller's slice: %+v", got)
	}
	if got := e.Data.(order.Placed).Lines; !reflect.DeepEqual(got, orig) {
		t.Errorf("event lines changed with the caller's slice: %+v", got)
	}
	// The event's lines are not the order's lines either.
	e.Data.(order.Placed).Lines[0].Name = "changed"
	if o.Lines()[0].Name != orig[0].Name {
		t.Error("order lines share memory with the event's lines")
	}
}

func TestPlaceInvalid(t *testing.T) {
	valid := func() []order.Line { return []order.Line{line(100, 1), line(200, 2)} }
	tests := []struct {
		name       string
		id         uuid.UUID
		customer   uuid.UUID
		lines      []order.Line
		wantFields []string
	}{
		{name: "nil id", id: uuid.Nil, customer: uuid.New(), lines: valid(), wantFields: []string{"id"}},
		{name: "nil customer", id: uuid.New(), customer: uuid.Nil, lines: valid(), wantFields: []string{"user_id"}},
		{name: "nil id and customer", id: uuid.Nil, customer: uuid.Nil, lines: valid(), wantFields: []string{"id", "user_id"}},
		{name: "negative unit price", id: uuid.New(), customer: uuid.New(), lines: []order.Line{line(100, 1), line(-1, 1)},
			wantFields: []string{"items[1].unit_price_cents"}},
		{name: "no lines", id: uuid.New(), customer: uuid.New(), lines: nil, wantFields: []string{"items"}},
		{name: "too many lines", id: uuid.New(), customer: uuid.New(), lines: make([]order.Line, order.MaxLines+1), wantFields: []string{"items"}},
		{name: "zero quantity", id: uuid.New(), customer: uuid.New(), lines: []order.Line{line(100, 1), line(100, 0)},
			wantFields: []string{"items[1].quantity"}},
		{name: "quantity too high", id: uuid.New(), customer: uuid.New(), lines: []order.Line{line(100, order.MaxQuantity+1)},
			wantFields: []string{"items[0].quantity"}},
		{name: "duplicate product", id: uuid.New(), customer: uuid.New(), lines: func() []order.Line {
			l := valid()
			l[1].ProductID = l[0].ProductID
			return l
		}(), wantFields: []string{"items[1].product_id"}},
		{name: "nil product", id: uuid.New(), customer: uuid.New(), lines: func() []order.Line {
			l := valid()
			l[0].ProductID = uuid.Nil
			return l
		}(), wantFields: []string{"items[0].product_id"}},
		{
			name: "total overflowing int64 is refused", id: uuid.New(), customer: uuid.New(),
			lines:      []order.Line{line(math.MaxInt64, 2)},
			wantFields: []string{"items[0].unit_price_cents"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := order.Place(tt.id, tt.customer, tt.lines, t0)
			if o != nil {
				t.Errorf("Place returned an order with an error: %+v", o.State())
			}
			assertFields(t, err, tt.wantFields...)
		})
	}
}

func TestTransitions(t *testing.T) {
	type action string
	const (
		confirm action = "confirm"
		reject  action = "reject"
		cancel  action = "cancel"
	)
	statuses := []order.Status{order.StatusPending, order.StatusConfirmed, order.StatusRejected, order.StatusCancelled}
	// outcome[from][action] = resulting status, or "" when refused.
	outcome := map[order.Status]map[action]order.Status{
		order.StatusPending:   {confirm: order.StatusConfirmed, reject: order.StatusRejected, cancel: order.StatusCancelled},
		order.StatusConfirmed: {cancel: order.StatusCancelled},
		order.StatusRejected:  {},
		order.StatusCancelled: {},
	}
	eventType := map[action]string{confirm: "order.confirmed", reject: "order.rejected", cancel: "order.cancelled"}
	refusal := map[action]error{confirm: order.ErrNotPending, reject: order.ErrNotPending, cancel: order.ErrNotCancellable}
	wrongRefusal := map[action]error{confirm: order.ErrNotCancellable, reject: order.ErrNotCancellable, cancel: order.ErrNotPending}

	for _, from := range statuses {
		for _, act := range []action{confirm, reject, cancel} {
			to, allowed := outcome[from][act]
			t.Run(fmt.Sprintf("%s from %s", act, from), func(t *testing.T) {
				id, customer := uuid.New(), uuid.New()
				lines := []order.Line{line(100, 2)}
				o := order.Restore(order.State{ID: id, CustomerID: customer, Status: from, Lines: lines,
					TotalCents: 200, Version: 4, CreatedAt: t0.UTC(), UpdatedAt: t0.UTC()})
				before := o.State()

				const reason = "out of stock: SKU-1"
				var err error
				switch act {
				case confirm:
					err = o.Confirm(t1)
				case reject:
					err = o.Reject(reason, t1)
				case cancel:
					err = o.Cancel(t1)
				}

				if !allowed {
					if !errors.Is(err, refusal[act]) {
						t.Fatalf("error = %v, want %v", err, refusal[act])
					}
					if errors.Is(err, wrongRefusal[act]) {
						t.Errorf("error %v is also %v", err, wrongRefusal[act])
					}
					if !errors.Is(err, domain.ErrConflict) {
						t.Errorf("errors.Is(%v, domain.ErrConflict) = false", err)
					}
					if got := o.State(); !reflect.DeepEqual(got, before) {
						t.Errorf("refused %s changed state %+v -> %+v", act, before, got)
					}
					if events := o.Events(); len(events) != 0 {
						t.Errorf("refused %s recorded %d events", act, len(events))
					}
					return
				}

				if err != nil {
					t.Fatalf("%s from %s: %v", act, from, err)
				}
				if o.Status() != to {
					t.Errorf("status = %q, want %q", o.Status(), to)
				}
				if o.Version() != before.Version+1 {
					t.Errorf("version = %d, want %d", o.Version(), before.Version+1)
				}
				if !o.UpdatedAt().Equal(t1) || o.UpdatedAt().Location() != time.UTC {
					t.Errorf("UpdatedAt = %v, want %v in UTC", o.UpdatedAt(), t1.UTC())
				}
				if !o.CreatedAt().Equal(before.CreatedAt) || o.TotalCents() != before.TotalCents || !reflect.DeepEqual(o.Lines(), before.Lines) {
					t.Errorf("%s changed more than status: %+v -> %+v", act, before, o.State())
				}
				events := o.Events()
				if len(events) != 1 {
					t.Fatalf("recorded %d events, want 1", len(events))
				}
				e := events[0]
				if e.Type != eventType[act] {
					t.Errorf("event type = %q, want %q", e.Type, eventType[act])
				}
				if e.AggregateType != "order" || e.AggregateID != id || e.AggregateVersion != before.Version+1 {
					t.Errorf("event aggregate = %s %v v%d, want order %v v%d", e.AggregateType, e.AggregateID, e.AggregateVersion, id, before.Version+1)
				}
				if !e.OccurredAt.Equal(t1) || e.ID.Version() != 7 {
					t.Errorf("event occurred %v id %v", e.OccurredAt, e.ID)
				}
				wantReason := ""
				if act == reject {
					wantReason = reason
				}
				want := order.StatusChanged{OrderID: id, UserID: customer, Status: to, From: from, Reason: wantReason}
				if e.Data != want {
					t.Errorf("event data = %+v, want %+v", e.Data, want)
				}
				if o.Reason() != wantReason || o.State().Reason != wantReason {
					t.Errorf("the order keeps the reason %q (state %q), want %q", o.Reason(), o.State().Reason, wantReason)
				}
			})
		}
	}
}

func TestLifeCycleVersions(t *testing.T) {
	tests := []struct {
		name      string
		steps     func(o *order.Order) []error
		wantTypes []string
		final     order.Status
	}{
		{
			name: "placed, confirmed, cancelled",
			steps: func(o *order.Order) []error {
				return []error{o.Confirm(t1), o.Cancel(t1)}
			},
			wantTypes: []string{"order.placed", "order.confirmed", "order.cancelled"},
			final:     order.StatusCancelled,
		},
		{
			name: "placed, rejected",
			steps: func(o *order.Order) []error {
				return []error{o.Reject("no stock", t1)}
			},
			wantTypes: []string{"order.placed", "order.rejected"},
			final:     order.StatusRejected,
		},
		{
			name: "placed, cancelled",
			steps: func(o *order.Order) []error {
				return []error{o.Cancel(t1)}
			},
			wantTypes: []string{"order.placed", "order.cancelled"},
			final:     order.StatusCancelled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := order.Place(uuid.New(), uuid.New(), []order.Line{line(100, 1)}, t0)
			if err != nil {
				t.Fatalf("Place: %v", err)
			}
			for i, err := range tt.steps(o) {
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			// A second attempt at anything after the end changes nothing.
			if err := o.Confirm(t1); err == nil {
				t.Error("Confirm after the end succeeded")
			}
			if err := o.Cancel(t1); err == nil {
				t.Error("Cancel after the end succeeded")
			}
			events := o.Events()
			if len(events) != len(tt.wantTypes) {
				t.Fatalf("recorded %d events, want %d", len(events), len(tt.wantTypes))
			}
			for i, e := range events {
				if e.Type != tt.wantTypes[i] || e.AggregateVersion != int64(i+1) {
					t.Errorf("event %d = %s v%d, want %s v%d", i, e.Type, e.AggregateVersion, tt.wantTypes[i], i+1)
				}
			}
			if o.Status() != tt.final || o.Version() != int64(len(tt.wantTypes)) {
				t.Errorf("final status %q version %d, want %q version %d", o.Status(), o.Version(), tt.final, len(tt.wantTypes))
			}
		})
	}
}

func TestLinesReturnsACopy(t *testing.T) {
	tests := []struct {
		name  string
		build func(t *testing.T, lines []order.Line) *order.Order
	}{
		{"placed", func(t *testing.T, lines []order.Line) *order.Order {
			t.Helper()
			o, err := order.Place(uuid.New(), uuid.New(), lines, t0)
			if err != nil {
				t.Fatalf("Place: %v", err)
			}
			return o
		}},
		{"restored", func(t *testing.T, lines []order.Line) *order.Order {
			t.Helper()
			return order.Restore(order.State{ID: uuid.New(), CustomerID: uuid.New(), Status: order.StatusPending,
				Lines: lines, TotalCents: 500, Version: 1})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := []order.Line{line(100, 1), line(200, 2)}
			want := append([]order.Line(nil), lines...)
			o := tt.build(t, lines)

			lines[0].Quantity = 50 // the caller's slice
			got := o.Lines()
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Lines() = %+v, want %+v", got, want)
			}
			got[0].Quantity = 77
			got[1].UnitPriceCents = 0
			_ = append(got[:1], line(1, 1)) // may write into the backing array
			if again := o.Lines(); !reflect.DeepEqual(again, want) {
				t.Errorf("changing Lines()'s result changed the order: %+v", again)
			}
			s := o.State()
			s.Lines[0].SKU = "changed"
			if again := o.Lines(); !reflect.DeepEqual(again, want) {
				t.Errorf("changing State().Lines changed the order: %+v", again)
			}
		})
	}
}

func TestRestoreStateRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		state order.State
	}{
		{"confirmed", order.State{ID: uuid.New(), CustomerID: uuid.New(), Status: order.StatusConfirmed,
			Lines: []order.Line{line(100, 3)}, TotalCents: 300, Version: 2, CreatedAt: t0.UTC(), UpdatedAt: t1.UTC()}},
		{"cancelled, several lines", order.State{ID: uuid.New(), CustomerID: uuid.New(), Status: order.StatusCancelled,
			Lines: []order.Line{line(1, 1), line(2, 2)}, TotalCents: 5, Version: 3, CreatedAt: t0.UTC(), UpdatedAt: t1.UTC()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := order.Restore(tt.state)
			if got := o.State(); !reflect.DeepEqual(got, tt.state) {
				t.Errorf("State() = %+v, want %+v", got, tt.state)
			}
			if o.ID() != tt.state.ID || o.CustomerID() != tt.state.CustomerID || o.Status() != tt.state.Status ||
				o.TotalCents() != tt.state.TotalCents || o.Version() != tt.state.Version ||
				!o.CreatedAt().Equal(tt.state.CreatedAt) || !o.UpdatedAt().Equal(tt.state.UpdatedAt) {
				t.Errorf("accessors disagree with state %+v", tt.state)
			}
			if events := o.Events(); len(events) != 0 {
				t.Errorf("Restore recorded %d events", len(events))
			}
		})
	}
}

func TestErrorKinds(t *testing.T) {
	kinds := []error{domain.ErrInvalid, domain.ErrNotFound, domain.ErrConflict, domain.ErrUnauthorized, domain.ErrForbidden}
	tests := []struct {
		name string
		err  error
		kind error
	}{
		{"not found", order.ErrNotFound, domain.ErrNotFound},
		{"not cancellable", order.ErrNotCancellable, domain.ErrConflict},
		{"not pending", order.ErrNotPending, domain.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range kinds {
				if got, want := errors.Is(tt.err, k), k == tt.kind; got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", tt.err, k, got, want)
				}
			}
		})
	}
}

func TestContractNames(t *testing.T) {
	tests := []struct{ got, want string }{
		{order.AggregateType, "order"},
		{order.EventPlaced, "order.placed"},
		{order.EventConfirmed, "order.confirmed"},
		{order.EventRejected, "order.rejected"},
		{order.EventCancelled, "order.cancelled"},
		{string(order.StatusPending), "pending"},
		{string(order.StatusConfirmed), "confirmed"},
		{string(order.StatusRejected), "rejected"},
		{string(order.StatusCancelled), "cancelled"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("constant = %q, want %q", tt.got, tt.want)
		}
	}
}
