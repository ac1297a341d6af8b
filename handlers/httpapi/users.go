package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/store"
)

type registerUserRequest struct {
	Email    string `json:"email"`
	Name     string `json:"name"`
	Password string `json:"password"`
}

type userResponse struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Role      user.Role `json:"role"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
}

// registerUser: POST /v1/users. Anyone may register, as a customer.
func (s *Server) registerUser(c echo.Context) error {
	var req registerUserRequest
	body, err := bind(c, &req)
	if err != nil {
		return err
	}
	reg, err := app.NewRegistration(s.cfg.Auth, req.Email, req.Name, req.Password, user.RoleCustomer)
	if err != nil {
		return err
	}
	return s.command(c, body, store.ReadAhead{}, func(ctx context.Context, tx *store.Tx) (reply, error) {
		u, err := app.Register(ctx, tx, reg, s.cfg.Now())
		if err != nil {
			return reply{}, err
		}
		// No Location: no route reads a user back.
		return reply{status: http.StatusCreated, body: userResponse{ID: u.ID().String(), Email: u.Email(), Name: u.Name(),
			Role: u.Role(), Version: u.Version(), CreatedAt: u.CreatedAt()}}, nil
	})
}

type issueTokenRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// issueToken: POST /v1/tokens. It changes nothing, so an Idempotency-Key is
// accepted and ignored: storing the reply would store a credential.
func (s *Server) issueToken(c echo.Context) error {
	var req issueTokenRequest
	if _, err := bind(c, &req); err != nil {
		return err
	}
	noStore(c)
	token, err := app.IssueToken(c.Request().Context(), s.cfg.UnitOfWork, s.cfg.Auth, s.cfg.Logins, req.Email, req.Password, s.cfg.Now())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, token)
}
