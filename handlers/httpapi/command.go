package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/internal/telemetry"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

const (
	headerIdempotencyKey = "Idempotency-Key"
	headerReplayed       = "Idempotent-Replayed"
	headerCorrelationID  = "X-Correlation-Id"
	maxIdempotencyKey    = 255
)

// reply is a command's response.
type reply struct {
	status   int
	location string
	body     any
}

// command runs fn in a transaction, shared with the commands that arrive
// at the same time (store.Group), and answers with its reply once that
// transaction has committed. What ahead names, the group reads for all its
// commands at once (app.PlaceOrderReads).
//
// With an Idempotency-Key header the reply is stored under (caller, key) in
// that same transaction, and a repeated request gets the stored reply and
// changes nothing; one with another body is 422. The first attempt is
// optimistic: it runs the command and inserts the key, which costs no extra
// query for the common, first-time request. If the key turns out to be taken
// — by a concurrent twin that committed first (the key's primary key makes
// this one fail and roll back) or by an earlier request this one retries (the
// command may then fail on its own, e.g. a second cancel) — the stored reply
// is looked up and wins.
func (s *Server) command(c echo.Context, body []byte, ahead store.ReadAhead, fn func(ctx context.Context, tx *store.Tx) (reply, error)) error {
	key := c.Request().Header.Get(headerIdempotencyKey)
	if !validKey(key) && c.Request().Header.Values(headerIdempotencyKey) != nil {
		return domain.Invalid(headerIdempotencyKey, fmt.Sprintf("must be 1 to %d printable ASCII characters", maxIdempotencyKey))
	}
	// Keys are the caller's: its user's, or before login its address's, so
	// that one anonymous client cannot meet, or replay, another's key.
	scope := "anonymous:" + c.RealIP()
	if a := actorOf(c); a.UserID != uuid.Nil {
		scope = a.UserID.String()
	}
	hash := s.cfg.Auth.RequestDigest([]byte(c.Request().Method+" "+c.Request().URL.Path+"\n"), body)
	ctx := outbox.WithMetadata(c.Request().Context(), s.metadata(c))

	if s.cfg.Backlog != nil {
		if err := s.cfg.Backlog.Admit(ctx); err != nil {
			return err
		}
	}
	var res store.Response
	err := s.commands.DoReading(ctx, ahead, func(ctx context.Context, tx *store.Tx) error {
		r, err := fn(ctx, tx)
		if err != nil {
			return err
		}
		payload, err := json.Marshal(r.body)
		if err != nil {
			return fmt.Errorf("encode reply: %w", err)
		}
		res = store.Response{RequestHash: hash, Status: r.status, Location: r.location, Body: payload}
		if key != "" {
			tx.Idempotency.Save(scope, key, res)
		}
		return nil
	})
	if err != nil && key != "" {
		stored, found, findErr := s.storedReply(ctx, scope, key)
		if findErr != nil {
			return errors.Join(err, findErr)
		}
		if !found {
			return err
		}
		if !bytes.Equal(stored.RequestHash, hash) {
			return domain.Invalid(headerIdempotencyKey, "was already used with another request")
		}
		res, err = stored, nil
		c.Response().Header().Set(headerReplayed, "true")
	}
	if err != nil {
		return err
	}
	if res.Location != "" {
		c.Response().Header().Set(echo.HeaderLocation, res.Location)
	}
	return c.JSONBlob(res.Status, append(res.Body, '\n')) // as c.JSON ends its bodies
}

// validKey reports whether an Idempotency-Key is 1 to maxIdempotencyKey
// printable ASCII characters (a UUID, typically).
func validKey(key string) bool { return printableASCII(key, maxIdempotencyKey) }

// storedReply returns the reply stored under (scope, key), if any.
func (s *Server) storedReply(ctx context.Context, scope, key string) (res store.Response, found bool, err error) {
	err = s.cfg.UnitOfWork.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
		res, found, err = tx.Idempotency.Find(ctx, scope, key)
		return err
	})
	return res, found, err
}

// metadata is the correlation of the events this request causes.
// Their trace context is the request's span, when tracing is on; else the
// caller's own, as it sent it (bounded by boundClientHeaders).
func (s *Server) metadata(c echo.Context) outbox.Metadata {
	ctx := c.Request().Context()
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = telemetry.Propagator().Extract(ctx, propagation.HeaderCarrier(c.Request().Header))
	}
	return outbox.Metadata{
		CorrelationID: correlationID(c),
		CausationID:   c.Response().Header().Get(echo.HeaderXRequestID),
		Trace:         telemetry.Carrier(ctx),
	}
}

// correlationID is the caller's X-Correlation-Id if it sent a usable one,
// else the request id: it goes into the events the request causes and into
// its log lines.
func correlationID(c echo.Context) string {
	if id := c.Request().Header.Get(headerCorrelationID); id != "" { // bounded by boundClientHeaders
		return id
	}
	return c.Response().Header().Get(echo.HeaderXRequestID)
}
