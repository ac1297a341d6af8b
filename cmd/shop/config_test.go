package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// These tests run shop in this process, with an environment of their own:
// they need no service (go test -short runs them).

// shopInProcess runs shop with args and env (BCRYPT_COST=4 besides) until
// it returns, and says what it wrote and its exit code.
func shopInProcess(env map[string]string, args ...string) (stdout, stderr string, exitCode int) {
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		if k == "BCRYPT_COST" {
			return "4"
		}
		return ""
	}
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, getenv, &out, &errOut)
	switch {
	case errors.Is(err, errUsage):
		exitCode = 2
	case err != nil:
		exitCode = 1
	}
	if err != nil {
		errOut.WriteString("shop: " + err.Error() + "\n")
	}
	return out.String(), errOut.String(), exitCode
}

func TestRefusesBadConfiguration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"api without JWT_SECRET outside dev", map[string]string{}, []string{"api"}, 1, "JWT_SECRET is required"},
		{"api in prod without JWT_SECRET", map[string]string{"SHOP_ENV": "prod"}, []string{"api"}, 1, "JWT_SECRET is required"},
		{"a short JWT_SECRET", map[string]string{"JWT_SECRET": "short"}, []string{"api"}, 1, "at least 32 bytes"},
		{"api in dev on every address without JWT_SECRET", map[string]string{"SHOP_ENV": "dev", "HTTP_ADDR": ":8080"}, []string{"api"}, 1, "JWT_SECRET is required: the API listens on :8080, which is not a loopback address"},
		{"run in dev on every address without JWT_SECRET", map[string]string{"HTTP_ADDR": "0.0.0.0:8080"}, []string{"run"}, 1, "JWT_SECRET is required: the API listens on 0.0.0.0:8080"},
		{"both JWT_SECRET and JWT_KEYS", map[string]string{"JWT_SECRET": strings.Repeat("s", 32), "JWT_KEYS": "a:" + strings.Repeat("s", 32)}, []string{"api"}, 1, "set JWT_SECRET or JWT_KEYS, not both"},
		{"JWT_KEYS without ids", map[string]string{"JWT_KEYS": strings.Repeat("s", 32)}, []string{"api"}, 1, "JWT_KEYS must be comma-separated kid:secret pairs"},
		{"a short key in JWT_KEYS", map[string]string{"JWT_KEYS": "new:" + strings.Repeat("s", 32) + ",old:short"}, []string{"api"}, 1, `the secret of key "old" must be at least 32 bytes`},
		{"a key twice in JWT_KEYS", map[string]string{"JWT_KEYS": "k:" + strings.Repeat("s", 32) + ",k:" + strings.Repeat("t", 32)}, []string{"api"}, 1, `key "k" is given twice`},
		{"a TRUSTED_PROXIES that is no CIDR", map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8, proxy.local"}, []string{"api"}, 1, `TRUSTED_PROXIES: "proxy.local" is not a CIDR`},
		{"an HTTP_MAX_CONNS of zero", map[string]string{"HTTP_MAX_CONNS": "0"}, []string{"api"}, 1, "HTTP_MAX_CONNS must be an integer from 1 to 1000000, not 0"},
		{"a negative HTTP_MAX_IN_FLIGHT", map[string]string{"HTTP_MAX_IN_FLIGHT": "-1"}, []string{"api"}, 1, "HTTP_MAX_IN_FLIGHT must be an integer from 0 to 1000000, not -1"},
		{"a negative OUTBOX_MAX_PENDING", map[string]string{"OUTBOX_MAX_PENDING": "-1"}, []string{"api"}, 1, "OUTBOX_MAX_PENDING must be an integer from 0 to 10000000, not -1"},
		{"an OUTBOX_WAIT of zero", map[string]string{"OUTBOX_WAIT": "0s"}, []string{"run"}, 1, "OUTBOX_WAIT must be a positive duration"},
		{"an HTTP_WRITE_TIMEOUT of zero", map[string]string{"HTTP_WRITE_TIMEOUT": "0s"}, []string{"api"}, 1, "HTTP_WRITE_TIMEOUT must be a positive duration"},
		{"a LOGIN_WINDOW under a second", map[string]string{"LOGIN_WINDOW": "10ms"}, []string{"api"}, 1, "LOGIN_WINDOW must be a duration of at least 1s"},
		{"a negative LOGIN_MAX_FAILURES", map[string]string{"LOGIN_MAX_FAILURES": "-1"}, []string{"api"}, 1, "LOGIN_MAX_FAILURES must be an integer from 0"},
		{"an unknown SHOP_ENV", map[string]string{"SHOP_ENV": "staging"}, []string{"api"}, 1, "SHOP_ENV must be prod or dev"},
		{"a DB_MAX_CONNS that is not a number", map[string]string{"DB_MAX_CONNS": "many"}, []string{"api"}, 1, `DB_MAX_CONNS="many": not an integer`},
		{"a DB_MAX_CONNS of zero", map[string]string{"DB_MAX_CONNS": "0"}, []string{"run"}, 1, "DB_MAX_CONNS must be an integer from 1 to 1000, not 0"},
		{"a bad LOG_LEVEL", map[string]string{"LOG_LEVEL": "loud"}, []string{"migrate"}, 1, `LOG_LEVEL must be debug, info, warn or error, not "loud"`},
		{"a bad LOG_FORMAT", map[string]string{"LOG_FORMAT": "xml"}, []string{"migrate"}, 1, `LOG_FORMAT must be text, json or auto`},
		{"a negative RELAY_LINGER", map[string]string{"RELAY_LINGER": "-2ms"}, []string{"relay"}, 1, "RELAY_LINGER must be a duration from 0 to 1s"},
		{"a RELAY_LINGER without a unit", map[string]string{"RELAY_LINGER": "2"}, []string{"relay"}, 1, `RELAY_LINGER="2": not a duration`},
		{"a CONSUMER_BATCH of zero", map[string]string{"CONSUMER_BATCH": "0"}, []string{"consume", "orders"}, 1, "CONSUMER_BATCH must be an integer from 1 to 256, not 0"},
		{"a CONSUMER_BATCH that is not a number", map[string]string{"CONSUMER_BATCH": "many"}, []string{"consume", "orders"}, 1, `CONSUMER_BATCH="many": not an integer`},
		{"a negative CONSUMER_MAX_RETRIES", map[string]string{"CONSUMER_MAX_RETRIES": "-1"}, []string{"run"}, 1, "CONSUMER_MAX_RETRIES must be an integer from 0 to 100"},
		{"a CONSUMER_GATHER over 100ms", map[string]string{"CONSUMER_GATHER": "1s"}, []string{"consume", "orders"}, 1, "CONSUMER_GATHER must be a duration from 0 to 100ms, like 200us, not 1s"},
		{"a negative CONSUMER_GATHER", map[string]string{"CONSUMER_GATHER": "-1ms"}, []string{"run"}, 1, "CONSUMER_GATHER must be a duration from 0 to 100ms"},
		{"a negative RATE_LIMIT", map[string]string{"RATE_LIMIT": "-1"}, []string{"api"}, 1, "RATE_LIMIT must be a number"},
		{"a RATE_LIMIT_BURST that is not a number", map[string]string{"RATE_LIMIT_BURST": "lots"}, []string{"api"}, 1, `RATE_LIMIT_BURST="lots": not an integer`},
		{"every bad value at once", map[string]string{"RELAY_WORKERS": "99", "CONSUMER_BATCH": "0"}, []string{"run"}, 1,
			"RELAY_WORKERS must be an integer from 1 to 16, not 99\nCONSUMER_BATCH must be an integer from 1 to 256, not 0"},
		{"no command", nil, nil, 2, "no command given"},
		{"an unknown command", nil, []string{"fly"}, 2, `unknown command "fly"`},
		{"user without add", nil, []string{"user"}, 2, "shop user add"},
		{"dead without list or replay", nil, []string{"dead"}, 2, "shop dead list GROUP [N] | shop dead replay GROUP [N]"},
		{"user add with an invalid email", nil, []string{"user", "add", "--email", "nope", "--password", "longenough"}, 1, "email"},
		{"consume without a group", nil, []string{"consume"}, 2, "shop consume GROUP..."},
		{"consume an unknown group", nil, []string{"consume", "nosuchgroup"}, 2, `unknown consumer group "nosuchgroup"`},
		{"dead list of an unknown group", nil, []string{"dead", "list", "nosuchgroup"}, 2, `unknown consumer group "nosuchgroup"`},
		{"a CONSUMER_UNAVAILABLE_FOR that is no duration", map[string]string{"CONSUMER_UNAVAILABLE_FOR": "soon"}, []string{"consume", "emails"}, 1, `CONSUMER_UNAVAILABLE_FOR="soon": not a duration`},
		{"a CONSUMER_UNAVAILABLE_FOR of zero", map[string]string{"CONSUMER_UNAVAILABLE_FOR": "0s"}, []string{"consume", "emails"}, 1, "CONSUMER_UNAVAILABLE_FOR must be a positive duration"},
		{"a negative CONSUMER_UNAVAILABLE_FOR", map[string]string{"CONSUMER_UNAVAILABLE_FOR": "-1m"}, []string{"consume", "emails"}, 1, "CONSUMER_UNAVAILABLE_FOR must be a positive duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, stderr, code := shopInProcess(tt.env, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr does not say %q:\n%s", tt.wantErr, stderr)
			}
		})
	}
}

