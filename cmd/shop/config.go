package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/internal/telemetry"
)

// The configuration of every process is declared once, here: each section
// is a struct whose fields name their variable (env), its default
// (envDefault) and what it is for (help). github.com/caarlos0/env parses
// them (it reads an environment given as a map, so run stays testable with
// its own getenv, and it says which variable a bad value came from); `shop
// help` and `shop CMD --help` print them from the same tags. A process's
// config is a struct of the sections it uses. Unset (or empty) means the
// default; any value given, 0 included, is taken as said.

type envSection struct {
	Env string `env:"SHOP_ENV" envDefault:"prod" help:"prod, or dev: development defaults, such as a random JWT secret per process when the API listens on loopback only (shop run defaults to dev)"`
}

func (s envSection) validate() error {
	if s.Env != "prod" && s.Env != "dev" {
		return fmt.Errorf("SHOP_ENV must be prod or dev, not %q", s.Env)
	}
	return nil
}

type logSection struct {
	Level  string `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`
	Format string `env:"LOG_FORMAT" envDefault:"auto" help:"text, json, or auto: text when stderr is a terminal, JSON lines otherwise"`
}

func (s logSection) validate() error {
	var errs []error
	if _, err := parseLevel(s.Level); err != nil {
		errs = append(errs, err)
	}
	if s.Format != "auto" && s.Format != "text" && s.Format != "json" {
		errs = append(errs, fmt.Errorf("LOG_FORMAT must be text, json or auto, not %q", s.Format))
	}
	return errors.Join(errs...)
}

type postgresSection struct {
	URL string `env:"DATABASE_URL" envDefault:"postgres://postgres@127.0.0.1:5432/shop?sslmode=disable" help:"the Postgres database; shop migrate creates it if it is missing"`
}

type poolSection struct {
	MaxConns int `env:"DB_MAX_CONNS" envDefault:"16" help:"the API's Postgres connections (1 to 1000)"`
}

func (s poolSection) validate() error {
	return inRange("DB_MAX_CONNS", s.MaxConns, 1, 1000)
}

type redisSection struct {
	URL    string `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0" help:"the Redis of the read models and the limits: redis://[[user]:password@]host:port/db (rediss:// for TLS), or redis-sentinel://[[user]:password@]host:26379,host2:26379/db?master=NAME (rediss-sentinel:// for TLS) to follow the master that Redis Sentinels name through failovers; the password is the master's, sentinel_password=P (and sentinel_username=U) the Sentinels' own"`
	Prefix string `env:"REDIS_PREFIX" envDefault:"shop:" help:"starts every Redis key, so that several systems can share one Redis"`
}

func (s redisSection) validate() error {
	_, err := parseRedisURL(s.URL)
	return err
}

type amqpSection struct {
	URL        string `env:"AMQP_URL" envDefault:"amqp://guest:guest@127.0.0.1:5672/" help:"RabbitMQ; a comma-separated list of the nodes of a cluster, tried in turn (same user, password and vhost)"`
	QuorumSize int    `env:"AMQP_QUORUM_SIZE" envDefault:"0" help:"nodes each queue is replicated on when shop declares it (x-quorum-initial-group-size); 0: the broker's default"`
}

func (s amqpSection) validate() error {
	return inRange("AMQP_QUORUM_SIZE", s.QuorumSize, 0, 99)
}

type opsSection struct {
	MetricsAddr string `env:"METRICS_ADDR" envDefault:":9090" help:"where /healthz, /readyz and /metrics are served"`
	// Off by default: a profile tells much about the process and costs CPU
	// while it runs.
	Profiles bool `env:"PPROF" envDefault:"false" help:"1 or true: METRICS_ADDR also serves Go's profiles under /debug/pprof/ (go tool pprof http://HOST:9090/debug/pprof/profile); never the API's port"`
}

