package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shopdev/shop/projections"
)

// REDIS_URL names one Redis server (redis://, rediss://, unix://, as
// go-redis parses them), or the master that a group of Redis Sentinels
// watch:
//
//	redis-sentinel://[[user]:password@]host[:port][,host[:port]...][/db]?master=NAME[&sentinel_username=U][&sentinel_password=P]
//
// rediss-sentinel:// is the same over TLS, to the Sentinels and the master
// alike. A host without a port is on 26379; an IPv6 host is bracketed. The
// user and password are those of the master (and of its replicas, which
// become masters): what AUTH on a data node takes, as in a redis:// URL.
// Sentinels that require a password of their own take sentinel_password
// (and sentinel_username, for an ACL user). db is the master's database,
// 0 when absent. No other parameter is taken.

const redisURLForms = "redis://[[user]:password@]host:port/db or redis-sentinel://[[user]:password@]host:26379,host2:26379/db?master=NAME"

// redisTarget is REDIS_URL parsed: a server, or the master that Sentinels
// name.
type redisTarget struct {
	server   *redis.Options
	failover *redis.FailoverOptions
}

// parseRedisURL parses REDIS_URL. Its errors name REDIS_URL and quote
// nothing of it but its scheme, so that no password reaches a log.
func parseRedisURL(raw string) (redisTarget, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return redisTarget{}, fmt.Errorf("REDIS_URL is not a URL like %s", redisURLForms)
	}
	if !isSentinelScheme(scheme) {
		opts, err := redis.ParseURL(raw)
		if err != nil {
			return redisTarget{}, fmt.Errorf("REDIS_URL: %s", redisError(err, raw))
		}
		return redisTarget{server: opts}, nil
	}
	userinfo, hosts, tail := splitAuthority(rest)
	u, err := url.Parse("redis://" + userinfo + "sentinels" + tail)
	if err != nil || u.Fragment != "" {
		return redisTarget{}, fmt.Errorf("REDIS_URL is not a URL like %s (a password with / ? # @ %% must be %%-encoded)", redisURLForms)
	}
	f := &redis.FailoverOptions{}
	if f.SentinelAddrs, err = sentinelAddrs(hosts); err != nil {
		return redisTarget{}, err
	}
	if u.User != nil {
		f.Username = u.User.Username()
		f.Password, _ = u.User.Password()
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		if f.DB, err = strconv.Atoi(db); err != nil || f.DB < 0 {
			return redisTarget{}, errors.New("REDIS_URL: the database (the path) must be a number, like /0")
		}
	}
	q := u.Query()
	for name := range q {
		if name != "master" && name != "sentinel_username" && name != "sentinel_password" {
			return redisTarget{}, fmt.Errorf("REDIS_URL: a %s URL takes the parameters master, sentinel_username and sentinel_password only", scheme)
		}
	}
	if f.MasterName = q.Get("master"); f.MasterName == "" {
		return redisTarget{}, fmt.Errorf("REDIS_URL: a %s URL names the master the Sentinels watch: ?master=NAME", scheme)
	}
	f.SentinelUsername, f.SentinelPassword = q.Get("sentinel_username"), q.Get("sentinel_password")
	if scheme == "rediss-sentinel" {
		f.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12} // each server is verified by the name it is dialled by
	}
	return redisTarget{failover: f}, nil
}

// isSentinelScheme reports whether a REDIS_URL of scheme names Sentinels.
func isSentinelScheme(scheme string) bool {
	return scheme == "redis-sentinel" || scheme == "rediss-sentinel"
}

// splitAuthority splits what follows the scheme of a URL into its
// userinfo (with its @, or ""), its host list, and the rest (path, query,
// fragment). url.Parse cannot do it: a host list is not a host.
func splitAuthority(rest string) (userinfo, hosts, tail string) {
	hosts = rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		hosts, tail = rest[:i], rest[i:]
	}
	if i := strings.LastIndex(hosts, "@"); i >= 0 {
		userinfo, hosts = hosts[:i+1], hosts[i+1:]
	}
	return userinfo, hosts, tail
}

// sentinelAddrs parses a comma-separated list of host[:port].
func sentinelAddrs(list string) ([]string, error) {
	if list == "" {
		return nil, fmt.Errorf("REDIS_URL names no Sentinel: want %s", redisURLForms)
	}
	items := strings.Split(list, ",")
	addrs := make([]string, 0, len(items))
	for i, item := range items {
		host, port := item, "26379"
		if strings.HasPrefix(item, "[") && strings.HasSuffix(item, "]") {
			host = item[1 : len(item)-1]
		} else if strings.Contains(item, ":") {
			var err error
			if host, port, err = net.SplitHostPort(item); err != nil {
				host = ""
			}
		}
		if n, err := strconv.Atoi(port); host == "" || strings.ContainsAny(host, "[]@ ") || err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("REDIS_URL: Sentinel %d of %d is not host or host:port", i+1, len(items))
		}
		addrs = append(addrs, net.JoinHostPort(host, port))
	}
	return addrs, nil
}

