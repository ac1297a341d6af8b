package api_test

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/shopdev/shop/api"
)

// openapiDoc is a one-operation OpenAPI document: POST /v1/things with the
// request body schema req and the 201 response schema res.
func openapiDoc(version, req, res string) string {
	return `openapi: 3.1.0
info: {title: t, version: "` + version + `"}
paths:
  /v1/things:
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: ` + req + `
      responses:
        "201":
          description: created
          content:
            application/json:
              schema: ` + res + `
components:
  schemas:
    Thing: {type: object, additionalProperties: false, required: [id, name], properties: {id: {type: string, format: uuid}, name: {type: string}}}
    SmallerThing: {type: object, additionalProperties: false, required: [id], properties: {id: {type: string, format: uuid}}}
`
}

const (
	thingReq  = `{type: object, additionalProperties: false, required: [name], properties: {name: {type: string, maxLength: 100}, quantity: {type: number}}}`
	thingRes  = `{type: object, additionalProperties: false, required: [id, status, total], properties: {id: {type: string, format: uuid}, status: {type: string, enum: [pending, confirmed]}, total: {type: integer}, note: {type: string}}}`
	emptyDocs = "asyncapi: 3.0.0\nchannels: {}\n"
)

// asyncapiDoc is a one-event AsyncAPI document: the event thing.happened at
// schema version v with the data schema data.
func asyncapiDoc(v int, data string) string {
	return `asyncapi: 3.0.0
info: {title: t, version: "1.0.0"}
channels:
  thing.happened:
    address: thing.happened
    messages:
      thingHappened:
        $ref: '#/components/messages/thingHappened'
components:
  messages:
    thingHappened:
      name: thing.happened
      x-schema-version: ` + strconv.Itoa(v) + `
      payload:
        type: object
        required: [id, type, data]
        properties:
          id: {type: string, format: uuid}
          type: {const: thing.happened}
          data: ` + data + `
`
}

const thingData = `{type: object, additionalProperties: false, required: [thing_id, status, lines], properties: {thing_id: {type: string, format: uuid}, status: {type: string, enum: [placed, confirmed]}, lines: {type: array, items: {type: object, required: [sku, quantity], properties: {sku: {type: string}, quantity: {type: integer, minimum: 1}}}}}}`

