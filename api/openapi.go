package api

import (
	"encoding/json"
	"fmt"
	"math"

	"go.yaml.in/yaml/v3"
)

// OpenAPIJSON returns api/openapi.yaml converted to JSON, the form most
// OpenAPI tools fetch. Keys are not kept in the document's order: JSON
// objects are unordered, and no consumer depends on it.
func OpenAPIJSON() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		return nil, fmt.Errorf("api: parse openapi.yaml: %w", err)
	}
	doc, err := jsonValue(doc, "$")
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("api: encode openapi.json: %w", err)
	}
	return out, nil
}

// jsonValue converts what yaml.v3 decodes into what encoding/json can
// encode. yaml.v3 already decodes mappings with string keys as
// map[string]any; a mapping with any other key (an unquoted 200, true) is
// map[any]any, whose key is written as JSON writes it: the text the YAML
// had, as a response code is named in OpenAPI's JSON form.
func jsonValue(v any, at string) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			c, err := jsonValue(e, at+"."+k)
			if err != nil {
				return nil, err
			}
			v[k] = c
		}
		return v, nil
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			key := fmt.Sprint(k)
			c, err := jsonValue(e, at+"."+key)
			if err != nil {
				return nil, err
			}
			m[key] = c
		}
		return m, nil
	case []any:
		for i, e := range v {
			c, err := jsonValue(e, fmt.Sprintf("%s[%d]", at, i))
			if err != nil {
				return nil, err
			}
			v[i] = c
		}
		return v, nil
	case float64:
		// YAML's .inf and .nan have no JSON form.
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("api: openapi.yaml: %s: %v has no JSON form", at, v)
		}
		return v, nil
	}
	return v, nil
}