// redisError is the message of an error of redis.ParseURL, without the URL
// it may quote.
func redisError(err error, raw string) string {
	var bad *url.Error
	if errors.As(err, &bad) {
		return "not a URL like " + redisURLForms
	}
	msg := strings.TrimPrefix(err.Error(), "redis: ")
	if u, err := url.Parse(raw); err == nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}

// redacted is REDIS_URL with its passwords hidden, for logs.
func (s redisSection) redacted() string {
	scheme, rest, _ := strings.Cut(s.URL, "://")
	if !isSentinelScheme(scheme) {
		return redact(s.URL)
	}
	userinfo, hosts, tail := splitAuthority(rest)
	u, err := url.Parse("redis://" + userinfo + "sentinels" + tail)
	if err != nil {
		return "(unparsable URL)"
	}
	if q := u.Query(); q.Has("sentinel_password") {
		q.Set("sentinel_password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	u.Scheme, u.Host = scheme, hosts
	return u.Redacted()
}

// openRedis returns a client of the Redis that REDIS_URL names; it
// connects when first used. Every process makes its clients here. A client
// of Sentinels (redis.NewFailoverClient: a *redis.Client like any other)
// asks them for the master's address whenever it opens a connection, and
// drops its connections to an old master when they announce a new one, so
// that after a failover every command, Pub/Sub included, goes to the new
// master. timeout, unless 0, bounds each dial, read and write, the
// Sentinels' included, and turns retries off, of commands and of dials
// alike. What go-redis logs (a new master, a Sentinel that does not
// answer) goes to log.
func openRedis(s redisSection, timeout time.Duration, log *slog.Logger) (*redis.Client, error) {
	t, err := parseRedisURL(s.URL)
	if err != nil {
		return nil, err
	}
	// go-redis has one logger for the whole process, which writes plain
	// text to stderr: every line of a process is JSON (or text) of its
	// own logger, and a process has one.
	redis.SetLogger(redisLog{log})
	if f := t.failover; f != nil {
		if timeout > 0 {
			f.DialTimeout, f.ReadTimeout, f.WriteTimeout, f.MaxRetries, f.DialerRetries = timeout, timeout, timeout, -1, 1
		}
		return redis.NewFailoverClient(f), nil
	}
	if timeout > 0 {
		o := t.server
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries, o.DialerRetries = timeout, timeout, timeout, -1, 1
	}
	return redis.NewClient(t.server), nil
}

// redisLog passes what go-redis logs to a logger of shop's.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	level := slog.LevelInfo
	if strings.Contains(msg, "fail") || strings.Contains(msg, "error") {
		level = slog.LevelWarn
	}
	l.log.Log(ctx, level, "redis: "+msg)
}

// repairEvery is how often the projections group of a process checks
// which Redis (master) it writes to.
const repairEvery = time.Second

// repairAfterFailovers runs until ctx ends: every repairEvery, it checks
// that the read models were last made whole on the Redis master of now, and
// that this process wrote to no other since, and rebuilds them from
// Postgres when not (projections.Store.Repair): once when it first finds no
// record, then after each failover (or restart of the master), which may
// have lost the last writes the old master acknowledged. Each rebuild is
// logged with what it wrote.
func repairAfterFailovers(ctx context.Context, log *slog.Logger, models *projections.Store, origin projections.Origin) {
	tick := time.NewTicker(repairEvery)
	defer tick.Stop()
	seen := "" // the master of the last check that succeeded
	for {
		r, err := models.Repair(ctx, origin, seen)
		attrs := []any{"master_run_id", r.Master, "previous_run_id", r.Previous, "seen_run_id", seen,
			"products", r.Products, "orders", r.Orders, "took", r.Took.Round(time.Millisecond)}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && r.Rebuilt:
			log.Warn("projections: rebuilding the read models on a new Redis master failed; trying again", append(attrs, "err", err)...)
		case err != nil: // Redis does not answer: failing over, say
			log.Debug("projections: cannot tell which Redis master the read models are on", "err", err)
		case r.Rebuilt && r.Previous == "" && seen == "":
			log.Info("projections: no record of the Redis master the read models were made on: rebuilt them from Postgres", attrs...)
		case r.Rebuilt:
			log.Warn("projections: the Redis master changed (failover, restart or FLUSHALL), which may have lost writes: rebuilt the read models from Postgres", attrs...)
		}
		if err == nil {
			seen = r.Master
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
