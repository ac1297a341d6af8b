// Package auth owns credentials: bcrypt password hashes and the signed JWT
// access tokens (HS256) that carry a user's id and role.
package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/user"
)

// ErrInvalidToken means a token is malformed, forged or expired.
var ErrInvalidToken = fmt.Errorf("%w: invalid or expired token", domain.ErrUnauthorized)

// ErrMissingToken means a request that needs a token came without one.
var ErrMissingToken = fmt.Errorf("%w: this needs a bearer token (Authorization: Bearer <token from POST /v1/tokens>)", domain.ErrUnauthorized)

// Issuer name written into and required of every token.
const Issuer = "shop"

// Config configures password hashing and tokens.
type Config struct {
	// Secret signs tokens (HS256). Required; at least 32 bytes.
	Secret []byte
	// TokenTTL is how long a token is valid. Default 24h.
	TokenTTL time.Duration
	// PasswordCost is the bcrypt cost. Default bcrypt.DefaultCost (10);
	// tests use bcrypt.MinCost.
	PasswordCost int
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	if len(c.Secret) < 32 {
		return errors.New("jwt secret must be at least 32 bytes")
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
	return nil
}

// Auth hashes passwords and issues and verifies tokens.
type Auth struct {
	cfg       Config
	dummyHash []byte // compared against when the user does not exist
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
	return &Auth{
		cfg:       cfg,
		dummyHash: dummy,
		parser: jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithIssuer(Issuer), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second)),
	}, nil
}

// HashPassword returns the bcrypt hash of password.
func (a *Auth) HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), a.cfg.PasswordCost)
	if err != nil {
		return "", domain.Invalid("password", "cannot be hashed: "+err.Error())
	}
	return string(h), nil
}

// CheckPassword reports whether password matches u's hash. With u nil it
// still spends the time of one comparison, so that a caller cannot tell an
// unknown email from a wrong password by timing.
func (a *Auth) CheckPassword(u *user.User, password string) bool {
	if u == nil {
		_ = bcrypt.CompareHashAndPassword(a.dummyHash, []byte(password))
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(u.PasswordHash()), []byte(password)) == nil
}

// RequestDigest returns a keyed digest (HMAC-SHA256 under a key derived from
// the secret) of a request's parts, for Idempotency-Key comparison. A plain
// hash would keep, for every registration, a fast hash of the body and so of
// the password in it, open to offline guessing; this one is worthless
// without the secret.
func (a *Auth) RequestDigest(parts ...[]byte) []byte {
	key := hmac.New(sha256.New, a.cfg.Secret)
	key.Write([]byte("shop idempotency request digest"))
	h := hmac.New(sha256.New, key.Sum(nil))
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// Claims is who a token speaks for.
type Claims struct {
	UserID uuid.UUID
	Role   user.Role
}

type jwtClaims struct {
	Role user.Role `json:"role"`
	jwt.RegisteredClaims
}

// Token is a signed access token.
type Token struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Issue signs a token for u valid from now for the configured TTL.
func (a *Auth) Issue(u *user.User, now time.Time) (Token, error) {
	exp := now.Add(a.cfg.TokenTTL).UTC().Truncate(time.Second)
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwtClaims{
		Role: u.Role(),
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Subject:   u.ID().String(),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
	})
	signed, err := t.SignedString(a.cfg.Secret)
	if err != nil {
		return Token{}, fmt.Errorf("sign token: %w", err)
	}
	return Token{Token: signed, ExpiresAt: exp}, nil
}

// Verify checks a token's signature, issuer and expiry and returns its claims.
func (a *Auth) Verify(token string) (Claims, error) {
	var c jwtClaims
	_, err := a.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.cfg.Secret, nil })
	if err != nil {
		return Claims{}, ErrInvalidToken
	}
	id, err := uuid.Parse(c.Subject)
	if err != nil || !c.Role.Valid() {
		return Claims{}, ErrInvalidToken
	}
	return Claims{UserID: id, Role: c.Role}, nil
}
