package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// asyncAPIURL is what the JSON Schema compiler calls api/asyncapi.yaml: the
// schemas' local $refs ("#/components/schemas/...") resolve inside it.
const asyncAPIURL = "urn:shop:api:asyncapi.yaml"

// Event is one event of the stream as api/asyncapi.yaml describes it: the
// catalogue that `shop events` prints.
type Event struct {
	// RoutingKey is the event's type and its routing key on shop.events.
	RoutingKey string
	// Summary says in a line what happened.
	Summary string
	// Groups are shop's consumer groups whose queues are bound to the
	// routing key, as the document's receive operations name them.
	Groups []string
	// SchemaVersion is the message's x-schema-version: the schema_version
	// every envelope of the event carries.
	SchemaVersion int
}

// Events returns every event of api/asyncapi.yaml, in the order of the
// document's channels.
func Events() ([]Event, error) {
	d, err := parseAsyncAPI(asyncapiYAML)
	if err != nil {
		return nil, err
	}
	msgs, err := d.messages()
	if err != nil {
		return nil, err
	}
	out := make([]Event, len(msgs))
	for i, m := range msgs {
		out[i] = m.Event
	}
	return out, nil
}

// Delivery is what a subscriber sees of a message besides its body: the
// AMQP properties and headers the contract speaks of. It mirrors the
// fields of an amqp091 Delivery, so that this package needs no AMQP client.
type Delivery struct {
	ContentType     string
	ContentEncoding string
	DeliveryMode    uint8 // 1 transient, 2 persistent
	MessageID       string
	Type            string
	Timestamp       time.Time
	CorrelationID   string
	AppID           string
	Headers         map[string]any
}

// ErrUnknownEvent is a routing key that api/asyncapi.yaml has no channel for.
var ErrUnknownEvent = errors.New("no such event in api/asyncapi.yaml")

// Violation is one way a message breaks its contract.
type Violation struct {
	// Where names what is wrong: "payload /data/items/0/quantity" (a JSON
	// pointer into the body), "property content_type" (an AMQP property) or
	// "headers /traceparent".
	Where string
	// Message says how.
	Message string
}

func (v Violation) String() string { return v.Where + ": " + v.Message }

// EventError is a message that breaks the contract of its routing key.
type EventError struct {
	RoutingKey string
	Violations []Violation
}

func (e *EventError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.String()
	}
	return "event " + e.RoutingKey + ": " + strings.Join(parts, "; ")
}

// EventSchemas are the compiled contracts of every event of
// api/asyncapi.yaml: load them once, validate any number of messages,
// from any number of goroutines.
type EventSchemas struct {
	keys  []string // in the document's order
	byKey map[string]*eventContract
}

// eventContract is what a message of one routing key must be.
type eventContract struct {
	Event
	payload      *jsonschema.Schema
	headers      *jsonschema.Schema // nil: the message has no headers
	contentType  string
	encoding     string // the AMQP content_encoding property
	messageType  string // the AMQP type property
	messageID    string // JSON pointer into the payload that message_id equals; "": unchecked
	deliveryMode uint8  // 0: unspecified
	timestamp    bool   // the timestamp property is set
}

// LoadEventSchemas parses api/asyncapi.yaml and compiles the payload and
// headers schema of each of its messages.
func LoadEventSchemas() (*EventSchemas, error) {
	return loadEventSchemas(asyncapiYAML)
}

func loadEventSchemas(raw []byte) (*EventSchemas, error) {
	d, err := parseAsyncAPI(raw)
	if err != nil {
		return nil, err
	}
	msgs, err := d.messages()
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat() // uuid, date-time are part of the contract, not hints
	if err := c.AddResource(asyncAPIURL, d.json); err != nil {
		return nil, fmt.Errorf("asyncapi: load schemas: %w", err)
	}
	s := &EventSchemas{byKey: make(map[string]*eventContract, len(msgs))}
	for _, m := range msgs {
		ec := &eventContract{Event: m.Event, contentType: m.contentType, encoding: m.encoding, messageType: m.messageType,
			messageID: m.messageID, deliveryMode: m.deliveryMode, timestamp: m.timestamp}
		if ec.payload, err = c.Compile(asyncAPIURL + m.payloadPtr); err != nil {
			return nil, fmt.Errorf("asyncapi: event %s: payload: %w", m.RoutingKey, err)
		}
		if m.headersPtr != "" {
			if ec.headers, err = c.Compile(asyncAPIURL + m.headersPtr); err != nil {
				return nil, fmt.Errorf("asyncapi: event %s: headers: %w", m.RoutingKey, err)
			}
		}
		s.keys = append(s.keys, m.RoutingKey)
		s.byKey[m.RoutingKey] = ec
	}
	return s, nil
}

