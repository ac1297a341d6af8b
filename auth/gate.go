package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain/user"
)

// Access is what a user may do now: its role, and the version of its
// tokens (every token of an earlier version is revoked).
type Access struct {
	Role         user.Role
	TokenVersion int64
}

// Lookup reads a user's Access; user.ErrNotFound when the user is gone.
type Lookup func(ctx context.Context, id uuid.UUID) (Access, error)

// GateConfig configures a Gate.
type GateConfig struct {
	// Auth verifies the tokens. Required.
	Auth *Auth
	// Lookup reads a user's access as it is now. Required.
	Lookup Lookup
	// TTL is how long a user's access is cached: a role change, a
	// revocation or a deleted user takes effect within TTL. Default 10s;
	// at most 30s.
	TTL time.Duration
	// Size is how many users' access, and how many verified tokens, are
	// cached. Default 10000.
	Size int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Validate fills defaults and checks the configuration.
func (c *GateConfig) Validate() error {
	switch {
	case c.Auth == nil:
		return errors.New("gate: auth is required")
	case c.Lookup == nil:
		return errors.New("gate: a lookup is required")
	}
	if c.TTL == 0 {
		c.TTL = 10 * time.Second
	}
	if c.Size == 0 {
		c.Size = 10_000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.TTL < 0 || c.TTL > 30*time.Second || c.Size < 0 {
		return errors.New("gate: the ttl must be from 0 to 30s and the size positive")
	}
	return nil
}

// Gate admits a bearer token when it is valid and its user still exists,
// with the same token version: a token says who, the user's row says what
// they may do.
type Gate struct {
	cfg GateConfig

	mu    sync.Mutex
	cache map[uuid.UUID]cached
	// verified holds the claims of the tokens whose signature was checked,
	// until they expire: a client sends the same token with every request,
	// and checking it again (decoding, HMAC, JSON) would give the same
	// answer. Only valid tokens get in, so garbage cannot flood it.
	verified map[string]Claims
}

// cached is a user's access or the fact that it is gone, until expires.
// The cache is a map that is emptied when full: it holds a few seconds of
// signed-in users, and needs neither eviction order nor a goroutine (as
// expirable LRUs run, one per cache, never stopped).
type cached struct {
	access  Access
	gone    bool
	expires time.Time
}

// NewGate returns the gate of cfg.
func NewGate(cfg GateConfig) (*Gate, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Gate{cfg: cfg, cache: map[uuid.UUID]cached{}, verified: map[string]Claims{}}, nil
}

// Principal is who an admitted token speaks for.
type Principal struct {
	UserID uuid.UUID
	Role   user.Role
}

// Admit returns who token speaks for; ErrInvalidToken when it is not
// valid, was revoked, or its user is gone.
func (g *Gate) Admit(ctx context.Context, token string) (Principal, error) {
	now := g.cfg.Now()
	g.mu.Lock()
	claims, verified := g.verified[token]
	c, ok := g.cache[claims.UserID]
	g.mu.Unlock()
	if !verified || !now.Before(claims.Expires) {
		var err error
		if claims, err = g.cfg.Auth.Verify(token); err != nil {
			return Principal{}, err
		}
		g.mu.Lock()
		if len(g.verified) >= g.cfg.Size {
			clear(g.verified)
		}
		g.verified[token] = claims
		c, ok = g.cache[claims.UserID]
		g.mu.Unlock()
	}
	if !ok || !now.Before(c.expires) {
		access, err := g.cfg.Lookup(ctx, claims.UserID)
		switch {
		case errors.Is(err, user.ErrNotFound):
			c = cached{gone: true}
		case err != nil:
			return Principal{}, fmt.Errorf("read the token's user: %w", err)
		default:
			c = cached{access: access}
		}
		c.expires = now.Add(g.cfg.TTL)
		g.mu.Lock()
		if len(g.cache) >= g.cfg.Size {
			clear(g.cache)
		}
		g.cache[claims.UserID] = c
		g.mu.Unlock()
	}
	if c.gone || claims.TokenVersion < c.access.TokenVersion || !c.access.Role.Valid() {
		return Principal{}, ErrInvalidToken
	}
	return Principal{UserID: claims.UserID, Role: c.access.Role}, nil
}