// otelSection is OpenTelemetry's standard variables, as far as shop reads
// them; the SDK reads its others itself (OTEL_BSP_*, say).
type otelSection struct {
	Endpoint       string `env:"OTEL_EXPORTER_OTLP_ENDPOINT" help:"the OTLP collector traces go to, like http://jaeger:4318 (OTLP/HTTP; its /v1/traces) or http://collector:4317 with OTEL_EXPORTER_OTLP_PROTOCOL=grpc; unset: no tracing, nothing exported, nothing dialled"`
	TracesEndpoint string `env:"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" help:"the full URL traces go to, instead of OTEL_EXPORTER_OTLP_ENDPOINT's"`
	Protocol       string `env:"OTEL_EXPORTER_OTLP_PROTOCOL" envDefault:"http/protobuf" help:"http/protobuf or grpc"`
	Headers        string `env:"OTEL_EXPORTER_OTLP_HEADERS" help:"key=value pairs, comma-separated, sent with every export (a collector's API key); never logged"`
	ServiceName    string `env:"OTEL_SERVICE_NAME" help:"the service the spans name; unset: shop-api, shop-relay, shop-consume-<groups> or shop-run"`
	Resource       string `env:"OTEL_RESOURCE_ATTRIBUTES" help:"key=value pairs, comma-separated, on every span (deployment.environment=prod, say)"`
	Sampler        string `env:"OTEL_TRACES_SAMPLER" envDefault:"parentbased_always_on" help:"always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio"`
	SamplerArg     string `env:"OTEL_TRACES_SAMPLER_ARG" help:"the ratio of a traceidratio sampler, 0 to 1 (unset: 1)"`
	Disabled       bool   `env:"OTEL_SDK_DISABLED" envDefault:"false" help:"true: no tracing, whatever the rest says"`
}

func (s otelSection) validate() error { return s.config("").Validate() }

// endpoint is where traces go.
func (s otelSection) endpoint() string {
	if s.TracesEndpoint != "" {
		return s.TracesEndpoint
	}
	return s.Endpoint
}

// config is the telemetry configuration of a process named service unless
// OTEL_SERVICE_NAME says otherwise.
func (s otelSection) config(service string) telemetry.Config {
	return telemetry.Config{Endpoint: s.Endpoint, TracesEndpoint: s.TracesEndpoint, Protocol: s.Protocol, Headers: s.Headers,
		ServiceName: s.ServiceName, DefaultService: service, ResourceAttributes: s.Resource,
		Sampler: s.Sampler, SamplerArg: s.SamplerArg, Disabled: s.Disabled}
}

type httpSection struct {
	Addr           string        `env:"HTTP_ADDR" envDefault:":8080" help:"where the API listens"`
	TrustedProxies string        `env:"TRUSTED_PROXIES" help:"comma-separated CIDRs (or addresses) of the proxies in front of the API, whose X-Forwarded-For is believed, read right to left; unset: the peer is the client and X-Forwarded-For is ignored"`
	ReadTimeout    time.Duration `env:"HTTP_READ_TIMEOUT" envDefault:"30s" help:"how long a client may take to send a request, body included"`
	WriteTimeout   time.Duration `env:"HTTP_WRITE_TIMEOUT" envDefault:"30s" help:"how long the API may take to answer a request, from the end of its headers"`
	IdleTimeout    time.Duration `env:"HTTP_IDLE_TIMEOUT" envDefault:"120s" help:"how long an idle keep-alive connection stays open"`
	MaxConns       int           `env:"HTTP_MAX_CONNS" envDefault:"4096" help:"connections the API serves at once; more wait to be accepted (1 to 1000000)"`
	// Past what the machine sustains, requests held in the process cost
	// memory and wait seconds; refused at once, they cost neither.
	MaxInFlight int  `env:"HTTP_MAX_IN_FLIGHT" envDefault:"256" help:"requests the API works on at once, the probes left out; one more is answered 503 with Retry-After at once (0: no bound; up to 1000000)"`
	HSTS        bool `env:"HSTS" envDefault:"false" help:"1 or true: send Strict-Transport-Security, for an API that a proxy serves over HTTPS"`
	// Commands that arrive together share a transaction and its COMMIT
	// (group commit); the figures are in BENCHMARKS.md.
	CommandBatchMax int `env:"COMMAND_BATCH_MAX" envDefault:"64" help:"how many concurrent commands share one Postgres transaction at most, each under its own savepoint (1 to 1024; 1: a transaction each)"`
	CommandLanes    int `env:"COMMAND_LANES" envDefault:"4" help:"how many command transactions run at once, each on its own connection; commands group while all are busy (1 to 64, at most DB_MAX_CONNS)"`
	// A hot product is read from Redis and encoded once per change rather
	// than once per request.
	ReadCacheMax int           `env:"READ_CACHE_MAX" envDefault:"10000" help:"products and orders each API process keeps in memory, with their JSON, once read from Redis; dropped when the projector announces a newer version (0 to 10000000; 0: none)"`
	ReadCacheTTL time.Duration `env:"READ_CACHE_TTL" envDefault:"30s" help:"how long an in-memory copy serves at most, in case an announcement was lost while the subscription to announcements seemed healthy (Redis pub/sub does not resend; every copy is dropped whenever that subscription is made again)"`
}

