package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/shopdev/shop/domain"
)

// errNotJSON answers a body sent as anything but JSON.
var errNotJSON = problemError{status: http.StatusUnsupportedMediaType,
	detail: "the request body must be JSON, sent with Content-Type: application/json"}

// requireJSON checks that the request declares its body as JSON in UTF-8,
// the only encoding JSON has (RFC 8259); parameters such as charset=utf-8
// are allowed and the media type is case-insensitive.
func requireJSON(r *http.Request) error {
	mediaType, params, err := mime.ParseMediaType(r.Header.Get(echo.HeaderContentType))
	if err != nil || mediaType != echo.MIMEApplicationJSON {
		return errNotJSON
	}
	if charset, ok := params["charset"]; ok && !strings.EqualFold(charset, "utf-8") {
		return problemError{status: http.StatusUnsupportedMediaType, detail: "a JSON request body must be UTF-8"}
	}
	return nil
}

// readBody returns the raw request body of a route that takes none (a
// bodiless request is fine); a body sent anyway must be declared JSON, as
// every body is.
func readBody(c echo.Context) ([]byte, error) {
	body, err := readAll(c)
	if err == nil && len(body) > 0 {
		err = requireJSON(c.Request())
	}
	return body, err
}

// readAll returns the raw request body; BodyLimit has capped its size.
func readAll(c echo.Context) ([]byte, error) {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		// Echo's BodyLimit answers a longer Content-Length before the
		// handler runs and stops the read of a chunked body at the limit;
		// a net/http MaxBytesReader in front would stop it too.
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) || errors.Is(err, echo.ErrStatusRequestEntityTooLarge) {
			return nil, echo.ErrStatusRequestEntityTooLarge
		}
		return nil, problemError{status: http.StatusBadRequest, detail: "could not read the request body"}
	}
	return body, nil
}

// bind reads the request body, which must be declared JSON, and decodes it
// into dst; it returns the raw body, which the Idempotency-Key compares.
func bind(c echo.Context, dst any) ([]byte, error) {
	if err := requireJSON(c.Request()); err != nil {
		return nil, err
	}
	body, err := readAll(c)
	if err != nil {
		return nil, err
	}
	return body, decode(body, dst)
}

// bindOn is bind for a request on the resource of the :id path parameter
// (a malformed id is notFound, as an unknown one would be).
func bindOn(c echo.Context, notFound error, dst any) (uuid.UUID, []byte, error) {
	id, err := pathID(c, notFound)
	if err != nil {
		return uuid.Nil, nil, err
	}
	body, err := bind(c, dst)
	return id, body, err
}

// decode parses a JSON object strictly into dst: a body that is not JSON is
// 400; null, a field of the wrong type, a key that is not exactly a field's
// name (encoding/json would match it ignoring case) or a key given twice is
// 422 naming the field.
func decode(body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return problemError{status: http.StatusBadRequest, detail: "the request body must be a JSON object"}
	}
	return decodeAt("", body, dst)
}

// decodeAt decodes a JSON value found at path (e.g. "items[2]") of a body
// that is already known to be JSON, naming fields by their full path.
func decodeAt(path string, body []byte, dst any) error {
	at := func(field string) string {
		switch {
		case path == "":
			return field
		case field == "":
			return path
		}
		return path + "." + field
	}
	if err := checkKeys(body, reflect.TypeOf(dst)); err != nil {
		var ke *keyError
		switch {
		case errors.Is(err, errNull) && path == "":
			return problemError{status: http.StatusUnprocessableEntity, detail: "the request body must be a JSON object, not null"}
		case errors.Is(err, errNull):
			return domain.Invalid(path, "must be an object, not null")
		case errors.As(err, &ke):
			return domain.Invalid(at(ke.field), ke.message)
		}
		return problemError{status: http.StatusBadRequest, detail: err.Error()}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		if dec.More() {
			return problemError{status: http.StatusBadRequest, detail: "the request body must hold one JSON object"}
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return problemError{status: http.StatusBadRequest, detail: "the request body must hold one JSON object"}
		}
		return nil
	case errors.As(err, &typeErr):
		if at(typeErr.Field) == "" {
			return problemError{status: http.StatusBadRequest, detail: "the request body must be a JSON object"}
		}
		return domain.Invalid(at(typeErr.Field), "must be "+jsonKind(typeErr.Type.Kind().String()))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return domain.Invalid(at(keyName(field)), "is not a field of this request")
	default:
		return problemError{status: http.StatusBadRequest, detail: "malformed JSON: " + err.Error()}
	}
}

