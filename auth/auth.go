// Package auth owns credentials: bcrypt password hashes, with a cap on how
// many are computed at once, and the signed JWT access tokens (HS256) that
// name a user and the version of its tokens, under one of several keys.
// Gate checks a token against its user as the user is now.
package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/user"
)

// ErrInvalidToken means a token is malformed, forged, expired, signed with
// a retired key, revoked, or its user is gone.
var ErrInvalidToken = fmt.Errorf("%w: invalid or expired token", domain.ErrUnauthorized)

// ErrMissingToken means a request that needs a token came without one.
var ErrMissingToken = fmt.Errorf("%w: this needs a bearer token (Authorization: Bearer <token from POST /v1/tokens>)", domain.ErrUnauthorized)

// Issuer name written into and required of every token.
const Issuer = "shop"

// Key is one signing key. A token names its key's ID in its kid header.
type Key struct {
	ID     string
	Secret []byte
}

// Config configures password hashing and tokens.
type Config struct {
	// Secret signs and verifies tokens (HS256), at least 32 bytes: the
	// one-key form. Either Secret or Keys is required.
	Secret []byte
	// Keys are several keys, each with an ID: the first signs, every one
	// verifies, so that a key can be retired without ending the tokens of
	// its successor. Either Secret or Keys is required.
	Keys []Key
	// TokenTTL is how long a token is valid. Default 24h.
	TokenTTL time.Duration
	// PasswordCost is the bcrypt cost. Default bcrypt.DefaultCost (10);
	// tests use bcrypt.MinCost.
	PasswordCost int
	// MaxHashing caps the bcrypt hashes computed at once; more wait their
	// turn, so that logins cannot starve the rest of the process of CPU.
	// Default the number of CPUs.
	MaxHashing int
	// Now is the clock tokens are verified against. Default time.Now.
	Now func() time.Time
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	switch {
	case len(c.Secret) > 0 && len(c.Keys) > 0:
		return errors.New("jwt: give one secret or several keys, not both")
	case len(c.Secret) > 0:
		c.Keys = []Key{{Secret: c.Secret}}
	case len(c.Keys) == 0:
		return errors.New("jwt secret must be at least 32 bytes")
	}
	seen := map[string]bool{}
	for _, k := range c.Keys {
		if len(k.Secret) < 32 {
			return errors.New("jwt secret must be at least 32 bytes")
		}
		if len(c.Keys) > 1 && k.ID == "" {
			return errors.New("jwt: every one of several keys needs an id")
		}
		if seen[k.ID] {
			return fmt.Errorf("jwt: key id %q is given twice", k.ID)
		}
		seen[k.ID] = true
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = 24 * time.Hour
	}
	if c.TokenTTL < 0 {
		return errors.New("token ttl must be positive")
	}
	if c.PasswordCost == 0 {
		c.PasswordCost = bcrypt.DefaultCost
	}
	if c.PasswordCost < bcrypt.MinCost || c.PasswordCost > bcrypt.MaxCost {
		return fmt.Errorf("password cost must be between %d and %d", bcrypt.MinCost, bcrypt.MaxCost)
	}
	if c.MaxHashing == 0 {
		c.MaxHashing = runtime.NumCPU()
	}
	if c.MaxHashing < 0 {
		return errors.New("max hashing must be positive")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Auth hashes passwords and issues and verifies tokens.
type Auth struct {
	cfg       Config
	keys      map[string][]byte
	hashing   chan struct{} // a slot per hash computed at once
	hashes    atomic.Uint64 // computed so far
	dummyHash []byte        // compared against when the user does not exist
	parser    *jwt.Parser
}

// New returns an Auth for cfg.
func New(cfg Config) (*Auth, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a real password"), cfg.PasswordCost)
	if err != nil {
		return nil, fmt.Errorf("hash dummy password: %w", err)
	}
	keys := map[string][]byte{}
	for _, k := range cfg.Keys {
		keys[k.ID] = k.Secret
	}
	return &Auth{
		cfg:       cfg,
		keys:      keys,
		hashing:   make(chan struct{}, cfg.MaxHashing),
		dummyHash: dummy,
		parser: jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithIssuer(Issuer), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second),
			jwt.WithTimeFunc(cfg.Now)),
	}, nil
}

