package testenv

import (
	"fmt"
	"slices"
)

// LabelSelector is a Kubernetes label selector, as manifests spell it
// (YAML or JSON).
type LabelSelector struct {
	MatchLabels      map[string]string `json:"matchLabels" yaml:"matchLabels"`
	MatchExpressions []struct {
		Key      string   `json:"key" yaml:"key"`
		Operator string   `json:"operator" yaml:"operator"`
		Values   []string `json:"values" yaml:"values"`
	} `json:"matchExpressions" yaml:"matchExpressions"`
}

// Selects reports whether s selects a pod of these labels, as Kubernetes
// would; an empty selector selects nothing here (one that selects every pod
// is a mistake in a manifest). An operator Kubernetes does not know is an
// error.
func (s LabelSelector) Selects(labels map[string]string) (bool, error) {
	if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
		return false, nil
	}
	for k, v := range s.MatchLabels {
		if labels[k] != v {
			return false, nil
		}
	}
	for _, e := range s.MatchExpressions {
		v, has := labels[e.Key]
		var ok bool
		switch e.Operator {
		case "In":
			ok = has && slices.Contains(e.Values, v)
		case "NotIn":
			ok = !has || !slices.Contains(e.Values, v)
		case "Exists":
			ok = has
		case "DoesNotExist":
			ok = !has
		default:
			return false, fmt.Errorf("selector operator %q is not one of Kubernetes's", e.Operator)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}
