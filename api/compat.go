package api

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A Break is a change between two versions of a contract that breaks a
// client or a subscriber written against the older one.
type Break struct {
	// Where names the operation or event and the JSON path in its schema:
	// "POST /v1/orders request body: items[].quantity".
	Where string
	// What says what changed: "property removed", "type narrowed", ...
	What string
}

func (b Break) String() string { return b.Where + ": " + b.What }

// Compat compares a contract's snapshot (the last release, under
// api/compat/) with its current version and returns every change that
// breaks a client or subscriber written against the snapshot and is not
// announced.
//
// Data that shop writes (response bodies, events) is read by others: a
// change breaks a reader when it removes a field or makes it optional, or
// widens what a field may hold (a new type, a new enum value, a looser
// bound). Data that shop reads (request bodies, parameters) is written by
// others: a change breaks a writer when it adds a required field, removes a
// field it still sends (on a closed object), or narrows what a field may
// hold. Adding an optional field to what shop writes breaks nobody:
// readers must ignore fields they do not know (docs/clients.md says so).
//
// A change is announced when its version is bumped and the changelog says
// so: for an event, its message's schema version is higher and the
// changelog has a line naming the routing key and "schema_version N"; for
// the HTTP API, info.version has a higher major and the changelog has a
// line "HTTP API X.Y.Z". changelog is the README's Changelog section (or
// the whole README: only lines under a "## Changelog" heading count).
func Compat(oldOpenAPI, newOpenAPI, oldAsyncAPI, newAsyncAPI, readme []byte) ([]Break, error) {
	entries := changelog(readme)
	var out []Break
	httpBreaks, err := compatOpenAPI(oldOpenAPI, newOpenAPI, entries)
	if err != nil {
		return nil, err
	}
	out = append(out, httpBreaks...)
	eventBreaks, err := compatAsyncAPI(oldAsyncAPI, newAsyncAPI, entries)
	if err != nil {
		return nil, err
	}
	return append(out, eventBreaks...), nil
}

// changelog returns the lines under the README's "## Changelog" heading.
func changelog(readme []byte) []string {
	var lines []string
	in := false
	sc := bufio.NewScanner(bytes.NewReader(readme))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = strings.EqualFold(strings.TrimSpace(line[3:]), "changelog")
			continue
		}
		if in && strings.TrimSpace(line) != "" {
			lines = append(lines, line)
		}
	}
	return lines
}

// announced reports whether a changelog line contains every one of words.
func announced(entries []string, words ...string) bool {
	for _, line := range entries {
		if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(line, w) }) {
			return true
		}
	}
	return false
}

// doc is a parsed contract with its $refs resolvable.
type doc struct {
	root map[string]any
}

func parseDoc(name string, raw []byte) (doc, error) {
	var root map[string]any
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return doc{}, fmt.Errorf("parse %s: %w", name, err)
	}
	if root == nil {
		return doc{}, fmt.Errorf("parse %s: empty document", name)
	}
	return doc{root: root}, nil
}

// deref follows node's local $ref (a JSON pointer into the document), with
// the sibling keys of the $ref laid over what it points to, as JSON Schema
// 2020-12 and OpenAPI 3.1 read them.
func (d doc) deref(node any) map[string]any {
	m, _ := node.(map[string]any)
	for depth := 0; m != nil && depth < 32; depth++ {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		target, _ := d.pointer(ref).(map[string]any)
		if target == nil {
			return nil
		}
		merged := maps.Clone(target)
		for k, v := range m {
			if k != "$ref" {
				merged[k] = v
			}
		}
		m = merged
	}
	return m
}

