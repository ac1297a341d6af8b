package httpapi

import (
	"github.com/labstack/echo/v4"

	"github.com/shopdev/shop/domain/user"
)

// routes lists every route of the API.
func (s *Server) routes(e *echo.Echo) {
	signedIn := s.authenticate
	admin := requireRole(user.RoleAdmin)
	customer := requireRole(user.RoleCustomer)

	ops := echo.WrapHandler(s.cfg.Ops)
	e.GET("/healthz", ops)
	e.GET("/readyz", ops)
	e.GET("/openapi.yaml", s.docs.serveYAML)
	e.GET("/openapi.json", s.docs.serveJSON)

	v1 := e.Group("/v1")
	v1.POST("/users", s.registerUser)
	v1.POST("/tokens", s.issueToken)
	v1.GET("/products", s.listProducts)
	v1.GET("/products/:id", s.getProduct)
	v1.POST("/products", s.createProduct, signedIn, admin)
	v1.PATCH("/products/:id", s.updateProduct, signedIn, admin)
	v1.POST("/products/:id/restock", s.restockProduct, signedIn, admin)
	v1.GET("/orders", s.listOrders, signedIn)
	v1.GET("/orders/:id", s.getOrder, signedIn)
	v1.POST("/orders", s.placeOrder, signedIn, customer)
	v1.POST("/orders/:id/cancel", s.cancelOrder, signedIn)
	v1.GET("/admin/audit", s.listAudit, signedIn, admin)
}