func TestCompatFindsWhatBreaksAClient(t *testing.T) {
	tests := []struct {
		name      string
		oldDoc    string
		newDoc    string
		changelog string
		want      []string // a substring of each break, in order; none: compatible
	}{
		{name: "unchanged", oldDoc: openapiDoc("1.0.0", thingReq, thingRes), newDoc: openapiDoc("1.0.0", thingReq, thingRes)},
		{
			name:   "an optional response field added",
			oldDoc: openapiDoc("1.0.0", thingReq, thingRes),
			newDoc: openapiDoc("1.0.0", thingReq, strings.Replace(thingRes, "note: {type: string}", "note: {type: string}, tag: {type: string}", 1)),
		},
		{
			name:   "an optional request field added",
			oldDoc: openapiDoc("1.0.0", thingReq, thingRes),
			newDoc: openapiDoc("1.0.0", strings.Replace(thingReq, "quantity: {type: number}", "quantity: {type: number}, tag: {type: string}", 1), thingRes),
		},
		{
			name:   "a response field removed",
			oldDoc: openapiDoc("1.0.0", thingReq, thingRes),
			newDoc: openapiDoc("1.0.0", thingReq, strings.Replace(thingRes, ", note: {type: string}", "", 1)),
			want:   []string{"response 201 (application/json): note: property removed"},
		},
		{
			name:   "a response field made optional",
			oldDoc: openapiDoc("1.0.0", thingReq, thingRes),
			newDoc: openapiDoc("1.0.0", thingReq, strings.Replace(thingRes, "required: [id, status, total]", "required: [id, status]", 1)),
			want:   []string{"total: no longer required"},
		},
		{
			name:   "a response field made nullable",
			oldDoc: openapiDoc("1.0.0", thingReq, thingRes),
			newDoc: openapiDoc("1.0.0", thingReq, strings.Replace(thingRes, "total: {type: integer}", "total: {type: [integer, \"null\"]}", 1)),
			want:   []string{"total: type widened"},
		},
		{
			name:   "a response enum value added",
			oldDoc: openapiDoc("1.0.0", thingReq, thingRes),
			newDoc: openapiDoc("1.0.0", thingReq, strings.Replace(thingRes, "[pending, confirmed]", "[pending, confirmed, shipped]", 1)),
			want:   []string{"status: values widened"},
		},
		{
			name:   "a request field made required",
			oldDoc: openapiDoc("1.0.0", thingReq, thingRes),
			newDoc: openapiDoc("1.0.0", strings.Replace(thingReq, "required: [name]", "required: [name, quantity]", 1), thingRes),
			want:   []string{"request body (application/json): quantity: newly required"},
		},
		{
			name:   "a request type narrowed",
			oldDoc: openapiDoc("1.0.0", thingReq, thingRes),
			newDoc: openapiDoc("1.0.0", strings.Replace(thingReq, "quantity: {type: number}", "quantity: {type: integer}", 1), thingRes),
			want:   []string{"quantity: type narrowed"},
		},
		{
			name:   "a request limit tightened",
			oldDoc: openapiDoc("1.0.0", thingReq, thingRes),
			newDoc: openapiDoc("1.0.0", strings.Replace(thingReq, "maxLength: 100", "maxLength: 50", 1), thingRes),
			want:   []string{"name: maxLength tightened from 100 to 50"},
		},
		{
			name:   "a request limit loosened",
			oldDoc: openapiDoc("1.0.0", thingReq, thingRes),
			newDoc: openapiDoc("1.0.0", strings.Replace(thingReq, "maxLength: 100", "maxLength: 200", 1), thingRes),
		},
		{
			name:   "a request field removed from a closed object",
			oldDoc: openapiDoc("1.0.0", thingReq, thingRes),
			newDoc: openapiDoc("1.0.0", strings.Replace(thingReq, ", quantity: {type: number}", "", 1), thingRes),
			want:   []string{"quantity: property removed from a closed object"},
		},
		{
			name:   "a field removed behind a $ref",
			oldDoc: openapiDoc("1.0.0", thingReq, "{$ref: '#/components/schemas/Thing'}"),
			newDoc: openapiDoc("1.0.0", thingReq, "{$ref: '#/components/schemas/SmallerThing'}"),
			want:   []string{"name: property removed"},
		},
		{
			name:   "an operation removed",
			oldDoc: openapiDoc("1.0.0", thingReq, thingRes),
			newDoc: strings.Replace(openapiDoc("1.0.0", thingReq, thingRes), "    post:", "    put:", 1),
			want:   []string{"POST /v1/things: operation removed"},
		},
		{
			name:      "a break announced with a major version and a changelog line",
			oldDoc:    openapiDoc("1.0.0", thingReq, thingRes),
			newDoc:    openapiDoc("2.0.0", thingReq, strings.Replace(thingRes, ", note: {type: string}", "", 1)),
			changelog: "- HTTP API 2.0.0: `note` is gone from things.",
		},
		{
			name:   "a major version without a changelog line",
			oldDoc: openapiDoc("1.0.0", thingReq, thingRes),
			newDoc: openapiDoc("2.0.0", thingReq, strings.Replace(thingRes, ", note: {type: string}", "", 1)),
			want:   []string{"note: property removed"},
		},
		{
			name:      "a changelog line without a major version",
			oldDoc:    openapiDoc("1.0.0", thingReq, thingRes),
			newDoc:    openapiDoc("1.1.0", thingReq, strings.Replace(thingRes, ", note: {type: string}", "", 1)),
			changelog: "- HTTP API 1.1.0: `note` is gone from things.",
			want:      []string{"note: property removed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			breaks, err := api.Compat([]byte(tt.oldDoc), []byte(tt.newDoc), []byte(emptyDocs), []byte(emptyDocs), readme(tt.changelog))
			if err != nil {
				t.Fatal(err)
			}
			checkBreaks(t, breaks, tt.want)
		})
	}
}

func TestCompatFindsWhatBreaksASubscriber(t *testing.T) {
	emptyHTTP := openapiDoc("1.0.0", thingReq, thingRes)
	tests := []struct {
		name      string
		oldDoc    string
		newDoc    string
		changelog string
		want      []string
	}{
		{name: "unchanged", oldDoc: asyncapiDoc(1, thingData), newDoc: asyncapiDoc(1, thingData)},
		{
			name:   "a data field added",
			oldDoc: asyncapiDoc(1, thingData),
			newDoc: asyncapiDoc(1, strings.Replace(thingData, "thing_id: {type: string, format: uuid}", "thing_id: {type: string, format: uuid}, note: {type: string}", 1)),
		},
		{
			name:   "a data field removed",
			oldDoc: asyncapiDoc(1, thingData),
			newDoc: asyncapiDoc(1, strings.Replace(thingData, "required: [thing_id, status, lines], properties: {thing_id: {type: string, format: uuid}, ", "required: [status, lines], properties: {", 1)),
			want:   []string{"event thing.happened: data.thing_id: property removed"},
		},
		{
			name:   "a field in a list's items made optional",
			oldDoc: asyncapiDoc(1, thingData),
			newDoc: asyncapiDoc(1, strings.Replace(thingData, "required: [sku, quantity]", "required: [sku]", 1)),
			want:   []string{"data.lines[].quantity: no longer required"},
		},
		{
			name:   "a minimum lowered",
			oldDoc: asyncapiDoc(1, thingData),
			newDoc: asyncapiDoc(1, strings.Replace(thingData, "minimum: 1", "minimum: 0", 1)),
			want:   []string{"data.lines[].quantity: minimum loosened from 1 to 0"},
		},
		{
			name:   "a format dropped",
			oldDoc: asyncapiDoc(1, thingData),
			newDoc: asyncapiDoc(1, strings.Replace(thingData, "thing_id: {type: string, format: uuid}", "thing_id: {type: string}", 1)),
			want:   []string{"data.thing_id: format uuid dropped"},
		},
		{
			name:   "a status added",
			oldDoc: asyncapiDoc(1, thingData),
			newDoc: asyncapiDoc(1, strings.Replace(thingData, "[placed, confirmed]", "[placed, confirmed, shipped]", 1)),
			want:   []string{"data.status: values widened"},
		},
		{
			name:   "the event removed",
			oldDoc: asyncapiDoc(1, thingData),
			newDoc: emptyDocs,
			want:   []string{"event thing.happened: event removed"},
		},
		{
			name:      "a break announced with a schema version and a changelog line",
			oldDoc:    asyncapiDoc(1, thingData),
			newDoc:    asyncapiDoc(2, strings.Replace(thingData, "[placed, confirmed]", "[placed, confirmed, shipped]", 1)),
			changelog: "- `thing.happened` schema_version 2: status may be `shipped`.",
		},
		{
			name:   "a schema version without a changelog line",
			oldDoc: asyncapiDoc(1, thingData),
			newDoc: asyncapiDoc(2, strings.Replace(thingData, "[placed, confirmed]", "[placed, confirmed, shipped]", 1)),
			want:   []string{"data.status: values widened"},
		},
		{
			name:      "a changelog line without a schema version",
			oldDoc:    asyncapiDoc(1, thingData),
			newDoc:    asyncapiDoc(1, strings.Replace(thingData, "[placed, confirmed]", "[placed, confirmed, shipped]", 1)),
			changelog: "- `thing.happened` schema_version 2: status may be `shipped`.",
			want:      []string{"data.status: values widened"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			breaks, err := api.Compat([]byte(emptyHTTP), []byte(emptyHTTP), []byte(tt.oldDoc), []byte(tt.newDoc), readme(tt.changelog))
			if err != nil {
				t.Fatal(err)
			}
			checkBreaks(t, breaks, tt.want)
		})
	}
}

