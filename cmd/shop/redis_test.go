package main

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRedisURLs: what each form of REDIS_URL connects to, with which
// credentials and database.
func TestRedisURLs(t *testing.T) {
	t.Parallel()
	type want struct {
		addrs                  []string // the server's, or the Sentinels'
		master                 string   // "": a server
		user, password         string
		sentinelUser, sentinel string // the Sentinels' credentials
		db                     int
		tls                    bool
	}
	tests := []struct {
		url  string
		want want
	}{
		{"redis://127.0.0.1:6379/0", want{addrs: []string{"127.0.0.1:6379"}}},
		{"redis://:s3cret@cache:6380/2", want{addrs: []string{"cache:6380"}, password: "s3cret", db: 2}},
		{"rediss://app:s3cret@cache:6380/1", want{addrs: []string{"cache:6380"}, user: "app", password: "s3cret", db: 1, tls: true}},
		{"redis-sentinel://s1:26379,s2:26380/1?master=shop", want{addrs: []string{"s1:26379", "s2:26380"}, master: "shop", db: 1}},
		{"redis-sentinel://:s3cret@s1,s2,s3?master=shop", want{addrs: []string{"s1:26379", "s2:26379", "s3:26379"}, master: "shop", password: "s3cret"}},
		{"redis-sentinel://:s3cret@s1/?master=shop", want{addrs: []string{"s1:26379"}, master: "shop", password: "s3cret"}},
		{"redis-sentinel://app:p%40ss%2Fw%3Fd@10.0.0.1:5000/3?master=my%20master&sentinel_username=watcher&sentinel_password=s%26p",
			want{addrs: []string{"10.0.0.1:5000"}, master: "my master", user: "app", password: "p@ss/w?d", db: 3,
				sentinelUser: "watcher", sentinel: "s&p"}},
		{"redis-sentinel://[::1]:26380,[fe80::1]/0?master=shop", want{addrs: []string{"[::1]:26380", "[fe80::1]:26379"}, master: "shop"}},
		{"rediss-sentinel://s1:26379/0?master=shop&sentinel_password=x", want{addrs: []string{"s1:26379"}, master: "shop", sentinel: "x", tls: true}},
	}
	for _, tt := range tests {
		target, err := parseRedisURL(tt.url)
		if err != nil {
			t.Errorf("%s: %v", tt.url, err)
			continue
		}
		var got want
		if o := target.server; o != nil {
			got = want{addrs: []string{o.Addr}, user: o.Username, password: o.Password, db: o.DB, tls: o.TLSConfig != nil}
		} else {
			f := target.failover
			got = want{addrs: f.SentinelAddrs, master: f.MasterName, user: f.Username, password: f.Password,
				sentinelUser: f.SentinelUsername, sentinel: f.SentinelPassword, db: f.DB, tls: f.TLSConfig != nil}
		}
		if !slices.Equal(got.addrs, tt.want.addrs) || got.master != tt.want.master || got.user != tt.want.user ||
			got.password != tt.want.password || got.sentinelUser != tt.want.sentinelUser || got.sentinel != tt.want.sentinel ||
			got.db != tt.want.db || got.tls != tt.want.tls {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.url, got, tt.want)
		}
	}
}

