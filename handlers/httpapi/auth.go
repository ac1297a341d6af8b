package httpapi

import (
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/user"
)

const actorKey = "shop.actor"

var errForbidden = fmt.Errorf("%w: your role may not do this", domain.ErrForbidden)

// authenticate requires a valid bearer token whose user still exists and
// has not revoked it, and remembers who sent it, with the role the user
// has now. What it answers is for its reader only: no cache may keep it.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		noStore(c)
		header := c.Request().Header.Get(echo.HeaderAuthorization)
		if header == "" {
			return auth.ErrMissingToken
		}
		scheme, token, ok := strings.Cut(header, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			return auth.ErrInvalidToken
		}
		who, err := s.gate.Admit(c.Request().Context(), strings.TrimSpace(token))
		if err != nil {
			return err
		}
		c.Set(actorKey, app.Actor{UserID: who.UserID, Role: who.Role})
		return next(c)
	}
}

// requireRole lets only actors of role through; it runs after authenticate.
func requireRole(role user.Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if actorOf(c).Role != role {
				return errForbidden
			}
			return next(c)
		}
	}
}

// actor is who sent a request: the zero value when anonymous.
type actor struct{ app.Actor }

// actorOf returns the authenticated actor.
func actorOf(c echo.Context) actor {
	a, _ := c.Get(actorKey).(app.Actor)
	return actor{a}
}

// mayRead reports whether the actor may see what owner owns: its own, or
// anything for an admin.
func (a actor) mayRead(owner uuid.UUID) bool {
	return a.UserID == owner || a.Role == user.RoleAdmin
}
