package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type      string              `json:"type"`
	Title     string              `json:"title"`
	Status    int                 `json:"status"`
	Detail    string              `json:"detail,omitempty"`
	Instance  string              `json:"instance,omitempty"`
	RequestID string              `json:"request_id,omitempty"`
	Errors    []domain.FieldError `json:"errors,omitempty"`
}

// problemError is an error raised by the HTTP layer itself (a malformed
// body, a bad header) with the status it answers.
type problemError struct {
	status int
	detail string
}

func (e problemError) Error() string { return e.detail }

// handleError is the one place where errors become responses. Client errors
// are answered with what went wrong; anything unexpected is logged with the
// request id and answered 500 with that id and nothing else.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	req := c.Request()
	p := Problem{Type: "about:blank", Instance: req.URL.Path, RequestID: c.Response().Header().Get(echo.HeaderXRequestID)}
	var (
		validation *domain.ValidationError
		pe         problemError
		he         *echo.HTTPError
	)
	switch {
	case errors.As(err, &validation):
		p.Status, p.Detail, p.Errors = http.StatusUnprocessableEntity, "the request has invalid fields", validation.Fields
	case errors.As(err, &pe):
		p.Status, p.Detail = pe.status, pe.detail
	case errors.As(err, &he):
		p.Status = he.Code
		if msg, ok := he.Message.(string); ok && he.Code < 500 {
			p.Detail = msg
		}
	case errors.Is(err, domain.ErrUnauthorized):
		p.Status, p.Detail = http.StatusUnauthorized, publicMessage(err)
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="shop"`)
	case errors.Is(err, domain.ErrForbidden):
		p.Status, p.Detail = http.StatusForbidden, publicMessage(err)
	case errors.Is(err, domain.ErrNotFound):
		p.Status, p.Detail = http.StatusNotFound, publicMessage(err)
	case errors.Is(err, domain.ErrConflict):
		p.Status, p.Detail = http.StatusConflict, publicMessage(err)
	case errors.Is(err, domain.ErrInvalid):
		p.Status, p.Detail = http.StatusUnprocessableEntity, publicMessage(err)
	case exceeded(err, c, &p):
	case errors.Is(err, errBusy):
		p.Status, p.Detail = http.StatusServiceUnavailable, errBusy.Error()
		c.Response().Header().Set("Retry-After", "1")
	case errors.Is(err, outbox.ErrBehind):
		p.Status, p.Detail = http.StatusServiceUnavailable, "too many events wait to be delivered; retry after the time in Retry-After"
		c.Response().Header().Set("Retry-After", "1")
	case errors.Is(err, domain.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		p.Status, p.Detail = http.StatusServiceUnavailable, "a dependency is unavailable; retry later"
		c.Response().Header().Set("Retry-After", "1")
	case errors.Is(err, context.Canceled) && req.Context().Err() != nil:
		p.Status = 499 // the client went away; nobody reads this answer
	default:
		p.Status, p.Detail = http.StatusInternalServerError, "internal error; quote the request id when reporting it"
	}
	if p.Status >= 500 && !errors.Is(err, errBusy) && !errors.Is(err, outbox.ErrBehind) { // refusals are counted, not logged: they come in floods
		s.cfg.Logger.LogAttrs(req.Context(), slog.LevelError, "request failed",
			slog.String("method", req.Method), slog.String("route", c.Path()), slog.Int("status", p.Status),
			slog.String("request_id", p.RequestID), slog.String("correlation_id", correlationID(c)),
			slog.String("error", err.Error()))
	}
	p.Title = http.StatusText(p.Status)
	if req.Method == http.MethodHead {
		_ = c.NoContent(p.Status)
		return
	}
	c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
	c.Response().WriteHeader(p.Status)
	_ = jsonEncode(c.Response(), p)
}

// publicMessage is the message of the known domain error that err wraps:
// it names the rule that was broken and nothing internal (wrapping may add
// ids and driver detail, which stay in the logs of whoever logs them).
func publicMessage(err error) string {
	for _, known := range []error{
		user.ErrEmailTaken, user.ErrNotFound, user.ErrInvalidCredentials,
		product.ErrSKUTaken, product.ErrNotFound, product.ErrOutOfStock,
		order.ErrNotFound, order.ErrNotCancellable, order.ErrNotPending,
		auth.ErrInvalidToken, auth.ErrMissingToken, store.ErrConcurrentUpdate, store.ErrUnknownUser, errForbidden,
	} {
		if errors.Is(err, known) {
			return known.Error()
		}
	}
	for _, kind := range []error{domain.ErrUnauthorized, domain.ErrForbidden, domain.ErrNotFound, domain.ErrConflict, domain.ErrInvalid} {
		if errors.Is(err, kind) {
			return kind.Error()
		}
	}
	return "error"
}
