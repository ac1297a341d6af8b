package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	liberrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/responses"
	"github.com/pb33f/libopenapi-validator/router"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"github.com/pb33f/libopenapi/orderedmap"
	"go.yaml.in/yaml/v3"

	apidoc "github.com/shopdev/shop/api"
)

// The contract check. Every test server (newAPIWith, replica) answers
// through it, so every HTTP test also checks that the API does what
// api/openapi.yaml says, and the document says what the API does:
//
//   - A request whose method and path no operation of the document serves
//     must be answered 404 or 405.
//   - A request that does not match the document (parameters, security,
//     body) must have been rejected: answered 4xx. A request answered 2xx
//     therefore matches it. (A request that matches but breaks a rule the
//     schemas cannot say, a taken email, is of course answered 4xx too.)
//   - Every response's status is documented for its operation, its
//     Content-Type is documented for that status, and its body matches the
//     schema of that media type.
//   - Every response header is documented for that response, or is one of
//     x-headers-on-every-response, or is a transport header; the documented
//     ones (and those on every response) match their definitions, required
//     ones are present.
//
// Two exchanges are not checked: a 499 (the client went away; nobody reads
// the answer), and routes a test mounts itself under /test/ (they are not
// the API; TestRoutesAreDocumented keeps the API's routes and the
// document's operations one set).

// transportHeaders are set by net/http or describe the message, not the
// API: no response needs to document them.
var transportHeaders = []string{"Content-Length", "Content-Type", "Date", "Transfer-Encoding", "Connection", "Vary", "Allow"}

// contractChecker holds the document, parsed and compiled once per test
// binary (contractOnce), for every test server to share; the validator is
// safe for concurrent use.
type contractChecker struct {
	model     *v3.Document
	validator validator.Validator
	routes    router.Router
	// everywhere are the headers of x-headers-on-every-response, as
	// components/headers defines them.
	everywhere *orderedmap.Map[string, *v3.Header]
}

var contractOnce = sync.OnceValues(newContractChecker)

func newContractChecker() (*contractChecker, error) {
	source := apidoc.OpenAPIYAML()
	doc, err := libopenapi.NewDocument(source)
	if err != nil {
		return nil, fmt.Errorf("parse api/openapi.yaml: %w", err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		return nil, fmt.Errorf("build the model of api/openapi.yaml: %w", err)
	}
	// Formats are asserted: a uuid, date-time or email the document
	// promises must be one.
	v := validator.NewValidatorFromV3Model(&m.Model, config.WithFormatAssertions())
	v.SetDocument(doc)

	var root struct {
		Everywhere []string `yaml:"x-headers-on-every-response"`
	}
	if err := yaml.Unmarshal(source, &root); err != nil {
		return nil, fmt.Errorf("read x-headers-on-every-response: %w", err)
	}
	if len(root.Everywhere) == 0 {
		return nil, errors.New("api/openapi.yaml has no x-headers-on-every-response")
	}
	everywhere := orderedmap.New[string, *v3.Header]()
	for _, name := range root.Everywhere {
		var h *v3.Header
		if m.Model.Components != nil {
			h, _ = m.Model.Components.Headers.Get(name)
		}
		if h == nil {
			return nil, fmt.Errorf("x-headers-on-every-response names %s, which components/headers does not define", name)
		}
		everywhere.Set(http.CanonicalHeaderKey(name), h)
	}
	return &contractChecker{model: &m.Model, validator: v,
		routes: router.NewRouter(&m.Model, router.WithPathOnlyMatching()), everywhere: everywhere}, nil
}

// contract returns the contract checker, failing t if the document does
// not build.
func contract(t testing.TB) *contractChecker {
	t.Helper()
	c, err := contractOnce()
	if err != nil {
		t.Fatalf("contract: %v", err)
	}
	return c
}

// checked returns the API handler h answering through the contract check,
// which reports every mismatch as an error of t. The check is installed
// inside an *echo.Echo (what httpapi.New returns without tracing), so
// that tests can still reach the Echo to add routes of their own; any
// other handler (otelhttp's, with tracing) is wrapped.
func checked(t *testing.T, h http.Handler) http.Handler {
	t.Helper()
	c := contract(t)
	mw := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ex, ok := c.serve(next, w, r)
			if !ok {
				return
			}
			for _, p := range c.check(ex) {
				t.Errorf("contract: %s %s answered %d: %s", ex.req.Method, ex.req.URL.RequestURI(), ex.status, p)
			}
		})
	}
	if e, ok := h.(*echo.Echo); ok {
		// Errors never reach Echo's own handler here: the API's first
		// middleware answers them, inside this one.
		e.Pre(echo.WrapMiddleware(mw))
		return e
	}
	return mw(h)
}

