package httpapi_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/pb33f/libopenapi-validator/config"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"github.com/pb33f/libopenapi/orderedmap"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	apidoc "github.com/shopdev/shop/api"
	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/handlers/httpapi"
	"github.com/shopdev/shop/internal/testenv"
)

// TestOpenAPIDocumentIsValid: api/openapi.yaml is an OpenAPI 3.1 document
// that libopenapi builds a model of without errors, valid against the
// specification's schema, with an operationId, a summary and tags on every
// operation.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	t.Parallel()
	c := contract(t) // builds the model; fails on any error
	if v := c.model.Version; v != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", v)
	}
	if ok, errs := c.validator.ValidateDocument(); !ok {
		t.Errorf("api/openapi.yaml is not a valid OpenAPI document: %s", describe(errs))
	}
	ids := map[string]string{}
	for path, item := range c.model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			at := strings.ToUpper(method) + " " + path
			switch {
			case op.OperationId == "":
				t.Errorf("%s has no operationId", at)
			case ids[op.OperationId] != "":
				t.Errorf("%s and %s have the same operationId %s", ids[op.OperationId], at, op.OperationId)
			}
			ids[op.OperationId] = at
			if op.Summary == "" || len(op.Tags) == 0 {
				t.Errorf("%s has no summary or no tags", at)
			}
			if op.RequestBody != nil {
				checkExamples(t, at+" request", op.RequestBody.Content)
			}
			for code, r := range op.Responses.Codes.FromOldest() {
				checkExamples(t, at+" "+code, r.Content)
			}
		}
	}
}

// checkExamples fails t for each example of content that its media type's
// schema rejects: the examples show what the API sends and takes.
func checkExamples(t *testing.T, at string, content *orderedmap.Map[string, *v3.MediaType]) {
	t.Helper()
	schemas := schema_validation.NewSchemaValidator(config.WithFormatAssertions())
	for mediaType, m := range content.FromOldest() {
		for name, ex := range m.Examples.FromOldest() {
			var value any
			if err := ex.Value.Decode(&value); err != nil {
				t.Errorf("%s %s example %s: %v", at, mediaType, name, err)
				continue
			}
			raw, err := json.Marshal(value)
			if err != nil {
				t.Errorf("%s %s example %s: %v", at, mediaType, name, err)
				continue
			}
			if ok, errs := schemas.ValidateSchemaBytes(m.Schema.Schema(), raw); !ok {
				t.Errorf("%s %s example %s does not match its schema: %s", at, mediaType, name, describe(errs))
			}
		}
	}
}

// TestRoutesAreDocumented: the routes httpapi.New registers and the
// operations of api/openapi.yaml are the same set.
func TestRoutesAreDocumented(t *testing.T) {
	t.Parallel()
	a, err := auth.New(auth.Config{Secret: testSecret, PasswordCost: bcrypt.MinCost})
	testenv.Must(t, err, "auth")
	h, err := httpapi.New(newConfig(t, testenv.Pool(t), a))
	testenv.Must(t, err, "api")
	e, ok := h.(*echo.Echo)
	if !ok {
		t.Fatalf("httpapi.New without tracing returned a %T, want an *echo.Echo", h)
	}
	served := map[string]bool{}
	for _, r := range e.Routes() {
		served[r.Method+" "+openAPIPath(r.Path)] = true
	}
	documented := map[string]bool{}
	for path, item := range contract(t).model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().KeysFromOldest() {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	if missing := difference(served, documented); len(missing) > 0 {
		t.Errorf("routes.go serves what api/openapi.yaml does not document: %s", strings.Join(missing, ", "))
	}
	if extra := difference(documented, served); len(extra) > 0 {
		t.Errorf("api/openapi.yaml documents what routes.go does not serve: %s", strings.Join(extra, ", "))
	}
}

// openAPIPath writes an Echo route's path as OpenAPI does: /v1/orders/:id
// is /v1/orders/{id}.
func openAPIPath(echoPath string) string {
	parts := strings.Split(echoPath, "/")
	for i, p := range parts {
		if name, ok := strings.CutPrefix(p, ":"); ok {
			parts[i] = "{" + name + "}"
		}
	}
	return strings.Join(parts, "/")
}

// difference returns the keys of a that are not in b, sorted.
func difference(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// TestOpenAPIIsServed: GET /openapi.yaml answers the document as committed,
// GET /openapi.json the same document as JSON; both are public and may be
// cached.
func TestOpenAPIIsServed(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	source := apidoc.OpenAPIYAML()

	var fromYAML any
	testenv.Must(t, yaml.Unmarshal(source, &fromYAML), "parse api/openapi.yaml")
	// As JSON sees it: yaml.v3's ints and JSON's float64s compare equal.
	raw, err := json.Marshal(fromYAML)
	testenv.Must(t, err, "encode the YAML document as JSON")
	var want any
	testenv.Must(t, json.Unmarshal(raw, &want), "decode the YAML document")

	tests := []struct {
		path, contentType string
		same              func(t *testing.T, body []byte)
	}{
		{"/openapi.yaml", "application/yaml", func(t *testing.T, body []byte) {
			if string(body) != string(source) {
				t.Errorf("GET /openapi.yaml answered %d bytes that are not api/openapi.yaml (%d bytes)", len(body), len(source))
			}
		}},
		{"/openapi.json", "application/json", func(t *testing.T, body []byte) {
			var got any
			testenv.Must(t, json.Unmarshal(body, &got), "decode /openapi.json")
			if !reflect.DeepEqual(got, want) {
				t.Error("GET /openapi.json is not api/openapi.yaml as JSON")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := a.do(t, "GET", tt.path, "", nil, nil).expect(t, http.StatusOK)
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("Content-Type %q, want %s", ct, tt.contentType)
			}
			if cc := r.header.Get("Cache-Control"); !strings.HasPrefix(cc, "public") {
				t.Errorf("Cache-Control %q, want public", cc)
			}
			tt.same(t, r.raw)
		})
	}
}