// keyError is a key of a JSON body that encoding/json would accept but this
// API does not, at field: its path below the decoded value.
type keyError struct {
	field, message string
}

func newKeyError(key, message string) *keyError {
	return &keyError{field: keyName(key), message: message}
}

// keyName is how a field path names a key: as it is, but the empty key.
func keyName(key string) string {
	if key == "" {
		return `""`
	}
	return key
}

func (e *keyError) Error() string { return e.field + " " + e.message }

// under prefixes the error's field with the key or index it was found at.
func (e *keyError) under(parent string) *keyError {
	if e.field[0] == '[' {
		e.field = parent + e.field
	} else {
		e.field = parent + "." + e.field
	}
	return e
}

// maxDepth bounds how deeply checkKeys follows nested arrays and objects:
// no request nests anywhere near it, and the walk recurses.
const maxDepth = 64

var (
	// errNull is a value that must be an object but is null, which
	// encoding/json would accept as an empty one.
	errNull = errors.New("null")
	// errTooDeep is a body nested deeper than maxDepth.
	errTooDeep = errors.New("the request body is nested too deeply")
)

// checkKeys walks the JSON value of body as encoding/json would decode it
// into a value of type t, and returns a *keyError for the first key that
// is not exactly the name of one of the fields of the struct it is decoded
// into, or that is given twice in one object (at any depth, whatever the
// object is decoded into); errNull for a body that is null; errTooDeep.
// Other mistakes are left to the decoder: a body that is not JSON or not an
// object, a value of the wrong type.
//
// It runs on every command, so it scans the bytes itself: json.Decoder's
// tokens would cost more than the decoding they guard.
func checkKeys(body []byte, t reflect.Type) error {
	if !json.Valid(body) {
		return nil // the decoder says what is wrong
	}
	s := scanner{b: body}
	s.space()
	switch s.b[s.i] {
	case 'n':
		return errNull
	case '{':
		return s.walk(t, 0)
	}
	return nil
}

// scanner walks a body that json.Valid accepted, so it need not check the
// syntax again.
type scanner struct {
	b []byte
	i int
}

