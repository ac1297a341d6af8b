package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/domain/user"
)

func key(id, fill string) auth.Key { return auth.Key{ID: id, Secret: []byte(strings.Repeat(fill, 32))} }

func newAuth(t *testing.T, cfg auth.Config) *auth.Auth {
	t.Helper()
	cfg.PasswordCost = bcrypt.MinCost
	a, err := auth.New(cfg)
	if err != nil {
		t.Fatalf("auth.New: %v", err)
	}
	return a
}

func customer(tokenVersion int64) *user.User {
	return user.Restore(user.State{ID: uuid.New(), Email: "c@example.com", Role: user.RoleCustomer, TokenVersion: tokenVersion})
}

func TestConfigRefusesBadKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  auth.Config
	}{
		{"no key", auth.Config{}},
		{"a short secret", auth.Config{Secret: []byte("short")}},
		{"a secret and keys", auth.Config{Secret: []byte(strings.Repeat("s", 32)), Keys: []auth.Key{key("a", "a")}}},
		{"several keys, one without an id", auth.Config{Keys: []auth.Key{key("a", "a"), key("", "b")}}},
		{"a key twice", auth.Config{Keys: []auth.Key{key("a", "a"), key("a", "b")}}},
		{"a short key", auth.Config{Keys: []auth.Key{key("a", "a"), {ID: "b", Secret: []byte("short")}}}},
	} {
		if _, err := auth.New(tc.cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// TestTokensNameTheirKeyAndVersion: the first key signs (its kid in the
// header); every listed key verifies; a token carries its own id and the
// user's token version.
func TestTokensNameTheirKeyAndVersion(t *testing.T) {
	t.Parallel()
	now := time.Now()
	rotated := newAuth(t, auth.Config{Keys: []auth.Key{key("new", "n"), key("old", "o")}})
	old := newAuth(t, auth.Config{Keys: []auth.Key{key("old", "o")}})
	retired := newAuth(t, auth.Config{Keys: []auth.Key{key("gone", "g")}})
	u := customer(3)

	first, err := rotated.Issue(u, now)
	if err != nil {
		t.Fatal(err)
	}
	second, _ := rotated.Issue(u, now)
	c, err := rotated.Verify(first.Token)
	if err != nil || c.UserID != u.ID() || c.TokenVersion != 3 || c.ID == "" {
		t.Fatalf("Verify = %+v, %v; want the user, version 3 and an id", c, err)
	}
	if c2, _ := rotated.Verify(second.Token); c2.ID == c.ID {
		t.Error("two tokens share an id")
	}
	byOld, _ := old.Issue(u, now)
	if _, err := rotated.Verify(byOld.Token); err != nil {
		t.Errorf("a token of the older, still listed key: %v", err)
	}
	byRetired, _ := retired.Issue(u, now)
	if _, err := rotated.Verify(byRetired.Token); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("a token of a key no longer listed: %v, want ErrInvalidToken", err)
	}
	if _, err := old.Verify(first.Token); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("a token of a key this Auth does not list: %v, want ErrInvalidToken", err)
	}
}

// TestGateReadsTheUserAsItIsNow: the role comes from the lookup, not the
// token; a token below the user's version, or of a user gone, is refused;
// the answer is cached for TTL, then read again.
func TestGateReadsTheUserAsItIsNow(t *testing.T) {
	t.Parallel()
	a := newAuth(t, auth.Config{Secret: []byte(strings.Repeat("s", 32))})
	u := customer(2)
	tok, _ := a.Issue(u, time.Now())
	access := auth.Access{Role: user.RoleAdmin, TokenVersion: 2}
	var gone bool
	lookups := 0
	now := time.Now()
	g, err := auth.NewGate(auth.GateConfig{Auth: a, TTL: 10 * time.Second, Now: func() time.Time { return now },
		Lookup: func(_ context.Context, id uuid.UUID) (auth.Access, error) {
			lookups++
			if gone || id != u.ID() {
				return auth.Access{}, user.ErrNotFound
			}
			return access, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	admit := func() (auth.Principal, error) { return g.Admit(context.Background(), tok.Token) }

	if p, err := admit(); err != nil || p.Role != user.RoleAdmin || p.UserID != u.ID() {
		t.Fatalf("Admit = %+v, %v; want the user with the role it has now (admin)", p, err)
	}
	access = auth.Access{Role: user.RoleCustomer, TokenVersion: 3} // demoted: the version went up
	if _, err := admit(); err != nil || lookups != 1 {
		t.Errorf("within the TTL: %v after %d lookups; want the cached answer", err, lookups)
	}
	now = now.Add(11 * time.Second)
	if _, err := admit(); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("after the TTL, a token below the user's version: %v, want ErrInvalidToken", err)
	}
	gone = true
	now = now.Add(11 * time.Second)
	if _, err := admit(); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("a token of a user gone: %v, want ErrInvalidToken", err)
	}
	if _, err := g.Admit(context.Background(), "not.a.token"); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("garbage: %v, want ErrInvalidToken", err)
	}
}

// TestHashesAreCounted: every hash and comparison counts, an unknown user's
// too (it costs the same).
func TestHashesAreCounted(t *testing.T) {
	t.Parallel()
	a := newAuth(t, auth.Config{Secret: []byte(strings.Repeat("s", 32)), MaxHashing: 1})
	h, err := a.HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	u := user.Restore(user.State{ID: uuid.New(), PasswordHash: h, Role: user.RoleCustomer, TokenVersion: 1})
	if !a.CheckPassword(u, "correct horse") || a.CheckPassword(u, "wrong horse") || a.CheckPassword(nil, "correct horse") {
		t.Error("CheckPassword answers wrong")
	}
	if got := a.Hashes(); got != 4 {
		t.Errorf("Hashes() = %d, want 4", got)
	}
}

// TestGateRemembersAVerifiedTokenUntilItExpires: a token checked once is
// not checked again while it is valid, but an expired one, or another
// token of the same user with a forged signature, is never admitted.
func TestGateRemembersAVerifiedTokenUntilItExpires(t *testing.T) {
	t.Parallel()
	now := time.Now()
	clock := func() time.Time { return now }
	a := newAuth(t, auth.Config{Secret: []byte(strings.Repeat("s", 32)), TokenTTL: time.Hour, Now: clock})
	u := customer(1)
	tok, err := a.Issue(u, now)
	if err != nil {
		t.Fatal(err)
	}
	g, err := auth.NewGate(auth.GateConfig{Auth: a, TTL: 10 * time.Second, Now: clock,
		Lookup: func(context.Context, uuid.UUID) (auth.Access, error) {
			return auth.Access{Role: user.RoleCustomer, TokenVersion: 1}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	forged := tok.Token[:len(tok.Token)-2] + "AA"
	for _, step := range []struct {
		name  string
		after time.Duration // from the token's issue
		token string
		admit bool
	}{
		{"fresh", 0, tok.Token, true},
		{"again, remembered", time.Minute, tok.Token, true},
		{"its signature forged", 2 * time.Minute, forged, false},
		{"near its expiry", time.Hour - time.Second, tok.Token, true},
		{"past its expiry and the leeway", time.Hour + 6*time.Second, tok.Token, false},
	} {
		now = tok.ExpiresAt.Add(-time.Hour).Add(step.after)
		_, err := g.Admit(context.Background(), step.token)
		switch {
		case step.admit && err != nil:
			t.Errorf("%s: %v, want it admitted", step.name, err)
		case !step.admit && !errors.Is(err, auth.ErrInvalidToken):
			t.Errorf("%s: %v, want ErrInvalidToken", step.name, err)
		}
	}
}
