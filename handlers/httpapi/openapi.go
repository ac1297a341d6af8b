package httpapi

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/shopdev/shop/api"
)

// openAPIMaxAge is how long a cache may keep the document: it changes
// only with a deployment.
const openAPIMaxAge = "public, max-age=300"

// openAPIDocs is the API's contract, api/openapi.yaml, as the API serves
// it: as committed, and converted to JSON once, when the server is built.
type openAPIDocs struct {
	yaml, json []byte
}

func newOpenAPIDocs() (*openAPIDocs, error) {
	j, err := api.OpenAPIJSON()
	if err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	return &openAPIDocs{yaml: api.OpenAPIYAML(), json: j}, nil
}

// serveYAML: GET /openapi.yaml (anyone).
func (d *openAPIDocs) serveYAML(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderCacheControl, openAPIMaxAge)
	return c.Blob(http.StatusOK, "application/yaml", d.yaml)
}

// serveJSON: GET /openapi.json (anyone).
func (d *openAPIDocs) serveJSON(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderCacheControl, openAPIMaxAge)
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, d.json)
}