var (
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

// walk checks the JSON value at s.i, decoded into type t (nil: any type,
// whose keys are not checked, only their uniqueness), and moves past it.
func (s *scanner) walk(t reflect.Type, depth int) error {
	s.space()
	switch s.b[s.i] {
	case '"':
		s.str()
		return nil
	case '{', '[':
	default: // a number, true, false or null
		for s.i < len(s.b) && !s.delimiter() {
			s.i++
		}
		return nil
	}
	if depth == maxDepth {
		return errTooDeep
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t == rawMessageType || reflect.PointerTo(t).Implements(unmarshalerType)) {
		t = nil // decoded by rules of its own (a raw item is checked when it is decoded)
	}
	var (
		fields map[string]reflect.Type // of a struct; nil: any key
		elem   reflect.Type            // of a map's values or of an array's elements
	)
	object := s.b[s.i] == '{'
	if t != nil {
		switch k := t.Kind(); {
		case object && k == reflect.Struct:
			fields = jsonFields(t)
		case object && k == reflect.Map, !object && (k == reflect.Slice || k == reflect.Array):
			elem = t.Elem()
		}
	}
	if !object {
		s.i++
		for i := 0; !s.end(); i++ {
			if err := s.walk(elem, depth+1); err != nil {
				var ke *keyError
				if errors.As(err, &ke) {
					return ke.under("[" + strconv.Itoa(i) + "]")
				}
				return err
			}
		}
		return nil
	}
	s.i++
	// A struct's keys are each a field's, found once, so they are few and
	// a slice holds them; any other object may have any number.
	var (
		seenField [][]byte
		seenKey   map[string]bool
	)
	for !s.end() {
		s.space()
		key := unquote(s.str())
		valueType := elem
		if fields != nil {
			if slices.ContainsFunc(seenField, func(k []byte) bool { return bytes.Equal(k, key) }) {
				return newKeyError(string(key), "is given more than once")
			}
			var ok bool
			if valueType, ok = fields[string(key)]; !ok {
				return unknownKey(string(key), fields)
			}
			seenField = append(seenField, key)
		} else {
			if seenKey[string(key)] {
				return newKeyError(string(key), "is given more than once")
			}
			if seenKey == nil {
				seenKey = make(map[string]bool)
			}
			seenKey[string(key)] = true
		}
		s.space()
		s.i++ // the colon
		if err := s.walk(valueType, depth+1); err != nil {
			var ke *keyError
			if errors.As(err, &ke) {
				return ke.under(string(key))
			}
			return err
		}
	}
	return nil
}

// end moves past the comma before the next element of an array or object
// and reports false, or past the closing bracket and reports true.
func (s *scanner) end() bool {
	s.space()
	switch s.b[s.i] {
	case ',':
		s.i++
		return false
	case ']', '}':
		s.i++
		return true
	}
	return false // the first element
}

func (s *scanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// delimiter reports whether s.i is at what ends a number or a literal.
func (s *scanner) delimiter() bool {
	switch s.b[s.i] {
	case ',', ']', '}', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// str moves past the string at s.i and returns it, quotes included.
func (s *scanner) str() []byte {
	start := s.i
	for s.i++; s.b[s.i] != '"'; s.i++ {
		if s.b[s.i] == '\\' {
			s.i++ // the escaped character, which may be a quote
		}
	}
	s.i++
	return s.b[start:s.i]
}

// unquote returns the key that encoding/json reads from the quoted string q.
func unquote(q []byte) []byte {
	raw := q[1 : len(q)-1]
	for _, c := range raw {
		if c == '\\' || c >= utf8.RuneSelf {
			// Escapes, and invalid UTF-8 that encoding/json replaces.
			var key string
			_ = json.Unmarshal(q, &key) // q is a valid JSON string
			return []byte(key)
		}
	}
	return raw
}

// unknownKey is the error of a key that names no field, with a hint when it
// names one but for its case.
func unknownKey(key string, fields map[string]reflect.Type) *keyError {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return newKeyError(key, fmt.Sprintf("is not a field of this request (names are case-sensitive: %q)", name))
		}
	}
	return newKeyError(key, "is not a field of this request")
}

// structFields caches jsonFields, per struct type.
var structFields sync.Map

// jsonFields returns the JSON names of the fields of struct type t, with
// their types, as encoding/json names them: the json tag's name, else the
// field's; fields of embedded structs are promoted unless the outer struct
// has one of the same name.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if fields, ok := structFields.Load(t); ok {
		return fields.(map[string]reflect.Type)
	}
	fields := map[string]reflect.Type{}
	var embedded []reflect.Type
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				embedded = append(embedded, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	for _, e := range embedded {
		for name, ft := range jsonFields(e) {
			if _, ok := fields[name]; !ok {
				fields[name] = ft
			}
		}
	}
	structFields.Store(t, fields)
	return fields
}

func jsonKind(goKind string) string {
	switch {
	case strings.HasPrefix(goKind, "int"), strings.HasPrefix(goKind, "uint"):
		return "an integer in range"
	case goKind == "string":
		return "a string"
	case goKind == "slice", goKind == "array":
		return "an array"
	case goKind == "struct", goKind == "map":
		return "an object"
	case goKind == "bool":
		return "true or false"
	}
	return "of another type"
}

// pathID parses the :id path parameter; a malformed id is 404, as an
// unknown one would be.
func pathID(c echo.Context, notFound error) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param("id"))
	if err != nil {
		return uuid.Nil, notFound
	}
	return id, nil
}

// jsonEncode writes v as JSON.
func jsonEncode(w io.Writer, v any) error {
	if err := json.NewEncoder(w).Encode(v); err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	return nil
}