// backlogSection bounds the outbox: a relay that cannot keep up with the
// API (RabbitMQ on the same cores as Postgres and the API, or down) then
// slows the commands instead of delaying every event without end.
type backlogSection struct {
	MaxPending int           `env:"OUTBOX_MAX_PENDING" envDefault:"10000" help:"unsent rows the outbox may hold before new commands wait for the relays; a command that waited OUTBOX_WAIT in vain is answered 503 with Retry-After (0: no bound; up to 10000000)"`
	Wait       time.Duration `env:"OUTBOX_WAIT" envDefault:"2s" help:"how long a command waits for room in the outbox (see OUTBOX_MAX_PENDING) before it is refused"`
}

func (s backlogSection) validate() error {
	var errs []error
	if s.Wait <= 0 {
		errs = append(errs, fmt.Errorf("OUTBOX_WAIT must be a positive duration like 2s, not %s", s.Wait))
	}
	return errors.Join(append(errs, inRange("OUTBOX_MAX_PENDING", s.MaxPending, 0, 10_000_000))...)
}

func (s httpSection) validate() error {
	var errs []error
	if _, err := parsePrefixes(s.TrustedProxies); err != nil {
		errs = append(errs, err)
	}
	if s.ReadCacheMax < 0 || s.ReadCacheMax > 10_000_000 {
		errs = append(errs, fmt.Errorf("READ_CACHE_MAX must be 0 to 10000000, not %d", s.ReadCacheMax))
	}
	if s.ReadCacheTTL <= 0 {
		errs = append(errs, fmt.Errorf("READ_CACHE_TTL must be a positive duration like 1s, not %s", s.ReadCacheTTL))
	}
	if s.CommandLanes < 1 || s.CommandLanes > 64 {
		errs = append(errs, fmt.Errorf("COMMAND_LANES must be 1 to 64, not %d", s.CommandLanes))
	}
	if s.CommandBatchMax < 1 || s.CommandBatchMax > 1024 {
		errs = append(errs, fmt.Errorf("COMMAND_BATCH_MAX must be 1 to 1024, not %d", s.CommandBatchMax))
	}
	for name, d := range map[string]time.Duration{"HTTP_READ_TIMEOUT": s.ReadTimeout, "HTTP_WRITE_TIMEOUT": s.WriteTimeout, "HTTP_IDLE_TIMEOUT": s.IdleTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be a positive duration like 30s, not %s", name, d))
		}
	}
	errs = append(errs, inRange("HTTP_MAX_CONNS", s.MaxConns, 1, 1_000_000), inRange("HTTP_MAX_IN_FLIGHT", s.MaxInFlight, 0, 1_000_000))
	return errors.Join(errs...)
}

// parsePrefixes parses a comma-separated list of CIDRs or addresses (an
// address is its own /32 or /128).
func parsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("TRUSTED_PROXIES: %q is not a CIDR like 10.0.0.0/8 or an address", item)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