// TestHelpRunsNothing: shop help lists every command and every variable
// with its default; every command answers -h and --help with its usage,
// exits 0 and does nothing else (here, with every dependency unreachable:
// a command that ran would fail or hang).
func TestHelpRunsNothing(t *testing.T) {
	t.Parallel()
	stdout, _, code := shopInProcess(nil, "help")
	if code != 0 {
		t.Fatalf("help exit code = %d", code)
	}
	for _, want := range []string{"run", "migrate", "api", "relay", "consume GROUP...", "user add", "projections rebuild",
		"outbox status", "dead list GROUP [N]", "dead replay GROUP [N]",
		"DATABASE_URL=postgres://", "RELAY_LINGER=2ms", "CONSUMER_MAX_RETRIES=5", "JWT_SECRET (unset)", "LOG_FORMAT=auto"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("shop help does not say %q", want)
		}
	}
	nowhere := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/nowhere", "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
		"REDIS_URL": "redis://127.0.0.1:1/0", "HTTP_ADDR": "127.0.0.1:1", "METRICS_ADDR": "127.0.0.1:1"}
	for _, args := range [][]string{{"run"}, {"migrate"}, {"api"}, {"relay"}, {"consume", "orders"}, {"consume"},
		{"user", "add"}, {"projections", "rebuild"}, {"outbox", "status"}, {"dead", "list", "orders"}, {"dead", "replay", "orders"}} {
		for _, flag := range []string{"--help", "-h"} {
			stdout, stderr, code := shopInProcess(nowhere, append(slices.Clone(args), flag)...)
			if code != 0 || !strings.HasPrefix(stdout, "usage: shop "+args[0]) || !strings.Contains(stdout, "environment:") || stderr != "" {
				t.Errorf("shop %s %s: exit %d, stdout %q, stderr %q; want its usage and nothing else",
					strings.Join(args, " "), flag, code, firstLine(stdout), stderr)
			}
		}
	}
	if stdout, _, _ := shopInProcess(nil, "consume", "--help"); !strings.Contains(stdout, "orders       confirms or rejects") {
		t.Errorf("shop consume --help does not say what each group does:\n%s", stdout)
	}
	if stdout, _, _ := shopInProcess(nil, "user", "add", "--help"); !strings.Contains(stdout, "-email") {
		t.Errorf("shop user add --help does not list its flags:\n%s", stdout)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// TestReadmeDocumentsEveryVariable: the README's configuration table has a
// row for every variable shop reads, with its default, and none other.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := regexp.MustCompile("(?s)## Configuration\n(.*?)\n## ").FindSubmatch(readme)
	if section == nil {
		t.Fatal("README has no Configuration section")
	}
	documented := map[string]string{} // variable → its default column
	for _, line := range strings.Split(string(section[1]), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		for _, m := range regexp.MustCompile("`([A-Z][A-Z0-9_]+)`").FindAllStringSubmatch(cells[1], -1) {
			documented[m[1]] = strings.TrimSpace(cells[2])
		}
	}
	declared := map[string]string{}
	for _, c := range commands() {
		for _, s := range sections(c.config()) {
			for _, v := range variables(s.Type()) {
				declared[v.name] = v.def
			}
		}
	}
	for name, def := range declared {
		want := "`" + def + "`"
		if def == "" {
			want = "unset"
		}
		got, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("README's configuration table does not list %s", name)
		case got != want:
			t.Errorf("README gives %s the default %s, shop %s", name, got, want)
		}
	}
	for name := range documented {
		if _, ok := declared[name]; !ok {
			t.Errorf("README lists %s, which no shop command reads", name)
		}
	}
}