// RoutingKeys returns the routing key of every event, in the document's
// order.
func (s *EventSchemas) RoutingKeys() []string { return slices.Clone(s.keys) }

// Validate checks body, a message published with routingKey, against the
// payload schema of that event: the envelope and its data. The error is
// an *EventError naming each violation's JSON pointer, or wraps
// ErrUnknownEvent.
func (s *EventSchemas) Validate(routingKey string, body []byte) error {
	ec, ok := s.byKey[routingKey]
	if !ok {
		return fmt.Errorf("event %q: %w", routingKey, ErrUnknownEvent)
	}
	_, violations := ec.checkPayload(body)
	return ec.verdict(violations)
}

// ValidateDelivery checks a whole message: its body as Validate does, its
// AMQP properties against the message's and its receive operation's AMQP
// bindings (content type, delivery mode, type, message id, timestamp; a
// property the contract does not name must be unset), and its headers
// against the message's headers schema.
func (s *EventSchemas) ValidateDelivery(routingKey string, d Delivery, body []byte) error {
	ec, ok := s.byKey[routingKey]
	if !ok {
		return fmt.Errorf("event %q: %w", routingKey, ErrUnknownEvent)
	}
	payload, violations := ec.checkPayload(body)
	violations = append(violations, ec.checkProperties(d, payload)...)
	violations = append(violations, ec.checkHeaders(d.Headers)...)
	return ec.verdict(violations)
}

func (ec *eventContract) verdict(violations []Violation) error {
	if len(violations) == 0 {
		return nil
	}
	return &EventError{RoutingKey: ec.RoutingKey, Violations: violations}
}

// checkPayload validates body and returns it decoded (nil when it is not
// JSON).
func (ec *eventContract) checkPayload(body []byte) (any, []Violation) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return nil, []Violation{{Where: "payload", Message: "not JSON: " + err.Error()}}
	}
	return doc, schemaViolations("payload", ec.payload.Validate(doc))
}

func (ec *eventContract) checkProperties(d Delivery, payload any) []Violation {
	var out []Violation
	bad := func(property, format string, args ...any) {
		out = append(out, Violation{Where: "property " + property, Message: fmt.Sprintf(format, args...)})
	}
	if d.ContentType != ec.contentType {
		bad("content_type", "%q, want %q", d.ContentType, ec.contentType)
	}
	if d.ContentEncoding != ec.encoding {
		bad("content_encoding", "%q, want %q", d.ContentEncoding, ec.encoding)
	}
	if ec.deliveryMode != 0 && d.DeliveryMode != ec.deliveryMode {
		bad("delivery_mode", "%d, want %d", d.DeliveryMode, ec.deliveryMode)
	}
	if d.Type != ec.messageType {
		bad("type", "%q, want %q", d.Type, ec.messageType)
	}
	if ec.messageID != "" && payload != nil {
		if want, ok := jsonPointerValue(payload, ec.messageID).(string); !ok || d.MessageID != want {
			bad("message_id", "%q, want the payload's %s (%q)", d.MessageID, ec.messageID, want)
		}
	}
	switch {
	case ec.timestamp && d.Timestamp.IsZero():
		bad("timestamp", "unset, want the time the event was committed")
	case !ec.timestamp && !d.Timestamp.IsZero():
		bad("timestamp", "set, but the contract does not name it")
	}
	// The contract names no other property: one set is undocumented.
	if d.CorrelationID != "" {
		bad("correlation_id", "%q set, but the contract does not name it", d.CorrelationID)
	}
	if d.AppID != "" {
		bad("app_id", "%q set, but the contract does not name it", d.AppID)
	}
	return out
}

func (ec *eventContract) checkHeaders(headers map[string]any) []Violation {
	if ec.headers == nil {
		if len(headers) > 0 {
			return []Violation{{Where: "headers", Message: fmt.Sprintf("%v set, but the contract names none", slices.Sorted(maps.Keys(headers)))}}
		}
		return nil
	}
	if headers == nil {
		headers = map[string]any{}
	}
	// Through JSON, so that AMQP table values meet the schema as JSON values.
	raw, err := json.Marshal(headers)
	if err != nil {
		return []Violation{{Where: "headers", Message: "not representable as JSON: " + err.Error()}}
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return []Violation{{Where: "headers", Message: err.Error()}}
	}
	return schemaViolations("headers", ec.headers.Validate(doc))
}

// schemaViolations flattens a validation error into its leaves, each with
// the JSON pointer of the value it is about.
func schemaViolations(what string, err error) []Violation {
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []Violation{{Where: what, Message: err.Error()}}
	}
	var out []Violation
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		ptr := "/" + strings.Join(escapeTokens(e.InstanceLocation), "/")
		msg := e.Error() // "at '/data/x': what is wrong"
		if rest, ok := strings.CutPrefix(msg, "at '"); ok {
			if _, m, ok := strings.Cut(rest, "': "); ok {
				msg = m
			}
		}
		out = append(out, Violation{Where: what + " " + ptr, Message: msg})
	}
	walk(ve)
	return out
}