type limitSection struct {
	RateLimit        float64       `env:"RATE_LIMIT" envDefault:"100" help:"requests per second one client (a signed-in user, else an address) may send on average, counted in Redis for all replicas together; 0: no limit"`
	RateBurst        int           `env:"RATE_LIMIT_BURST" envDefault:"0" help:"requests one client may send at once; 0: twice RATE_LIMIT"`
	RateGrant        int           `env:"RATE_LIMIT_GRANT" envDefault:"0" help:"requests of a client's budget one replica takes from Redis in one round trip, to spend within a second; 1: ask Redis for every request; 0: an eighth of the burst, at most RATE_LIMIT"`
	LoginMaxFailures int           `env:"LOGIN_MAX_FAILURES" envDefault:"10" help:"failed logins to one account, from any address, after which its logins are refused (429) until LOGIN_WINDOW has passed since the first; 0: no throttle"`
	LoginWindow      time.Duration `env:"LOGIN_WINDOW" envDefault:"15m" help:"how long failed logins count"`
}

func (s limitSection) validate() error {
	var errs []error
	if s.RateLimit < 0 || s.RateLimit > 1e6 {
		errs = append(errs, fmt.Errorf("RATE_LIMIT must be a number of requests per second from 0 (no limit) to 1000000, not %v", s.RateLimit))
	}
	errs = append(errs, inRange("RATE_LIMIT_BURST", s.RateBurst, 0, 10_000_000), inRange("RATE_LIMIT_GRANT", s.RateGrant, 0, 10_000_000),
		inRange("LOGIN_MAX_FAILURES", s.LoginMaxFailures, 0, 1_000_000))
	if s.LoginWindow < time.Second {
		errs = append(errs, fmt.Errorf("LOGIN_WINDOW must be a duration of at least 1s, like 15m, not %s", s.LoginWindow))
	}
	return errors.Join(errs...)
}

type tokenSection struct {
	Secret string        `env:"JWT_SECRET" help:"signs and verifies the tokens, at least 32 bytes; required (or JWT_KEYS), except by shop run and shop api in SHOP_ENV=dev on a loopback address, which make up one per process"`
	Keys   string        `env:"JWT_KEYS" help:"instead of JWT_SECRET, several keys for rotation: comma-separated kid:secret pairs; the first signs, every one verifies"`
	TTL    time.Duration `env:"JWT_TTL" envDefault:"24h" help:"how long a token is valid"`
}

