package httpapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/handlers/httpapi"
)

// The fuzz targets decode whatever body the fuzzer makes as each handler
// decodes its own, and check properties rather than fixed answers: a body
// is rejected with a 4xx naming what is wrong, or decoded into a value that
// encodes and decodes to itself, from a body whose keys are exactly the
// request's field names, each once; and the same value with a key given
// twice or in another case is rejected, naming that key. The seed corpora
// are in testdata/fuzz; `make fuzz` runs each target for a few seconds.

func FuzzRegisterUserRequest(f *testing.F) {
	fuzzRequest[httpapi.RegisterUserRequest](f, []string{"email", "name", "password"}, nil)
}

func FuzzIssueTokenRequest(f *testing.F) {
	fuzzRequest[httpapi.IssueTokenRequest](f, []string{"email", "password"}, nil)
}

func FuzzCreateProductRequest(f *testing.F) {
	fuzzRequest[httpapi.CreateProductRequest](f, []string{"sku", "name", "price_cents", "stock"}, nil)
}

func FuzzUpdateProductRequest(f *testing.F) {
	fuzzRequest[httpapi.UpdateProductRequest](f, []string{"name", "price_cents"}, nil)
}

func FuzzRestockRequest(f *testing.F) {
	fuzzRequest[httpapi.RestockRequest](f, []string{"quantity"}, nil)
}

// FuzzPlaceOrderRequest decodes the body and then its items, as
// POST /v1/orders does; each item is an object of its own, strict too.
func FuzzPlaceOrderRequest(f *testing.F) {
	itemFields := []string{"product_id", "quantity"}
	fuzzRequest(f, []string{"items"}, &decoder[httpapi.PlaceOrderRequest]{
		then: func(r httpapi.PlaceOrderRequest) (any, error) { return httpapi.OrderItems(r) },
		accepted: func(t *testing.T, r httpapi.PlaceOrderRequest) {
			for i, raw := range r.Items {
				checkKeys(t, raw, itemFields)
				// The first item with a key given twice, then in another
				// case, must be rejected naming that key of that item.
				if i > 0 {
					continue
				}
				for _, bad := range mutations(t, raw) {
					body := `{"items":[` + string(bad.body) + `]}`
					var again httpapi.PlaceOrderRequest
					err := httpapi.Decode([]byte(body), &again)
					if err == nil {
						_, err = httpapi.OrderItems(again)
					}
					rejectedNaming(t, body, err, "items[0]."+bad.key)
				}
			}
		},
	})
}

// decoder is what a target does beyond Decode: then continues decoding an
// accepted value (its result is compared after the round trip), accepted
// checks more of a value that then accepted too.
type decoder[T any] struct {
	then     func(T) (any, error)
	accepted func(*testing.T, T)
}

// decodeAll decodes body as the handler of T does.
func (d *decoder[T]) decodeAll(body []byte) (T, any, error) {
	var v T
	if err := httpapi.Decode(body, &v); err != nil {
		return v, nil, err
	}
	if d == nil || d.then == nil {
		return v, v, nil
	}
	out, err := d.then(v)
	return v, out, err
}

// fuzzRequest fuzzes the decoding of the request body T, whose JSON names
// are exactly fields.
func fuzzRequest[T any](f *testing.F, fields []string, d *decoder[T]) {
	f.Helper()
	f.Fuzz(func(t *testing.T, body []byte) {
		v, out, err := d.decodeAll(body)
		if err != nil {
			clientError(t, body, err)
			return
		}
		checkKeys(t, body, fields)

		// The accepted value encodes and decodes to itself.
		enc, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("body %q: decoded %+v does not encode: %v", body, v, err)
		}
		again, outAgain, err := d.decodeAll(enc)
		if err != nil {
			t.Fatalf("body %q: decoded %+v, whose encoding %s is rejected: %v", body, v, enc, err)
		}
		if encAgain, _ := json.Marshal(again); !bytes.Equal(enc, encAgain) {
			t.Fatalf("body %q: decoded %s, then %s", body, enc, encAgain)
		}
		if !reflect.DeepEqual(out, outAgain) {
			t.Fatalf("body %q: decoded %+v, then from its encoding %s %+v", body, out, enc, outAgain)
		}

		// The same value with a key given twice or in another case is not.
		for _, bad := range mutations(t, enc) {
			_, _, err := d.decodeAll(bad.body)
			rejectedNaming(t, string(bad.body), err, bad.key)
		}
		if d != nil && d.accepted != nil {
			d.accepted(t, v)
		}
	})
}

