package httpapi

import (
	"context"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/store"
)

// listAudit: GET /v1/admin/audit?before=ID&limit=N (admin): the admin
// actions, newest first, in pages shaped as GET /v1/orders's. The log is
// in Postgres only (no read model): it is read in a transaction of its own.
func (s *Server) listAudit(c echo.Context) error {
	before, limit, err := auditPage(c)
	if err != nil {
		return err
	}
	var records []store.AuditRecord
	var next int64
	err = s.cfg.UnitOfWork.Do(c.Request().Context(), func(ctx context.Context, tx *store.Tx) (err error) {
		records, next, err = tx.Audit.Page(ctx, before, limit)
		return err
	})
	if err != nil {
		return err
	}
	body := pageBody[store.AuditRecord]{Items: records}
	if body.Items == nil {
		body.Items = []store.AuditRecord{}
	}
	if next != 0 {
		cursor := strconv.FormatInt(next, 10)
		body.Next = &cursor
	}
	return c.JSON(http.StatusOK, body)
}

// auditPage parses ?before (a record id: the next of a previous page; 0
// when absent) and ?limit (1..100, default 20).
func auditPage(c echo.Context) (int64, int, error) {
	var v domain.Validation
	var before int64
	if s := c.QueryParam("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if v.Check(err == nil && n > 0, "before", "must be a positive integer from a previous page's next") {
			before = n
		}
	}
	limit := 20
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if v.Check(err == nil && n >= 1 && n <= 100, "limit", "must be an integer from 1 to 100") {
			limit = n
		}
	}
	return before, limit, v.Err()
}