// TestZeroMeansZero: a variable that is unset (or empty) takes its
// default, and one set to 0 is 0, not the default.
func TestZeroMeansZero(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want consumeSettings
	}{
		{"unset", nil, consumeSettings{Consumer: consumerSection{Concurrency: 8, Batch: 16, Gather: 200 * time.Microsecond, MaxRetries: 5, UnavailableFor: 5 * time.Minute}}},
		{"empty", map[string]string{"CONSUMER_MAX_RETRIES": " "}, consumeSettings{Consumer: consumerSection{Concurrency: 8, Batch: 16, Gather: 200 * time.Microsecond, MaxRetries: 5, UnavailableFor: 5 * time.Minute}}},
		{"zero retries", map[string]string{"CONSUMER_MAX_RETRIES": "0"}, consumeSettings{Consumer: consumerSection{Concurrency: 8, Batch: 16, Gather: 200 * time.Microsecond, MaxRetries: 0, UnavailableFor: 5 * time.Minute}}},
	}
	for _, tt := range tests {
		var cfg consumeConfig
		if err := parseConfig(&cfg, func(k string) string { return tt.env[k] }); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if cfg.Consume.Consumer != tt.want.Consumer {
			t.Errorf("%s: %+v, want %+v", tt.name, cfg.Consume.Consumer, tt.want.Consumer)
		}
	}
	var relay relayConfig
	if err := parseConfig(&relay, func(k string) string { return map[string]string{"RELAY_LINGER": "0"}[k] }); err != nil || relay.Relay.Relay.Linger != 0 {
		t.Errorf("RELAY_LINGER=0: linger %s, %v; want none", relay.Relay.Relay.Linger, err)
	}
}