// TestContractsKeepTheirCompatibility compares api/openapi.yaml and
// api/asyncapi.yaml with the last release's, under api/compat/: a change
// that breaks a client or a subscriber fails here unless its version is
// bumped and the README's changelog says so.
func TestContractsKeepTheirCompatibility(t *testing.T) {
	oldHTTP := readFile(t, "compat/openapi.yaml")
	oldEvents := readFile(t, "compat/asyncapi.yaml")
	breaks, err := api.Compat(oldHTTP, api.OpenAPIYAML(), oldEvents, api.AsyncAPIYAML(), readFile(t, "../README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range breaks {
		t.Errorf("breaking change since the last release (api/compat/): %s", b)
	}
}

// TestCompatReadsTheRealDocuments: a break made in the committed
// documents themselves, behind their $refs, is found (so the check above
// passes because nothing broke, not because it read nothing).
func TestCompatReadsTheRealDocuments(t *testing.T) {
	tests := []struct {
		name           string
		http, events   []byte
		cut, with      string // what the break replaces in the document
		want           string
		inHTTPDocument bool
	}{
		{
			name: "an order's total made optional", inHTTPDocument: true,
			cut:  "required: [id, user_id, status, items, total_cents, version, updated_at]",
			with: "required: [id, user_id, status, items, version, updated_at]",
			want: "GET /v1/orders/{id} response 200 (application/json): total_cents: no longer required",
		},
		{
			name: "order.placed's total made optional",
			cut:  "required: [order_id, user_id, status, items, total_cents]",
			with: "required: [order_id, user_id, status, items]",
			want: "event order.placed: data.total_cents: no longer required",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			http, events := api.OpenAPIYAML(), api.AsyncAPIYAML()
			target := &events
			if tt.inHTTPDocument {
				target = &http
			}
			if !bytes.Contains(*target, []byte(tt.cut)) {
				t.Fatalf("the document no longer has %q: update this test's break", tt.cut)
			}
			*target = bytes.Replace(*target, []byte(tt.cut), []byte(tt.with), 1)
			breaks, err := api.Compat(api.OpenAPIYAML(), http, api.AsyncAPIYAML(), events, nil)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, b := range breaks {
				found = found || strings.Contains(b.String(), tt.want)
			}
			if !found {
				t.Errorf("no break %q among %q", tt.want, breaks)
			}
		})
	}
}

// readme is a README whose Changelog section holds lines.
func readme(lines string) []byte {
	return []byte("# thing\n\n## Changelog\n\n" + lines + "\n\n## Other\n\n- HTTP API 9.0.0 and `thing.happened` schema_version 9 outside the changelog count for nothing\n")
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// checkBreaks fails t unless breaks match want, one substring each.
func checkBreaks(t *testing.T, breaks []api.Break, want []string) {
	t.Helper()
	if len(breaks) != len(want) {
		t.Fatalf("got %d breaks, want %d: %q", len(breaks), len(want), breaks)
	}
	for i, b := range breaks {
		if !strings.Contains(b.String(), want[i]) {
			t.Errorf("break %d = %q, want it to contain %q", i, b, want[i])
		}
	}
}