// pointer resolves "#/a/b~1c" in the document.
func (d doc) pointer(ref string) any {
	if !strings.HasPrefix(ref, "#/") {
		return nil
	}
	var node any = d.root
	for _, tok := range strings.Split(ref[2:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch n := node.(type) {
		case map[string]any:
			node = n[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(n) {
				return nil
			}
			node = n[i]
		default:
			return nil
		}
	}
	return node
}

// direction says who writes the data a schema describes.
type direction int

const (
	// readBy: shop writes it (responses, events); others read it.
	readBy direction = iota
	// writtenBy: others write it (requests); shop reads it.
	writtenBy
)

// schemaDiff compares an old and a new schema of data read or written by
// others and appends the breaking changes.
type schemaDiff struct {
	oldDoc, newDoc doc
	dir            direction
	out            []Break
	where          string
}

func (s *schemaDiff) add(path, what string) {
	if path == "" {
		path = "(root)"
	}
	s.out = append(s.out, Break{Where: s.where + ": " + path, What: what})
}

func (s *schemaDiff) compare(path string, oldNode, newNode any, depth int) {
	if depth > 24 {
		return // a recursive schema: its deeper levels repeat what was compared
	}
	o, n := s.oldDoc.deref(oldNode), s.newDoc.deref(newNode)
	if o == nil {
		return // the old schema allowed anything
	}
	if n == nil {
		if s.dir == readBy {
			s.add(path, "schema removed: anything may now be sent")
		}
		return
	}
	for _, kw := range []string{"oneOf", "anyOf", "allOf", "not", "if", "then", "else"} {
		if !reflect.DeepEqual(o[kw], n[kw]) {
			s.add(path, kw+" changed; such changes are not checked automatically, so they must be announced")
		}
	}
	s.types(path, o, n)
	s.enums(path, o, n)
	s.bounds(path, o, n)
	s.object(path, o, n, depth)
	if o["items"] != nil || n["items"] != nil {
		s.compare(path+"[]", o["items"], n["items"], depth+1)
	}
}

// typeSet is a schema's "type" as a set; integer is in number's set.
func typeSet(m map[string]any) map[string]bool {
	set := map[string]bool{}
	switch t := m["type"].(type) {
	case string:
		set[t] = true
	case []any:
		for _, v := range t {
			if s, ok := v.(string); ok {
				set[s] = true
			}
		}
	}
	return set
}

// within reports whether every type of a is allowed by b.
func within(a, b map[string]bool) bool {
	if len(b) == 0 {
		return true // b allows any type
	}
	if len(a) == 0 {
		return false
	}
	for t := range a {
		if !b[t] && !(t == "integer" && b["number"]) {
			return false
		}
	}
	return true
}

func (s *schemaDiff) types(path string, o, n map[string]any) {
	ot, nt := typeSet(o), typeSet(n)
	switch {
	case s.dir == readBy && !within(nt, ot):
		s.add(path, fmt.Sprintf("type widened from %v to %v", keys(ot), keys(nt)))
	case s.dir == writtenBy && !within(ot, nt):
		s.add(path, fmt.Sprintf("type narrowed from %v to %v", keys(ot), keys(nt)))
	}
}

func keys(set map[string]bool) []string {
	out := slices.Collect(maps.Keys(set))
	slices.Sort(out)
	if len(out) == 0 {
		return []string{"any"}
	}
	return out
}

// values is a schema's enum, or its const as a one-value enum; nil: any.
func values(m map[string]any) []any {
	if c, ok := m["const"]; ok {
		return []any{c}
	}
	if e, ok := m["enum"].([]any); ok {
		return e
	}
	return nil
}

// subset reports whether every value of a is in b (b nil: any value).
func subset(a, b []any) bool {
	if b == nil {
		return true
	}
	if a == nil {
		return false
	}
	for _, v := range a {
		if !slices.ContainsFunc(b, func(w any) bool { return reflect.DeepEqual(v, w) }) {
			return false
		}
	}
	return true
}

func (s *schemaDiff) enums(path string, o, n map[string]any) {
	ov, nv := values(o), values(n)
	switch {
	case s.dir == readBy && !subset(nv, ov):
		s.add(path, fmt.Sprintf("values widened from %v to %v", ov, orAny(nv)))
	case s.dir == writtenBy && !subset(ov, nv):
		s.add(path, fmt.Sprintf("values narrowed from %v to %v", orAny(ov), nv))
	}
}

func orAny(v []any) any {
	if v == nil {
		return "any"
	}
	return v
}

// bounds compares the numeric and string limits and the format and pattern.
func (s *schemaDiff) bounds(path string, o, n map[string]any) {
	// lower bounds: a higher one narrows, a lower (or none) widens.
	for _, kw := range []string{"minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"} {
		s.bound(path, kw, o, n, +1)
	}
	for _, kw := range []string{"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"} {
		s.bound(path, kw, o, n, -1)
	}
	for _, kw := range []string{"format", "pattern"} {
		ov, oHas := o[kw]
		nv, nHas := n[kw]
		switch {
		case oHas && nHas && !reflect.DeepEqual(ov, nv):
			s.add(path, fmt.Sprintf("%s changed from %v to %v", kw, ov, nv))
		case s.dir == readBy && oHas && !nHas:
			s.add(path, fmt.Sprintf("%s %v dropped", kw, ov))
		case s.dir == writtenBy && !oHas && nHas:
			s.add(path, fmt.Sprintf("%s %v added", kw, nv))
		}
	}
}

// bound compares one limit; sign is +1 for a lower bound, -1 for an upper.
func (s *schemaDiff) bound(path, kw string, o, n map[string]any, sign float64) {
	ov, oHas := number(o[kw])
	nv, nHas := number(n[kw])
	tighter := nHas && (!oHas || sign*(nv-ov) > 0) // the new one allows less
	looser := oHas && (!nHas || sign*(nv-ov) < 0)  // the new one allows more
	switch {
	case s.dir == readBy && looser:
		s.add(path, fmt.Sprintf("%s loosened from %v to %s", kw, o[kw], orNone(n[kw])))
	case s.dir == writtenBy && tighter:
		s.add(path, fmt.Sprintf("%s tightened from %s to %v", kw, orNone(o[kw]), n[kw]))
	}
}

func orNone(v any) string {
	if v == nil {
		return "none"
	}
	return fmt.Sprint(v)
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

func required(m map[string]any) map[string]bool {
	set := map[string]bool{}
	if r, ok := m["required"].([]any); ok {
		for _, v := range r {
			if s, ok := v.(string); ok {
				set[s] = true
			}
		}
	}
	return set
}

func (s *schemaDiff) object(path string, o, n map[string]any, depth int) {
	op, _ := o["properties"].(map[string]any)
	np, _ := n["properties"].(map[string]any)
	oreq, nreq := required(o), required(n)
	closed := n["additionalProperties"] == false
	for _, name := range slices.Sorted(maps.Keys(op)) {
		child := join(path, name)
		if _, ok := np[name]; !ok {
			switch {
			case s.dir == readBy:
				s.add(child, "property removed")
			case closed:
				s.add(child, "property removed from a closed object: clients that send it are refused")
			}
			continue
		}
		if s.dir == readBy && oreq[name] && !nreq[name] {
			s.add(child, "no longer required: readers may not find it")
		}
		s.compare(child, op[name], np[name], depth+1)
	}
	if s.dir == writtenBy {
		for _, name := range slices.Sorted(maps.Keys(nreq)) {
			if !oreq[name] {
				s.add(join(path, name), "newly required: clients that do not send it are refused")
			}
		}
	}
	if s.dir == writtenBy && o["additionalProperties"] != false && closed {
		s.add(path, "object closed (additionalProperties: false): clients sending other fields are refused")
	}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// compatOpenAPI compares two OpenAPI documents.
func compatOpenAPI(oldRaw, newRaw []byte, entries []string) ([]Break, error) {
	od, err := parseDoc("old openapi", oldRaw)
	if err != nil {
		return nil, err
	}
	nd, err := parseDoc("new openapi", newRaw)
	if err != nil {
		return nil, err
	}
	oldVersion, newVersion := infoVersion(od), infoVersion(nd)
	if major(newVersion) > major(oldVersion) && announced(entries, "HTTP API "+newVersion) {
		return nil, nil
	}
	var out []Break
	oldPaths, _ := od.root["paths"].(map[string]any)
	newPaths, _ := nd.root["paths"].(map[string]any)
	for _, p := range slices.Sorted(maps.Keys(oldPaths)) {
		oldItem, newItem := od.deref(oldPaths[p]), nd.deref(newPaths[p])
		for _, m := range methods {
			oldOp := od.deref(oldItem[m])
			if oldOp == nil {
				continue
			}
			where := strings.ToUpper(m) + " " + p
			newOp := nd.deref(newItem[m])
			if newOp == nil {
				out = append(out, Break{Where: where, What: "operation removed"})
				continue
			}
			out = append(out, compareOperation(od, nd, where, oldItem, newItem, oldOp, newOp)...)
		}
	}
	if len(out) > 0 {
		hint := fmt.Sprintf("announce it: raise info.version's major (now %s) and add a line \"HTTP API <new version>: ...\" under the README's ## Changelog", newVersion)
		for i := range out {
			out[i].What += " (" + hint + ")"
		}
	}
	return out, nil
}

func compareOperation(od, nd doc, where string, oldItem, newItem, oldOp, newOp map[string]any) []Break {
	var out []Break
	// Parameters: a new required one, or a narrowed one, breaks callers.
	oldParams, newParams := params(od, oldItem, oldOp), params(nd, newItem, newOp)
	for _, key := range slices.Sorted(maps.Keys(newParams)) {
		np := newParams[key]
		op, had := oldParams[key]
		if !had {
			if np["required"] == true {
				out = append(out, Break{Where: where + " parameter " + key, What: "new required parameter"})
			}
			continue
		}
		if np["required"] == true && op["required"] != true {
			out = append(out, Break{Where: where + " parameter " + key, What: "newly required"})
		}
		d := &schemaDiff{oldDoc: od, newDoc: nd, dir: writtenBy, where: where + " parameter " + key}
		d.compare("", op["schema"], np["schema"], 0)
		out = append(out, d.out...)
	}
	// The request body is written by clients.
	oldBody, newBody := od.deref(oldOp["requestBody"]), nd.deref(newOp["requestBody"])
	if newBody != nil && newBody["required"] == true && (oldBody == nil || oldBody["required"] != true) {
		out = append(out, Break{Where: where + " request body", What: "newly required"})
	}
	for mt, oldSchema := range schemas(od, oldBody) {
		newSchemas := schemas(nd, newBody)
		newSchema, ok := newSchemas[mt]
		if !ok {
			out = append(out, Break{Where: where + " request body", What: "media type " + mt + " no longer accepted"})
			continue
		}
		d := &schemaDiff{oldDoc: od, newDoc: nd, dir: writtenBy, where: where + " request body (" + mt + ")"}
		d.compare("", oldSchema, newSchema, 0)
		out = append(out, d.out...)
	}
	// Responses are read by clients.
	oldResponses, _ := oldOp["responses"].(map[string]any)
	newResponses, _ := newOp["responses"].(map[string]any)
	for _, status := range slices.Sorted(maps.Keys(oldResponses)) {
		oldRes, newRes := od.deref(oldResponses[status]), nd.deref(newResponses[status])
		if newRes == nil {
			continue // a status no longer answered breaks no reader of the others
		}
		newSchemas := schemas(nd, newRes)
		for mt, oldSchema := range schemas(od, oldRes) {
			newSchema, ok := newSchemas[mt]
			if !ok {
				out = append(out, Break{Where: where + " response " + status, What: "media type " + mt + " no longer answered"})
				continue
			}
			d := &schemaDiff{oldDoc: od, newDoc: nd, dir: readBy, where: where + " response " + status + " (" + mt + ")"}
			d.compare("", oldSchema, newSchema, 0)
			out = append(out, d.out...)
		}
	}
	return out
}

// params returns an operation's parameters (the path item's, overridden by
// the operation's), keyed "in:name".
func params(d doc, item, op map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, owner := range []map[string]any{item, op} {
		list, _ := owner["parameters"].([]any)
		for _, p := range list {
			if pm := d.deref(p); pm != nil {
				out[fmt.Sprint(pm["in"])+":"+fmt.Sprint(pm["name"])] = pm
			}
		}
	}
	return out
}

// schemas returns the schema of each media type of a request body or
// response.
func schemas(d doc, owner map[string]any) map[string]any {
	out := map[string]any{}
	content, _ := owner["content"].(map[string]any)
	for mt, v := range content {
		if m := d.deref(v); m != nil {
			out[mt] = m["schema"]
		}
	}
	return out
}

func infoVersion(d doc) string {
	info, _ := d.root["info"].(map[string]any)
	return fmt.Sprint(info["version"])
}

var majorRE = regexp.MustCompile(`^v?(\d+)`)

func major(version string) int {
	m := majorRE.FindStringSubmatch(version)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// compatAsyncAPI compares two AsyncAPI documents, event by event.
func compatAsyncAPI(oldRaw, newRaw []byte, entries []string) ([]Break, error) {
	od, err := parseDoc("old asyncapi", oldRaw)
	if err != nil {
		return nil, err
	}
	nd, err := parseDoc("new asyncapi", newRaw)
	if err != nil {
		return nil, err
	}
	oldMessages, newMessages := messages(od), messages(nd)
	var out []Break
	for _, key := range slices.Sorted(maps.Keys(oldMessages)) {
		om := oldMessages[key]
		nm, ok := newMessages[key]
		if !ok {
			out = append(out, Break{Where: "event " + key, What: "event removed: subscribers bound to it get nothing"})
			continue
		}
		ov, nv := schemaVersion(od, om), schemaVersion(nd, nm)
		if nv > ov && announced(entries, "`"+key+"`", "schema_version "+strconv.Itoa(nv)) {
			continue
		}
		d := &schemaDiff{oldDoc: od, newDoc: nd, dir: readBy, where: "event " + key}
		d.compare("", payload(od, om), payload(nd, nm), 0)
		for _, b := range d.out {
			b.What += fmt.Sprintf(" (announce it: raise its schema_version above %d and add a line naming `%s` and \"schema_version %d\" under the README's ## Changelog)", ov, key, ov+1)
			out = append(out, b)
		}
	}
	return out, nil
}

// messages returns each channel's messages keyed by the channel's address
// (the routing key), or by the message's name when the channel has none.
func messages(d doc) map[string]map[string]any {
	out := map[string]map[string]any{}
	channels, _ := d.root["channels"].(map[string]any)
	for name, c := range channels {
		ch := d.deref(c)
		key, _ := ch["address"].(string)
		if key == "" {
			key = name
		}
		msgs, _ := ch["messages"].(map[string]any)
		for msgName, m := range msgs {
			msg := d.deref(m)
			if msg == nil {
				continue
			}
			k := key
			if len(msgs) > 1 {
				k = key + "#" + msgName
			}
			out[k] = msg
		}
	}
	return out
}

// payload is a message's payload schema, unwrapped from a multi-format
// schema object when it is one.
func payload(d doc, msg map[string]any) any {
	p := d.deref(msg["payload"])
	if inner, ok := p["schema"]; ok && p["schemaFormat"] != nil {
		return inner
	}
	return p
}

// schemaVersion is a message's x-schema-version, else the const of its
// payload's schema_version.
func schemaVersion(d doc, msg map[string]any) int {
	if v, ok := number(msg["x-schema-version"]); ok {
		return int(v)
	}
	p := d.deref(payload(d, msg))
	props, _ := p["properties"].(map[string]any)
	if v, ok := number(d.deref(props["schema_version"])["const"]); ok {
		return int(v)
	}
	return 0
}