func escapeTokens(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		out[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1")
	}
	return out
}

// jsonPointerValue returns the value at ptr ("/id") in doc, or nil.
func jsonPointerValue(doc any, ptr string) any {
	if ptr == "" {
		return doc
	}
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch n := doc.(type) {
		case map[string]any:
			doc = n[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(n) {
				return nil
			}
			doc = n[i]
		default:
			return nil
		}
	}
	return doc
}

// asyncAPIDoc is api/asyncapi.yaml parsed: as JSON values for the schema
// compiler and for lookups, with the order of its channels, which a plain
// map forgets.
type asyncAPIDoc struct {
	json     any // map[string]any, numbers as json.Number
	channels []string
}

// asyncMessage is what the catalogue and the validator read of one
// channel's message.
type asyncMessage struct {
	Event
	payloadPtr, headersPtr string // "#/components/messages/x/payload"
	contentType            string
	encoding               string
	messageType            string
	messageID              string
	deliveryMode           uint8
	timestamp              bool
}

func parseAsyncAPI(raw []byte) (*asyncAPIDoc, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, fmt.Errorf("asyncapi: parse: %w", err)
	}
	var tree any
	if err := root.Decode(&tree); err != nil {
		return nil, fmt.Errorf("asyncapi: parse: %w", err)
	}
	// Through JSON: the schema compiler wants JSON values (json.Number),
	// and a mapping with a key that is no string fails here.
	buf, err := json.Marshal(tree)
	if err != nil {
		return nil, fmt.Errorf("asyncapi: not representable as JSON: %w", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(buf))
	if err != nil {
		return nil, fmt.Errorf("asyncapi: %w", err)
	}
	if v, _ := jsonPointerValue(doc, "/asyncapi").(string); !strings.HasPrefix(v, "3.") {
		return nil, fmt.Errorf("asyncapi: version %q, want 3.x", v)
	}
	d := &asyncAPIDoc{json: doc}
	if len(root.Content) == 1 && root.Content[0].Kind == yaml.MappingNode {
		top := root.Content[0].Content
		for i := 0; i+1 < len(top); i += 2 {
			if top[i].Value == "channels" && top[i+1].Kind == yaml.MappingNode {
				for j := 0; j < len(top[i+1].Content); j += 2 {
					d.channels = append(d.channels, top[i+1].Content[j].Value)
				}
			}
		}
	}
	if len(d.channels) == 0 {
		return nil, errors.New("asyncapi: no channels")
	}
	return d, nil
}

// object returns the object at the JSON pointer ptr ("#/a/b"), following
// local $refs, and the pointer of where it is.
func (d *asyncAPIDoc) object(ptr string) (map[string]any, string, error) {
	for range 32 {
		m, ok := jsonPointerValue(d.json, strings.TrimPrefix(ptr, "#")).(map[string]any)
		if !ok {
			return nil, "", fmt.Errorf("asyncapi: %s is not an object", ptr)
		}
		ref, isRef := m["$ref"].(string)
		if !isRef {
			return m, ptr, nil
		}
		if !strings.HasPrefix(ref, "#/") {
			return nil, "", fmt.Errorf("asyncapi: %s: $ref %q is not local", ptr, ref)
		}
		ptr = ref
	}
	return nil, "", fmt.Errorf("asyncapi: %s: $refs loop", ptr)
}

func pointerTo(parent string, keys ...string) string {
	return parent + "/" + strings.Join(escapeTokens(keys), "/")
}

