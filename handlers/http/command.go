package http

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	stdhttp "net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

const (
	headerIdempotencyKey = "Idempotency-Key"
	headerReplayed       = "Idempotent-Replayed"
	headerCorrelationID  = "X-Correlation-Id"
	maxIdempotencyKey    = 255
	// keyRaceRetries bounds how often a command that lost an
	// Idempotency-Key race runs again to read the winner's response.
	keyRaceRetries = 3
)

// reply is a command's response.
type reply struct {
	status   int
	location string
	body     any
}

// command runs fn in one transaction and answers with its reply. With an
// Idempotency-Key header the reply is stored in that same transaction under
// (caller, key); a later request with the same key and body gets the stored
// reply and changes nothing, one with another body is 422. Concurrent
// requests with one key are serialized by the key's primary key: the losers
// roll back and answer the winner's reply.
func (s *Server) command(c echo.Context, body []byte, fn func(ctx context.Context, tx *store.Tx) (reply, error)) error {
	key := c.Request().Header.Get(headerIdempotencyKey)
	if len(key) > maxIdempotencyKey || (key == "" && c.Request().Header.Values(headerIdempotencyKey) != nil) {
		return domain.Invalid(headerIdempotencyKey, fmt.Sprintf("must be 1 to %d characters", maxIdempotencyKey))
	}
	scope := "anonymous"
	if a := actorOf(c); a.UserID != uuid.Nil {
		scope = a.UserID.String()
	}
	hash := requestHash(c.Request(), body)
	ctx := outbox.WithMetadata(c.Request().Context(), s.metadata(c))

	for attempt := 1; ; attempt++ {
		var status int
		var location string
		var payload []byte
		replayed := false
		err := s.uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
			if key != "" {
				stored, found, err := tx.Idempotency.Find(ctx, scope, key)
				if err != nil {
					return err
				}
				if found {
					if !bytes.Equal(stored.RequestHash, hash) {
						return domain.Invalid(headerIdempotencyKey, "was already used with another request")
					}
					status, location, payload, replayed = stored.Status, stored.Location, stored.Body, true
					return nil
				}
			}
			r, err := fn(ctx, tx)
			if err != nil {
				return err
			}
			if payload, err = json.Marshal(r.body); err != nil {
				return fmt.Errorf("encode reply: %w", err)
			}
			status, location = r.status, r.location
			if key != "" {
				tx.Idempotency.Save(scope, key, store.Response{RequestHash: hash, Status: status, Location: location, Body: payload})
			}
			return nil
		})
		if errors.Is(err, store.ErrKeyRace) && attempt < keyRaceRetries {
			continue
		}
		if err != nil {
			return err
		}
		if location != "" {
			c.Response().Header().Set(echo.HeaderLocation, location)
		}
		if replayed {
			c.Response().Header().Set(headerReplayed, "true")
		}
		return c.JSONBlob(status, payload)
	}
}

// requestHash identifies a request for Idempotency-Key comparison.
func requestHash(r *stdhttp.Request, body []byte) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", r.Method, r.URL.Path)
	h.Write(body)
	return h.Sum(nil)
}

// metadata is the correlation of the events this request causes: the
// caller's X-Correlation-Id if it sent one, else the request id.
func (s *Server) metadata(c echo.Context) outbox.Metadata {
	requestID := c.Response().Header().Get(echo.HeaderXRequestID)
	md := outbox.Metadata{
		CorrelationID: c.Request().Header.Get(headerCorrelationID),
		CausationID:   requestID,
		TraceParent:   c.Request().Header.Get("Traceparent"),
	}
	if md.CorrelationID == "" || len(md.CorrelationID) > 128 {
		md.CorrelationID = requestID
	}
	return md
}
