package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/shopdev/shop/domain"
)

// readBody returns the raw request body; BodyLimit has capped its size.
func readBody(c echo.Context) ([]byte, error) {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		// net/http's MaxBytesReader caps a body with a Content-Length,
		// Echo's BodyLimit a chunked one.
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) || errors.Is(err, echo.ErrStatusRequestEntityTooLarge) {
			return nil, echo.ErrStatusRequestEntityTooLarge
		}
		return nil, problemError{status: http.StatusBadRequest, detail: "could not read the request body"}
	}
	return body, nil
}

// bind reads the request body and decodes it into dst; it returns the raw
// body, which the Idempotency-Key compares.
func bind(c echo.Context, dst any) ([]byte, error) {
	body, err := readBody(c)
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
// 400; a field of the wrong type or one the endpoint does not know is 422
// naming the field.
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
		return domain.Invalid(at(field), "is not a field of this request")
	default:
		return problemError{status: http.StatusBadRequest, detail: "malformed JSON: " + err.Error()}
	}
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