// hash runs fn, a bcrypt computation, when a slot is free.
func (a *Auth) hash(fn func()) {
	a.hashing <- struct{}{}
	defer func() { <-a.hashing }()
	a.hashes.Add(1)
	fn()
}

// Hashes is how many bcrypt hashes and comparisons a has computed: what
// logins and registrations cost in CPU.
func (a *Auth) Hashes() uint64 { return a.hashes.Load() }

// HashPassword returns the bcrypt hash of password.
func (a *Auth) HashPassword(password string) (string, error) {
	var h []byte
	var err error
	a.hash(func() { h, err = bcrypt.GenerateFromPassword([]byte(password), a.cfg.PasswordCost) })
	if err != nil {
		return "", domain.Invalid("password", "cannot be hashed: "+err.Error())
	}
	return string(h), nil
}

// CheckPassword reports whether password matches u's hash. With u nil it
// still spends the time of one comparison, so that a caller cannot tell an
// unknown email from a wrong password by timing.
func (a *Auth) CheckPassword(u *user.User, password string) bool {
	hash := a.dummyHash
	if u != nil {
		hash = []byte(u.PasswordHash())
	}
	var err error
	a.hash(func() { err = bcrypt.CompareHashAndPassword(hash, []byte(password)) })
	return u != nil && err == nil
}

// RequestDigest returns a keyed digest (HMAC-SHA256 under a key derived from
// the oldest key) of a request's parts, for Idempotency-Key comparison. A
// plain hash would keep, for every registration, a fast hash of the body and
// so of the password in it, open to offline guessing; this one is worthless
// without the secret. The oldest key changes least often: a new signing key
// put first leaves the digests of stored replies as they were.
func (a *Auth) RequestDigest(parts ...[]byte) []byte {
	key := hmac.New(sha256.New, a.cfg.Keys[len(a.cfg.Keys)-1].Secret)
	key.Write([]byte("shop idempotency request digest"))
	h := hmac.New(sha256.New, key.Sum(nil))
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// Claims is what a verified token says.
type Claims struct {
	ID           string // jti: this token
	UserID       uuid.UUID
	TokenVersion int64     // the user's token version when it was issued
	Expires      time.Time // from then on the token is not valid
}

type jwtClaims struct {
	// Role is for the client to read; what a request may do is decided
	// by the user's role as it is now (Gate).
	Role         user.Role `json:"role"`
	TokenVersion int64     `json:"tv"`
	jwt.RegisteredClaims
}

// Token is a signed access token.
type Token struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Issue signs a token for u valid from now for the configured TTL, with
// the first key.
func (a *Auth) Issue(u *user.User, now time.Time) (Token, error) {
	exp := now.Add(a.cfg.TokenTTL).UTC().Truncate(time.Second)
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwtClaims{
		Role:         u.Role(),
		TokenVersion: u.TokenVersion(),
		RegisteredClaims: jwt.RegisteredClaims{
			ID:        uuid.NewString(),
			Issuer:    Issuer,
			Subject:   u.ID().String(),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
	})
	key := a.cfg.Keys[0]
	if key.ID != "" {
		t.Header["kid"] = key.ID
	}
	signed, err := t.SignedString(key.Secret)
	if err != nil {
		return Token{}, fmt.Errorf("sign token: %w", err)
	}
	return Token{Token: signed, ExpiresAt: exp}, nil
}

// Verify checks a token's signature (by the key its kid names), issuer and
// expiry and returns its claims. It does not know whether the token was
// revoked since: Gate does.
func (a *Auth) Verify(token string) (Claims, error) {
	var c jwtClaims
	_, err := a.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		secret, ok := a.keys[kid]
		if !ok {
			return nil, errors.New("unknown key")
		}
		return secret, nil
	})
	if err != nil {
		return Claims{}, ErrInvalidToken
	}
	id, err := uuid.Parse(c.Subject)
	if err != nil || c.TokenVersion < 1 {
		return Claims{}, ErrInvalidToken
	}
	return Claims{ID: c.ID, UserID: id, TokenVersion: c.TokenVersion, Expires: c.ExpiresAt.Time}, nil
}