func (s tokenSection) validate() error {
	var errs []error
	if s.TTL <= 0 {
		errs = append(errs, fmt.Errorf("JWT_TTL must be a positive duration like 24h, not %s", s.TTL))
	}
	if s.Secret != "" && s.Keys != "" {
		errs = append(errs, errors.New("set JWT_SECRET or JWT_KEYS, not both"))
	}
	if s.Secret != "" && len(s.Secret) < 32 {
		errs = append(errs, errors.New("JWT_SECRET must be at least 32 bytes"))
	}
	if _, err := s.keys(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// keys parses JWT_KEYS.
func (s tokenSection) keys() ([]auth.Key, error) {
	var keys []auth.Key
	seen := map[string]bool{}
	for item := range strings.SplitSeq(s.Keys, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		id, secret, ok := strings.Cut(strings.TrimSpace(item), ":")
		switch {
		case !ok || id == "":
			return nil, errors.New("JWT_KEYS must be comma-separated kid:secret pairs")
		case len(secret) < 32:
			return nil, fmt.Errorf("JWT_KEYS: the secret of key %q must be at least 32 bytes", id)
		case seen[id]:
			return nil, fmt.Errorf("JWT_KEYS: key %q is given twice", id)
		}
		seen[id] = true
		keys = append(keys, auth.Key{ID: id, Secret: []byte(secret)})
	}
	return keys, nil
}

type passwordSection struct {
	Cost int `env:"BCRYPT_COST" envDefault:"10" help:"bcrypt's cost of a password hash (4 to 31)"`
}

func (s passwordSection) validate() error { return inRange("BCRYPT_COST", s.Cost, 4, 31) }

type relaySection struct {
	BatchSize int           `env:"RELAY_BATCH_SIZE" envDefault:"2000" help:"rows one round publishes at most, shared among the partitions it relays (1 to 10000)"`
	Workers   int           `env:"RELAY_WORKERS" envDefault:"1" help:"rounds one relay runs at once, each on its own channel (1 to 16)"`
	Linger    time.Duration `env:"RELAY_LINGER" envDefault:"2ms" help:"how long a round waits for more commits before it starts: fewer, bigger rounds for up to that much latency per hop (0 to 1s)"`
}

func (s relaySection) validate() error {
	var errs []error
	errs = append(errs, inRange("RELAY_BATCH_SIZE", s.BatchSize, 1, 10_000), inRange("RELAY_WORKERS", s.Workers, 1, 16))
	if s.Linger < 0 || s.Linger > time.Second {
		errs = append(errs, fmt.Errorf("RELAY_LINGER must be a duration from 0 to 1s, like 2ms, not %s", s.Linger))
	}
	return errors.Join(errs...)
}

type consumerSection struct {
	Concurrency    int           `env:"CONSUMER_CONCURRENCY" envDefault:"8" help:"deliveries each consumer group of a process handles at once; a group that batches holds at least twice CONSUMER_BATCH, so that one batch gathers while another is applied (1 to 256)"`
	Batch          int           `env:"CONSUMER_BATCH" envDefault:"16" help:"deliveries one batch of a consumer group may apply together (one transaction, or one Redis round trip; the emails group sends a batch's mail four at a time); 1: each alone (1 to 256)"`
	Gather         time.Duration `env:"CONSUMER_GATHER" envDefault:"200us" help:"how long a consumer group's batch waits for one more delivery once none is waiting, restarted by each that comes: a relay round's events reach a group one by one, and without it the first is applied alone (0 to 100ms; 0: no wait)"`
	MaxRetries     int           `env:"CONSUMER_MAX_RETRIES" envDefault:"5" help:"retries of a failing delivery, with backoff, before the dead queue; 0: none (0 to 100)"`
	UnavailableFor time.Duration `env:"CONSUMER_UNAVAILABLE_FOR" envDefault:"5m" help:"how long one delivery waits for an SMTP server that is unreachable or answers 4xx before the dead queue"`
}

func (s consumerSection) validate() error {
	errs := []error{inRange("CONSUMER_CONCURRENCY", s.Concurrency, 1, 256), inRange("CONSUMER_BATCH", s.Batch, 1, 256),
		inRange("CONSUMER_MAX_RETRIES", s.MaxRetries, 0, 100)}
	if s.Gather < 0 || s.Gather > 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("CONSUMER_GATHER must be a duration from 0 to 100ms, like 200us, not %s", s.Gather))
	}
	if s.UnavailableFor <= 0 {
		errs = append(errs, fmt.Errorf("CONSUMER_UNAVAILABLE_FOR must be a positive duration like 5m, not %s", s.UnavailableFor))
	}
	return errors.Join(errs...)
}

type queueSection struct {
	ManagementURL string        `env:"RABBITMQ_MANAGEMENT_URL" help:"RabbitMQ's management API with its credentials, like http://guest:guest@rabbitmq:15672, where each consumer process reads the depth of its groups' queues, ready and unacknowledged; unset: ready messages only, by a passive declare on its AMQP connection"`
	SampleEvery   time.Duration `env:"QUEUE_SAMPLE_INTERVAL" envDefault:"5s" help:"how often each consumer process samples its groups' queue depths (shop_consumer_queue_messages, shop_consumer_dead_messages)"`
}

func (s queueSection) validate() error {
	var errs []error
	if s.ManagementURL != "" {
		if u, err := url.Parse(s.ManagementURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, errors.New("RABBITMQ_MANAGEMENT_URL must be a URL like http://guest:guest@rabbitmq:15672"))
		}
	}
	if s.SampleEvery < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("QUEUE_SAMPLE_INTERVAL must be a duration of at least 100ms, like 5s, not %s", s.SampleEvery))
	}
	return errors.Join(errs...)
}