// clientError fails the test unless err is a 400 or a 422 that says what is
// wrong: every field named, with a message.
func clientError(t *testing.T, body []byte, err error) {
	t.Helper()
	status, detail, fields, ok := httpapi.ClientError(err)
	switch {
	case !ok:
		t.Fatalf("body %q: error %v is not a client error", body, err)
	case status != 400 && status != 422:
		t.Fatalf("body %q: status %d, want 400 or 422 (%v)", body, status, err)
	case detail == "" && len(fields) == 0:
		t.Fatalf("body %q: status %d says nothing of what is wrong", body, status)
	}
	for _, fe := range fields {
		if fe.Field == "" || fe.Message == "" {
			t.Fatalf("body %q: field error %+v names no field or gives no message", body, fe)
		}
	}
}

// rejectedNaming fails the test unless err is a 422 naming field.
func rejectedNaming(t *testing.T, body string, err error, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("body %q accepted, want it rejected naming %q", body, field)
	}
	status, _, fields, ok := httpapi.ClientError(err)
	if !ok || status != 422 || !slices.ContainsFunc(fields, func(fe domain.FieldError) bool { return fe.Field == field }) {
		t.Fatalf("body %q: error %v, want a 422 naming %q", body, err, field)
	}
}

// checkKeys fails the test unless body is a JSON object whose keys are each
// one of fields, exactly, once.
func checkKeys(t *testing.T, body []byte, fields []string) {
	t.Helper()
	keys := objectKeys(t, body)
	for i, k := range keys {
		if !slices.Contains(fields, k) {
			t.Fatalf("body %q accepted with key %q, want only %q", body, k, fields)
		}
		if slices.Contains(keys[:i], k) {
			t.Fatalf("body %q accepted with key %q twice", body, k)
		}
	}
}

// member is one key and value of a JSON object.
type member struct {
	key   string
	value json.RawMessage
}

// members returns the members of a JSON object in order, or fails the test.
func members(t *testing.T, obj []byte) []member {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%q is not a JSON object (%v)", obj, err)
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%q: %v", obj, err)
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			t.Fatalf("%q: %v", obj, err)
		}
		out = append(out, member{key, value})
	}
	if _, err := dec.Token(); err != nil {
		t.Fatalf("%q: %v", obj, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		t.Fatalf("%q holds more than one object", obj)
	}
	return out
}

func objectKeys(t *testing.T, obj []byte) []string {
	t.Helper()
	var keys []string
	for _, m := range members(t, obj) {
		keys = append(keys, m.key)
	}
	return keys
}

// object encodes members as a JSON object, in order.
func object(t *testing.T, ms []member) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		key, err := json.Marshal(m.key)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(key)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// mutation is a body that must be rejected naming key.
type mutation struct {
	key  string
	body []byte
}

// mutations returns, for each key of the object obj, obj with that key
// given twice (its value repeated) and obj with the key in capitals, when
// that is another key.
func mutations(t *testing.T, obj []byte) []mutation {
	t.Helper()
	ms := members(t, obj)
	var out []mutation
	for i, m := range ms {
		out = append(out, mutation{m.key, object(t, append(slices.Clone(ms), m))})
		if upper := strings.ToUpper(m.key); upper != m.key {
			changed := slices.Clone(ms)
			changed[i].key = upper
			out = append(out, mutation{upper, object(t, changed)})
		}
	}
	return out
}
