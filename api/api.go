// Package api owns shop's published contracts: the OpenAPI 3.1 document of
// the HTTP API (openapi.yaml) and the AsyncAPI 3.0 document of the event
// stream (asyncapi.yaml), both embedded in the binary, and what is derived
// from them: the JSON form the API serves, the event catalogue `shop events`
// prints, the event schemas tests validate every published event against,
// and the compatibility check against the snapshot under compat/.
package api

import (
	_ "embed"
	"slices"
)

//go:embed openapi.yaml
var openapiYAML []byte

//go:embed asyncapi.yaml
var asyncapiYAML []byte

// OpenAPIYAML returns api/openapi.yaml as committed: the HTTP API's
// contract.
func OpenAPIYAML() []byte { return slices.Clone(openapiYAML) }

// AsyncAPIYAML returns api/asyncapi.yaml as committed: the event stream's
// contract.
func AsyncAPIYAML() []byte { return slices.Clone(asyncapiYAML) }