// TestBadRedisURLsAreRefused: shop refuses a bad REDIS_URL before it
// connects to anything, with an error that names REDIS_URL and says what
// is wrong, and never the password.
func TestBadRedisURLsAreRefused(t *testing.T) {
	t.Parallel()
	const password = "hunter2"
	tests := []struct {
		url, wantErr string
	}{
		{"redis-sentinel://:hunter2@s1:26379/0", "names the master the Sentinels watch: ?master=NAME"},
		{"redis-sentinel://:hunter2@s1:26379/0?master=", "?master=NAME"},
		{"redis-sentinel://:hunter2@/0?master=shop", "REDIS_URL names no Sentinel"},
		{"redis-sentinel://:hunter2@s1,,s2/0?master=shop", "Sentinel 2 of 3 is not host or host:port"},
		{"redis-sentinel://:hunter2@s1,s2:port/0?master=shop", "Sentinel 2 of 2 is not host or host:port"},
		{"redis-sentinel://:hunter2@s1:70000/0?master=shop", "Sentinel 1 of 1 is not host or host:port"},
		{"redis-sentinel://:hunter2@::1/0?master=shop", "Sentinel 1 of 1 is not host or host:port"},
		{"redis-sentinel://:hunter2@s1/zero?master=shop", "the database (the path) must be a number, like /0"},
		{"redis-sentinel://:hunter2@s1/-1?master=shop", "the database (the path) must be a number"},
		{"redis-sentinel://:hunter2@s1/0?master=shop&pool_size=3", "takes the parameters master, sentinel_username and sentinel_password only"},
		{"redis-sentinel://:hunter2@s1/0?master=shop&password=hunter2", "takes the parameters master"},
		{"redis-sentinel://:hun/ter2@s1/0?master=shop", "Sentinel 1 of 1"},    // an unencoded / in the password
		{"redis-sentinel://:hunter2@s1/0?master=shop#x", "must be %-encoded"}, // an unencoded # somewhere
		{"redis-sentinel://:hunter2%zz@s1/0?master=shop", "is not a URL like redis://"},
		{"redis://:hunter2@cache:port/0", "REDIS_URL: not a URL like redis://"},
		{"redis://:hunter2@cache:6379/hunter2", `REDIS_URL: invalid database number: "xxxxx"`},
		{"redis://:hunter2@cache:6379/0?master=shop", "REDIS_URL: unexpected option: master"},
		{"sentinel://:hunter2@s1/0?master=shop", "REDIS_URL: invalid URL scheme: sentinel"},
		{"cache:6379", "REDIS_URL is not a URL like redis://[[user]:password@]host:port/db or redis-sentinel://"},
	}
	for _, tt := range tests {
		_, stderr, code := shopInProcess(map[string]string{"REDIS_URL": tt.url}, "projections", "rebuild")
		if code != 1 || !strings.Contains(stderr, tt.wantErr) {
			t.Errorf("REDIS_URL=%s: exit %d, %q; want 1 and %q", tt.url, code, stderr, tt.wantErr)
		}
		if strings.Contains(stderr, password) || strings.Contains(stderr, "hun/") || strings.Contains(stderr, "ter2") {
			t.Errorf("REDIS_URL=%s: the error tells the password: %s", tt.url, stderr)
		}
	}
}

// TestRedisURLsAreRedacted: what the logs say of REDIS_URL hides both
// passwords and keeps the rest.
func TestRedisURLsAreRedacted(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]string{
		"redis://:hunter2@cache:6379/0": "redis://:xxxxx@cache:6379/0",
		"redis-sentinel://app:hunter2@s1,s2:26380,[::1]/1?master=shop&sentinel_password=hunter3": "redis-sentinel://app:xxxxx@s1,s2:26380,[::1]/1?master=shop&sentinel_password=xxxxx",
		"redis-sentinel://s1/0?master=shop": "redis-sentinel://s1/0?master=shop",
	} {
		if got := (redisSection{URL: url}).redacted(); got != want {
			t.Errorf("redacted(%s) = %s, want %s", url, got, want)
		}
	}
}

// TestOpenRedisTimeouts: every client comes from openRedis, a server's and
// the Sentinels' alike; with a timeout (the API's), it bounds every dial,
// read and write and never retries a command (-1, which go-redis makes 0)
// or a dial.
func TestOpenRedisTimeouts(t *testing.T) {
	t.Parallel()
	discard := slog.New(slog.DiscardHandler)
	for _, url := range []string{"redis://127.0.0.1:1/0", "redis-sentinel://127.0.0.1:1/0?master=shop"} {
		rdb, err := openRedis(redisSection{URL: url}, 250*time.Millisecond, discard)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		o := rdb.Options()
		if o.DialTimeout != 250*time.Millisecond || o.ReadTimeout != 250*time.Millisecond || o.WriteTimeout != 250*time.Millisecond ||
			o.MaxRetries != 0 || o.DialerRetries != 1 {
			t.Errorf("%s: dial %s, read %s, write %s, retries %d, dials %d; want 250ms each, no retry and one dial",
				url, o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries, o.DialerRetries)
		}
		_ = rdb.Close()
		if rdb, err = openRedis(redisSection{URL: url}, 0, discard); err != nil || rdb.Options().MaxRetries < 1 {
			t.Errorf("%s without a timeout: %v, %d retries; want go-redis's default", url, err, rdb.Options().MaxRetries)
		}
		_ = rdb.Close()
	}
}