// messages reads each channel's one message, and the groups of the receive
// operations on the channel, in the order of the channels.
func (d *asyncAPIDoc) messages() ([]asyncMessage, error) {
	groups, err := d.receivers()
	if err != nil {
		return nil, err
	}
	var out []asyncMessage
	seen := map[string]bool{}
	for _, name := range d.channels {
		ch, chPtr, err := d.object(pointerTo("#/channels", name))
		if err != nil {
			return nil, err
		}
		key, _ := ch["address"].(string)
		msgs, _ := ch["messages"].(map[string]any)
		if key == "" || len(msgs) != 1 {
			return nil, fmt.Errorf("asyncapi: channel %s: want an address and exactly one message", name)
		}
		if seen[key] {
			return nil, fmt.Errorf("asyncapi: routing key %s has two channels", key)
		}
		seen[key] = true
		m := asyncMessage{Event: Event{RoutingKey: key, Groups: groups[chPtr]}}
		msg, msgPtr, err := d.object(pointerTo(chPtr, "messages", slices.Collect(maps.Keys(msgs))[0]))
		if err != nil {
			return nil, err
		}
		if err := m.read(d, key, msg, msgPtr); err != nil {
			return nil, err
		}
		if err := m.readOperationBindings(d, chPtr); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// read reads a message of channel key: its name, summary, schema version,
// content type, AMQP binding, payload and headers.
func (m *asyncMessage) read(d *asyncAPIDoc, key string, msg map[string]any, msgPtr string) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("asyncapi: event %s (%s): %s", key, msgPtr, fmt.Sprintf(format, args...))
	}
	if name, _ := msg["name"].(string); name != key {
		return fail("message name %q, want the routing key", name)
	}
	m.Summary, _ = msg["summary"].(string)
	if m.Summary == "" || strings.Contains(m.Summary, "\n") {
		return fail("want a one-line summary")
	}
	v, err := strconv.Atoi(fmt.Sprint(msg["x-schema-version"]))
	if err != nil || v < 1 {
		return fail("x-schema-version %v, want a positive integer", msg["x-schema-version"])
	}
	m.SchemaVersion = v
	m.contentType, _ = msg["contentType"].(string)
	if m.contentType == "" {
		m.contentType, _ = jsonPointerValue(d.json, "/defaultContentType").(string)
	}
	if msg["bindings"] != nil {
		bindings, _, err := d.object(msgPtr + "/bindings")
		if err != nil {
			return err
		}
		amqp, _ := bindings["amqp"].(map[string]any)
		m.messageType, _ = amqp["messageType"].(string)
		m.encoding, _ = amqp["contentEncoding"].(string)
		if expr, ok := amqp["x-messageId"].(string); ok {
			ptr, ok := strings.CutPrefix(expr, "$message.payload#")
			if !ok {
				return fail("x-messageId %q, want $message.payload#/pointer", expr)
			}
			m.messageID = ptr
		}
	}
	if m.messageType != key {
		return fail("AMQP messageType %q, want the routing key", m.messageType)
	}
	payload, payloadPtr, err := d.object(msgPtr + "/payload")
	if err != nil {
		return err
	}
	m.payloadPtr = payloadPtr
	if format, ok := payload["schemaFormat"].(string); ok { // a multi-format schema object
		if !strings.Contains(format, "schema+json") && !strings.Contains(format, "schema+yaml") && !strings.Contains(format, "aai.asyncapi") {
			return fail("payload schema format %q is not JSON Schema", format)
		}
		m.payloadPtr += "/schema"
	}
	if msg["headers"] != nil {
		m.headersPtr = msgPtr + "/headers"
	}
	return nil
}

// readOperationBindings reads the AMQP bindings of the receive operations
// on the channel at chPtr: what the relay sets on every message.
func (m *asyncMessage) readOperationBindings(d *asyncAPIDoc, chPtr string) error {
	ops, _ := jsonPointerValue(d.json, "/operations").(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(ops)) {
		op, opPtr, err := d.object(pointerTo("#/operations", name))
		if err != nil {
			return err
		}
		if _, ptr, err := d.object(opPtr + "/channel"); err != nil || ptr != chPtr || op["bindings"] == nil {
			continue
		}
		bindings, _, err := d.object(opPtr + "/bindings")
		if err != nil {
			return err
		}
		amqp, _ := bindings["amqp"].(map[string]any)
		if mode, ok := amqp["deliveryMode"].(json.Number); ok {
			n, err := strconv.ParseUint(mode.String(), 10, 8)
			if err != nil {
				return fmt.Errorf("asyncapi: operation %s: deliveryMode %s", name, mode)
			}
			m.deliveryMode = uint8(n)
		}
		if ts, ok := amqp["timestamp"].(bool); ok {
			m.timestamp = m.timestamp || ts
		}
	}
	return nil
}

// receivers returns, for each channel (by its pointer), the consumer
// groups that its receive operations name in x-consumer-groups.
func (d *asyncAPIDoc) receivers() (map[string][]string, error) {
	out := map[string][]string{}
	ops, _ := jsonPointerValue(d.json, "/operations").(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(ops)) {
		op, opPtr, err := d.object(pointerTo("#/operations", name))
		if err != nil {
			return nil, err
		}
		if op["action"] != "receive" {
			continue
		}
		_, chPtr, err := d.object(opPtr + "/channel")
		if err != nil {
			return nil, fmt.Errorf("asyncapi: operation %s: %w", name, err)
		}
		list, _ := op["x-consumer-groups"].([]any)
		for _, g := range list {
			s, ok := g.(string)
			if !ok || s == "" {
				return nil, fmt.Errorf("asyncapi: operation %s: x-consumer-groups holds %v, want names", name, g)
			}
			if !slices.Contains(out[chPtr], s) {
				out[chPtr] = append(out[chPtr], s)
			}
		}
	}
	return out, nil
}