type smtpSection struct {
	Addr     string `env:"SMTP_ADDR" help:"host:port of an SMTP server (STARTTLS when offered); unset: emails go to the log and the emails table only"`
	From     string `env:"SMTP_FROM" envDefault:"shop <no-reply@shop.local>" help:"the sender of every email"`
	Username string `env:"SMTP_USERNAME" help:"with SMTP_PASSWORD: PLAIN or LOGIN authentication"`
	Password string `env:"SMTP_PASSWORD" help:"the SMTP user's password"`
}

// inRange says that name must be an integer from lo to hi, unless v is.
func inRange(name string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("%s must be an integer from %d to %d, not %d", name, lo, hi, v)
	}
	return nil
}

// validator is a section that checks its values.
type validator interface{ validate() error }

// parseConfig fills cfg, a pointer to a struct of sections (or of structs
// of sections), from getenv: every variable the sections name, parsed and
// checked, with every error naming its variable, all at once, each once.
func parseConfig(cfg any, getenv func(string) string) error {
	var errs []error
	seen := map[string]bool{}
	add := func(err error) {
		for _, e := range unwrapAll(err) {
			if !seen[e.Error()] {
				seen[e.Error()] = true
				errs = append(errs, e)
			}
		}
	}
	for _, section := range sections(cfg) {
		environment := map[string]string{}
		for _, v := range variables(section.Type()) {
			if value := strings.TrimSpace(getenv(v.name)); value != "" {
				environment[v.name] = value
			}
		}
		err := env.ParseWithOptions(section.Addr().Interface(), env.Options{Environment: environment})
		var parse env.ParseError
		for _, e := range unwrapAll(err) {
			if errors.As(e, &parse) {
				f, _ := section.Type().FieldByName(parse.Name)
				name := f.Tag.Get("env")
				e = fmt.Errorf("%s=%q: not %s", name, environment[name], kindOf(parse.Type))
			}
			add(e)
		}
		if v, ok := section.Interface().(validator); ok && err == nil {
			add(v.validate())
		}
	}
	return errors.Join(errs...)
}

func unwrapAll(err error) []error {
	if err == nil {
		return nil
	}
	if many, ok := err.(interface{ Unwrap() []error }); ok {
		return many.Unwrap()
	}
	return []error{err}
}

func kindOf(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "a duration like 250ms, 5s or 2m"
	case t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int32, t.Kind() == reflect.Int64:
		return "an integer"
	}
	return "a " + t.String()
}

// sections returns the sections of cfg, a pointer to a struct of sections
// or of structs of them, addressable, in the order declared. A section is
// a struct whose fields name variables.
func sections(cfg any) []reflect.Value {
	var out []reflect.Value
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		if len(variables(v.Type())) > 0 {
			out = append(out, v)
			return
		}
		for i := range v.NumField() {
			if v.Field(i).Kind() == reflect.Struct {
				walk(v.Field(i))
			}
		}
	}
	walk(reflect.ValueOf(cfg).Elem())
	return out
}

// variable is one environment variable of a section.
type variable struct {
	name, def, help string
}

func variables(section reflect.Type) []variable {
	var out []variable
	for i := range section.NumField() {
		f := section.Field(i)
		if name := f.Tag.Get("env"); name != "" {
			out = append(out, variable{name: name, def: f.Tag.Get("envDefault"), help: f.Tag.Get("help")})
		}
	}
	return out
}

// printVariables writes every variable of the configs, once each, in the
// order they are first declared: its name and default, then what it is for.
func printVariables(w io.Writer, configs ...any) {
	seen := map[string]bool{}
	for _, cfg := range configs {
		for _, section := range sections(cfg) {
			for _, v := range variables(section.Type()) {
				if seen[v.name] {
					continue
				}
				seen[v.name] = true
				def := "=" + v.def
				if v.def == "" {
					def = " (unset)"
				}
				fmt.Fprintf(w, "  %s%s\n      %s\n", v.name, def, v.help)
			}
		}
	}
}

// redact hides the password of a URL, for logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
