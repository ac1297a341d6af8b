package httpapi

import (
	"context"
	"errors"
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

func newUserResponse(u *user.User) userResponse {
	return userResponse{ID: u.ID().String(), Email: u.Email(), Name: u.Name(), Role: u.Role(), Version: u.Version(), CreatedAt: u.CreatedAt()}
}

// registerUser: POST /v1/users. Anyone may register, as a customer.
func (s *Server) registerUser(c echo.Context) error {
	var req registerUserRequest
	body, err := bind(c, &req)
	if err != nil {
		return err
	}
	if err := user.ValidateRegistration(req.Email, req.Name, req.Password); err != nil {
		return err
	}
	hash, err := s.cfg.Auth.HashPassword(req.Password)
	if err != nil {
		return err
	}
	return s.command(c, body, func(ctx context.Context, tx *store.Tx) (reply, error) {
		u, err := app.Register(ctx, tx, app.RegisterUser{Email: req.Email, Name: req.Name, PasswordHash: hash, Role: user.RoleCustomer}, s.cfg.Now())
		if err != nil {
			return reply{}, err
		}
		// No Location: no route reads a user back.
		return reply{status: http.StatusCreated, body: newUserResponse(u)}, nil
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
	var u *user.User
	err := s.uow.Do(c.Request().Context(), func(ctx context.Context, tx *store.Tx) (err error) {
		u, err = tx.Users.ByEmail(ctx, req.Email)
		return err
	})
	if err != nil && !errors.Is(err, user.ErrNotFound) {
		return err
	}
	if !s.cfg.Auth.CheckPassword(u, req.Password) { // u is nil for an unknown email
		return user.ErrInvalidCredentials
	}
	token, err := s.cfg.Auth.Issue(u, s.cfg.Now())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, token)
}