// exchange is one request and the response it got, as the client sent
// and received them.
type exchange struct {
	req     *http.Request // its body is reqBody
	reqBody []byte
	status  int
	header  http.Header
	body    []byte
}

// serve serves r by next through a recorder that copies everything
// through to w unchanged; ok is false when the request body could not be
// read in full (the client went away), which leaves nothing to check.
func (c *contractChecker) serve(next http.Handler, w http.ResponseWriter, r *http.Request) (ex exchange, ok bool) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{err}))
		next.ServeHTTP(w, r)
		return exchange{}, false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	sent := r.Clone(context.WithoutCancel(r.Context())) // before the server rewrites any header
	rec := &recorder{ResponseWriter: w}
	next.ServeHTTP(rec, r)
	if rec.header == nil { // nothing written: net/http answers 200 with no body
		rec.status, rec.header = http.StatusOK, w.Header().Clone()
	}
	return exchange{req: sent, reqBody: body, status: rec.status, header: rec.header, body: rec.body.Bytes()}, true
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// recorder keeps a copy of the status, the headers as they were sent and
// the body, and writes everything through.
type recorder struct {
	http.ResponseWriter
	status int
	header http.Header
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(status int) {
	if r.header == nil && status >= 200 {
		r.status, r.header = status, r.ResponseWriter.Header().Clone()
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.header == nil {
		r.WriteHeader(http.StatusOK)
	}
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if r.header == nil {
		r.WriteHeader(http.StatusOK)
	}
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// check returns how the exchange breaks the contract (see the rules
// above); none when it keeps it.
func (c *contractChecker) check(ex exchange) []string {
	if ex.status == 499 || strings.HasPrefix(ex.req.URL.Path, "/test/") {
		return nil
	}
	req := ex.req.Clone(ex.req.Context())
	req.Body = io.NopCloser(bytes.NewReader(ex.reqBody))
	route, err := c.routes.FindRoute(req)
	if err != nil || route.Operation == nil ||
		strings.HasSuffix(route.Path, "/") != strings.HasSuffix(req.URL.Path, "/") { // the router forgives a trailing slash; Echo does not
		if ex.status == http.StatusNotFound || ex.status == http.StatusMethodNotAllowed {
			return nil
		}
		return []string{fmt.Sprintf("no operation of the document is %s %s, yet it was answered %d, not 404 or 405", req.Method, req.URL.Path, ex.status)}
	}

	var problems []string
	valid, errs := c.validator.ValidateHttpRequestSyncWithPathItem(req, route.PathItem, route.Path)
	if !valid && (ex.status < 400 || ex.status > 499) {
		problems = append(problems, fmt.Sprintf("the request does not match the document, yet it was answered %d, not 4xx: %s", ex.status, describe(errs)))
	}

	res := &http.Response{StatusCode: ex.status, Header: ex.header, Body: io.NopCloser(bytes.NewReader(ex.body)), Request: req}
	if valid, errs := c.validator.GetResponseBodyValidator().ValidateResponseBodyWithPathItem(req, res, route.PathItem, route.Path); !valid {
		problems = append(problems, "the response does not match the document: "+describe(errs))
	}
	res.Body = io.NopCloser(bytes.NewReader(ex.body))
	if valid, errs := responses.ValidateResponseHeaders(req, res, c.everywhere, route.Path, strconv.Itoa(ex.status)); !valid {
		problems = append(problems, "a header of every response is missing or wrong: "+describe(errs))
	}

	documented := responseOf(route.Operation, ex.status)
	if documented == nil {
		return problems // the validator said so
	}
	if orderedmap.Len(documented.Content) == 0 && len(ex.body) > 0 {
		problems = append(problems, fmt.Sprintf("the %d response has a body, but the document gives it none", ex.status))
	}
	var undocumented []string
	for name := range ex.header {
		name = http.CanonicalHeaderKey(name)
		if slices.Contains(transportHeaders, name) || c.everywhere.GetOrZero(name) != nil || hasHeader(documented, name) {
			continue
		}
		undocumented = append(undocumented, name)
	}
	if len(undocumented) > 0 {
		slices.Sort(undocumented)
		problems = append(problems, fmt.Sprintf("undocumented response headers %s (not in the %d response of %s nor in x-headers-on-every-response)",
			strings.Join(undocumented, ", "), ex.status, route.Operation.OperationId))
	}
	return problems
}

// responseOf is the response the operation documents for status, as
// OpenAPI picks it: the status, else its range (4XX), else default.
func responseOf(op *v3.Operation, status int) *v3.Response {
	if op.Responses == nil {
		return nil
	}
	if r := op.Responses.Codes.GetOrZero(strconv.Itoa(status)); r != nil {
		return r
	}
	if r := op.Responses.Codes.GetOrZero(fmt.Sprintf("%dXX", status/100)); r != nil {
		return r
	}
	return op.Responses.Default
}

func hasHeader(r *v3.Response, name string) bool {
	for k := range r.Headers.KeysFromOldest() {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// describe joins the validator's messages, with the schema's reasons.
func describe(errs []*liberrors.ValidationError) string {
	var parts []string
	for _, e := range errs {
		s := e.Message
		if e.Reason != "" && e.Reason != e.Message {
			s += " (" + e.Reason + ")"
		}
		for _, f := range e.SchemaValidationErrors {
			s += "; " + f.Reason
			if f.FieldPath != "" {
				s += " at " + f.FieldPath
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " | ")
}

// TestContractCheckCanFail feeds the check hand-made exchanges, through a
// handler that answers what each case says, and requires it to report
// each breach of the contract (and nothing for the exchanges that keep
// it): a check that cannot fail would pass every test.
func TestContractCheckCanFail(t *testing.T) {
	t.Parallel()
	c := contract(t)
	const id = "0192f4c5-1a2b-7c3d-8e4f-5a6b7c8d9e0f"
	product := func(change func(map[string]any)) string {
		p := map[string]any{"id": id, "sku": "MUG-01", "name": "Mug", "price_cents": 1250, "stock_available": 4, "version": 1}
		if change != nil {
			change(p)
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	problem := `{"type":"about:blank","title":"Not Found","status":404,"instance":"/v1/products/x","request_id":"r1"}`
	everyResponse := map[string]string{
		"X-Request-Id": "r1", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
		"Referrer-Policy": "no-referrer", "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
	}
	tests := []struct {
		name         string
		method, path string
		reqType      string // the request's Content-Type
		reqBody      string
		status       int
		contentType  string
		header       map[string]string // beside everyResponse
		drop         string            // a header of everyResponse left out
		body         string
		want         []string // in the problems, in order; none: it keeps the contract
	}{
		{name: "a documented answer", method: "GET", path: "/v1/products/" + id,
			status: 200, contentType: "application/json", header: map[string]string{"X-Read-Source": "redis"}, body: product(nil)},
		{name: "a documented error", method: "GET", path: "/v1/products/not-a-uuid",
			status: 404, contentType: "application/problem+json", body: problem},
		{name: "an unknown route answered 404", method: "GET", path: "/v1/nowhere",
			status: 404, contentType: "application/problem+json", body: problem},
		{name: "an invalid request rejected", method: "POST", path: "/v1/users", reqType: "application/json", reqBody: `{"email":1}`,
			status: 422, contentType: "application/problem+json", body: strings.Replace(problem, "404", "422", 1)},

		{name: "an undocumented field", method: "GET", path: "/v1/products/" + id,
			status: 200, contentType: "application/json", header: map[string]string{"X-Read-Source": "redis"},
			body: product(func(p map[string]any) { p["colour"] = "blue" }), want: []string{"colour"}},
		{name: "a missing required field", method: "GET", path: "/v1/products/" + id,
			status: 200, contentType: "application/json", header: map[string]string{"X-Read-Source": "redis"},
			body: product(func(p map[string]any) { delete(p, "sku") }), want: []string{"sku"}},
		{name: "a field of the wrong type", method: "GET", path: "/v1/products/" + id,
			status: 200, contentType: "application/json", header: map[string]string{"X-Read-Source": "redis"},
			body: product(func(p map[string]any) { p["version"] = "1" }), want: []string{"version"}},
		{name: "a malformed uuid", method: "GET", path: "/v1/products/" + id,
			status: 200, contentType: "application/json", header: map[string]string{"X-Read-Source": "redis"},
			body: product(func(p map[string]any) { p["id"] = "42" }), want: []string{"uuid"}},
		{name: "an undocumented status", method: "GET", path: "/v1/products/" + id,
			status: http.StatusTeapot, contentType: "application/problem+json", body: problem, want: []string{"418"}},
		{name: "an undocumented Content-Type", method: "GET", path: "/v1/products/" + id,
			status: 200, contentType: "text/plain", header: map[string]string{"X-Read-Source": "redis"}, body: "mug", want: []string{"text/plain"}},
		{name: "an undocumented header", method: "GET", path: "/v1/products/" + id,
			status: 200, contentType: "application/json", header: map[string]string{"X-Read-Source": "redis", "X-Powered-By": "Go"},
			body: product(nil), want: []string{"X-Powered-By"}},
		{name: "a header documented elsewhere only", method: "GET", path: "/v1/products/" + id,
			status: 200, contentType: "application/json", header: map[string]string{"X-Read-Source": "redis", "Location": "/v1/products/" + id},
			body: product(nil), want: []string{"Location"}},
		{name: "a missing required header", method: "GET", path: "/v1/products/" + id,
			status: 200, contentType: "application/json", body: product(nil), want: []string{"X-Read-Source"}},
		{name: "a header of the wrong value", method: "GET", path: "/v1/products/" + id,
			status: 200, contentType: "application/json", header: map[string]string{"X-Read-Source": "memcached"},
			body: product(nil), want: []string{"X-Read-Source"}},
		{name: "a header of every response missing", method: "GET", path: "/v1/products/" + id, drop: "X-Frame-Options",
			status: 200, contentType: "application/json", header: map[string]string{"X-Read-Source": "redis"},
			body: product(nil), want: []string{"X-Frame-Options"}},
		{name: "an invalid request accepted", method: "POST", path: "/v1/users", reqType: "application/json", reqBody: `{"email":1}`,
			status: 201, contentType: "application/json",
			body: `{"id":"` + id + `","email":"a@example.com","name":"A","role":"customer","version":1,"created_at":"2025-01-31T09:30:00Z"}`,
			want: []string{"the request does not match"}},
		{name: "a signed-in route without a token accepted", method: "GET", path: "/v1/admin/audit",
			status: 200, contentType: "application/json", header: map[string]string{"Cache-Control": "no-store"},
			body: `{"items":[],"next":null}`, want: []string{"the request does not match", "Authorization"}},
		{name: "an unknown route answered 200", method: "GET", path: "/v1/nowhere",
			status: 200, contentType: "application/json", body: `{}`, want: []string{"no operation", "/v1/nowhere"}},
		{name: "an undocumented method answered 200", method: "DELETE", path: "/v1/products/" + id,
			status: 200, contentType: "application/json", body: product(nil), want: []string{"no operation", "DELETE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, err := io.ReadAll(r.Body); err != nil { // as the API reads it
					t.Errorf("read the request body: %v", err)
				}
				for k, v := range everyResponse {
					if k != tt.drop {
						w.Header().Set(k, v)
					}
				}
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.Header().Set("Content-Type", tt.contentType)
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			var body io.Reader
			if tt.reqBody != "" {
				body = strings.NewReader(tt.reqBody)
			}
			req := httptest.NewRequest(tt.method, tt.path, body)
			if tt.reqType != "" {
				req.Header.Set("Content-Type", tt.reqType)
			}
			rec := httptest.NewRecorder()
			ex, ok := c.serve(fake, rec, req)
			if !ok {
				t.Fatal("the exchange was not recorded")
			}
			if rec.Code != tt.status || rec.Body.String() != tt.body || rec.Header().Get("Content-Type") != tt.contentType {
				t.Errorf("the client got %d %q %q, want what the handler answered: %d %q %q",
					rec.Code, rec.Header().Get("Content-Type"), rec.Body, tt.status, tt.contentType, tt.body)
			}
			problems := c.check(ex)
			if len(tt.want) == 0 {
				for _, p := range problems {
					t.Errorf("reported an exchange that keeps the contract: %s", p)
				}
				return
			}
			all := strings.Join(problems, "\n")
			for _, w := range tt.want {
				if !strings.Contains(strings.ToLower(all), strings.ToLower(w)) { // the validator writes header names in lower case
					t.Errorf("the check did not report %q; it said:\n%s", w, all)
				}
			}
		})
	}
}
