package httpapi_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// auditJSON is a record of GET /v1/admin/audit.
type auditJSON struct {
	ID        int64          `json:"id"`
	At        time.Time      `json:"at"`
	Actor     string         `json:"actor"`
	Action    string         `json:"action"`
	Target    string         `json:"target"`
	RequestID string         `json:"request_id"`
	Details   map[string]any `json:"details"`
}

type auditPageJSON struct {
	Items []auditJSON `json:"items"`
	Next  *string     `json:"next"`
}

// auditPage reads one page of the audit log as token.
func (a *api) auditPage(t *testing.T, token, query string) auditPageJSON {
	t.Helper()
	var page auditPageJSON
	a.do(t, "GET", "/v1/admin/audit"+query, token, nil, nil).expect(t, http.StatusOK).into(t, &page)
	return page
}

// TestAuditLogListsAdminActionsNewestFirst: each admin command through the
// API leaves one record, with its admin and its request id; a refused one
// none; an admin reads them newest first, a page at a time.
func TestAuditLogListsAdminActionsNewestFirst(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	adminID, admin := a.createAdmin(t)
	actor := "user:" + adminID.String()

	if page := a.auditPage(t, admin, ""); len(page.Items) != 0 || page.Next != nil {
		t.Fatalf("the audit log of a fresh database = %+v, want an empty last page", page)
	}

	type action struct {
		action, target, requestID string
		details                   map[string]any
	}
	var done []action
	r := a.do(t, "POST", "/v1/products", admin, map[string]any{"sku": "AUD-1", "name": "Audited", "price_cents": 100, "stock": 2}, nil)
	r.expect(t, http.StatusCreated)
	id, _ := r.body["id"].(string)
	done = append(done, action{"product.create", "product:" + id, r.header.Get("X-Request-Id"),
		map[string]any{"sku": "AUD-1", "name": "Audited", "price_cents": 100.0, "stock": 2.0}})
	r = a.do(t, "PATCH", "/v1/products/"+id, admin, map[string]any{"price_cents": 150}, nil).expect(t, http.StatusOK)
	done = append(done, action{"product.update", "product:" + id, r.header.Get("X-Request-Id"),
		map[string]any{"sku": "AUD-1", "price_cents": 150.0}})
	stock := 2
	for _, q := range []int{3, 4} {
		stock += q
		r = a.do(t, "POST", "/v1/products/"+id+"/restock", admin, map[string]any{"quantity": q}, nil).expect(t, http.StatusAccepted)
		done = append(done, action{"product.restock", "product:" + id, r.header.Get("X-Request-Id"),
			map[string]any{"sku": "AUD-1", "quantity": float64(q), "stock": float64(stock)}})
	}

	// Refused commands leave no record.
	a.do(t, "POST", "/v1/products", admin, map[string]any{"sku": "AUD-1", "name": "Twin", "price_cents": 1, "stock": 0}, nil).expect(t, http.StatusConflict)
	a.do(t, "POST", "/v1/products/"+id+"/restock", admin, map[string]any{"quantity": 0}, nil).expect(t, http.StatusUnprocessableEntity)
	if n := a.count(t, `SELECT count(*) FROM audit_log`); n != len(done) {
		t.Fatalf("%d audit records, want %d: one per admin command that succeeded", n, len(done))
	}

	var got []auditJSON
	query, pages := "?limit=3", 0
	for {
		page := a.auditPage(t, admin, query)
		pages++
		got = append(got, page.Items...)
		if page.Next == nil {
			break
		}
		if pages > len(done) {
			t.Fatal("the audit log pages on and on")
		}
		query = "?limit=3&before=" + *page.Next
	}
	if pages != 2 || len(got) != len(done) {
		t.Fatalf("read %d records in %d pages, want %d in 2", len(got), pages, len(done))
	}
	for i, rec := range got {
		want := done[len(done)-1-i] // newest first
		if i > 0 && rec.ID >= got[i-1].ID {
			t.Errorf("record %d (id %d) after id %d: not newest first", i, rec.ID, got[i-1].ID)
		}
		if rec.Actor != actor || rec.Action != want.action || rec.Target != want.target ||
			want.requestID == "" || rec.RequestID != want.requestID || rec.At.IsZero() || !sameDetails(rec.Details, want.details) {
			t.Errorf("record %d = %+v, want %s %s by %s in request %q with %v", i, rec, want.action, want.target, actor, want.requestID, want.details)
		}
	}

	// A cursor past the oldest record is an empty last page.
	if page := a.auditPage(t, admin, "?before="+strconv.FormatInt(got[len(got)-1].ID, 10)); len(page.Items) != 0 || page.Next != nil {
		t.Errorf("the page before the oldest record = %+v, want an empty last page", page)
	}
}

func sameDetails(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestAuditLogIsForAdmins: only an admin reads the audit log, with a
// well-formed page.
func TestAuditLogIsForAdmins(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, customer := a.registerCustomer(t, "cathy@example.com")

	a.do(t, "GET", "/v1/admin/audit", "", nil, nil).unauthorized(t)
	a.do(t, "GET", "/v1/admin/audit", "not-a-token", nil, nil).unauthorized(t)
	a.do(t, "GET", "/v1/admin/audit", customer, nil, nil).problem(t, http.StatusForbidden)

	tests := []struct {
		query string
		want  []string
	}{
		{"?before=abc", []string{"before"}},
		{"?before=0", []string{"before"}},
		{"?before=-5", []string{"before"}},
		{"?before=1.5", []string{"before"}},
		{"?limit=0", []string{"limit"}},
		{"?limit=101", []string{"limit"}},
		{"?limit=ten&before=x", []string{"before", "limit"}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			a.do(t, "GET", "/v1/admin/audit"+tt.query, admin, nil, nil).invalid(t, tt.want...)
		})
	}
	r := a.do(t, "GET", "/v1/admin/audit?limit=100", admin, nil, nil).expect(t, http.StatusOK)
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
}
