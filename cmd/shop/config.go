package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// config is the process configuration, read from the environment.
type config struct {
	Env          string // SHOP_ENV: "prod" (default) or "dev"
	DatabaseURL  string
	RedisURL     string
	RedisPrefix  string
	AMQPURL      string
	HTTPAddr     string
	MetricsAddr  string
	JWTSecret    string
	JWTTTL       time.Duration
	PasswordCost int // bcrypt cost; 0 is bcrypt's default
	SMTPAddr     string
	SMTPFrom     string
	SMTPUsername string
	SMTPPassword string
	LogLevel     string
	DBMaxConns   int32
	// RateLimit and RateBurst limit each client of the API (requests per
	// second, and at once); RateLimit 0 turns the limit off.
	RateLimit float64
	RateBurst int
	// RelayBatchSize, RelayWorkers and RelayLinger tune `shop relay`.
	RelayBatchSize int
	RelayWorkers   int
	RelayLinger    time.Duration
	// ConsumerConcurrency is how many deliveries each consumer group of a
	// `shop consume` process handles at once; ConsumerMaxRetries how many
	// times a failing one is retried before the dead queue;
	// ConsumerUnavailableFor how long one waits for an unavailable SMTP
	// server before the dead queue.
	ConsumerConcurrency int
	// ConsumerBatch is how many deliveries one batch of the orders,
	// inventory and projections groups may apply (a transaction; one round
	// trip to Redis for the projections); emails, which send mail, apply
	// one at a time. Those groups hold at least that many deliveries.
	ConsumerBatch          int
	ConsumerMaxRetries     int
	ConsumerUnavailableFor time.Duration
}

// devJWTSecret signs tokens when SHOP_ENV=dev and no JWT_SECRET is set.
const devJWTSecret = "dev-only-insecure-jwt-secret-change-me!"

func loadConfig(getenv func(string) string) (config, error) {
	get := func(key, def string) string {
		if v := strings.TrimSpace(getenv(key)); v != "" {
			return v
		}
		return def
	}
	c := config{
		Env:          get("SHOP_ENV", "prod"),
		DatabaseURL:  get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/shop?sslmode=disable"),
		RedisURL:     get("REDIS_URL", "redis://127.0.0.1:6379/0"),
		RedisPrefix:  get("REDIS_PREFIX", "shop:"),
		AMQPURL:      get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
		HTTPAddr:     get("HTTP_ADDR", ":8080"),
		MetricsAddr:  get("METRICS_ADDR", ":9090"),
		JWTSecret:    getenv("JWT_SECRET"),
		SMTPAddr:     get("SMTP_ADDR", ""),
		SMTPFrom:     get("SMTP_FROM", "shop <no-reply@shop.local>"),
		SMTPUsername: getenv("SMTP_USERNAME"),
		SMTPPassword: getenv("SMTP_PASSWORD"),
		LogLevel:     get("LOG_LEVEL", "info"),
	}
	var errs []error
	if c.Env != "prod" && c.Env != "dev" {
		errs = append(errs, fmt.Errorf("SHOP_ENV must be prod or dev, not %q", c.Env))
	}
	var err error
	if c.JWTTTL, err = time.ParseDuration(get("JWT_TTL", "24h")); err != nil || c.JWTTTL <= 0 {
		errs = append(errs, fmt.Errorf("JWT_TTL must be a positive duration like 24h"))
	}
	if n, err := strconv.Atoi(get("DB_MAX_CONNS", "16")); err != nil || n < 1 || n > 1000 {
		errs = append(errs, fmt.Errorf("DB_MAX_CONNS must be an integer from 1 to 1000"))
	} else {
		c.DBMaxConns = int32(n)
	}
	if n, err := strconv.Atoi(get("BCRYPT_COST", "0")); err != nil || n < 0 || n > 31 {
		errs = append(errs, fmt.Errorf("BCRYPT_COST must be an integer from 4 to 31"))
	} else {
		c.PasswordCost = n
	}
	if n, err := strconv.ParseFloat(get("RATE_LIMIT", "100"), 64); err != nil || n < 0 || n > 1e6 {
		errs = append(errs, fmt.Errorf("RATE_LIMIT must be a number of requests per second from 0 (no limit) to 1000000"))
	} else {
		c.RateLimit = n
	}
	if n, err := strconv.Atoi(get("RATE_LIMIT_BURST", "0")); err != nil || n < 0 || n > 1e7 {
		errs = append(errs, fmt.Errorf("RATE_LIMIT_BURST must be an integer from 0 (twice RATE_LIMIT) to 10000000"))
	} else {
		c.RateBurst = n
	}
	if n, err := strconv.Atoi(get("RELAY_BATCH_SIZE", "500")); err != nil || n < 1 || n > 10000 {
		errs = append(errs, fmt.Errorf("RELAY_BATCH_SIZE must be an integer from 1 to 10000"))
	} else {
		c.RelayBatchSize = n
	}
	if c.RelayLinger, err = time.ParseDuration(get("RELAY_LINGER", "2ms")); err != nil || c.RelayLinger < 0 || c.RelayLinger > time.Second {
		errs = append(errs, fmt.Errorf("RELAY_LINGER must be a duration from 0 to 1s, like 2ms"))
	}
	if c.RelayLinger == 0 {
		c.RelayLinger = -1 // none (0 would take the relay's default)
	}
	if n, err := strconv.Atoi(get("RELAY_WORKERS", "1")); err != nil || n < 1 || n > 16 {
		errs = append(errs, fmt.Errorf("RELAY_WORKERS must be an integer from 1 to 16"))
	} else {
		c.RelayWorkers = n
	}
	if n, err := strconv.Atoi(get("CONSUMER_CONCURRENCY", "8")); err != nil || n < 1 || n > 256 {
		errs = append(errs, fmt.Errorf("CONSUMER_CONCURRENCY must be an integer from 1 to 256"))
	} else {
		c.ConsumerConcurrency = n
	}
	if n, err := strconv.Atoi(get("CONSUMER_BATCH", "16")); err != nil || n < 1 || n > 256 {
		errs = append(errs, fmt.Errorf("CONSUMER_BATCH must be an integer from 1 to 256"))
	} else {
		c.ConsumerBatch = n
	}
	if n, err := strconv.Atoi(get("CONSUMER_MAX_RETRIES", "5")); err != nil || n < 0 || n > 100 {
		errs = append(errs, fmt.Errorf("CONSUMER_MAX_RETRIES must be an integer from 0 to 100"))
	} else {
		c.ConsumerMaxRetries = n
	}
	if c.ConsumerUnavailableFor, err = time.ParseDuration(get("CONSUMER_UNAVAILABLE_FOR", "5m")); err != nil || c.ConsumerUnavailableFor <= 0 {
		errs = append(errs, fmt.Errorf("CONSUMER_UNAVAILABLE_FOR must be a positive duration like 5m"))
	}
	return c, errors.Join(errs...)
}

// jwtSecret returns the secret that signs tokens: JWT_SECRET, or in dev
// only, a fixed development secret (logged as a warning).
func (c config) jwtSecret(log *slog.Logger) ([]byte, error) {
	if c.JWTSecret != "" {
		if len(c.JWTSecret) < 32 {
			return nil, errors.New("JWT_SECRET must be at least 32 bytes")
		}
		return []byte(c.JWTSecret), nil
	}
	if c.Env != "dev" {
		return nil, errors.New("JWT_SECRET is required (set SHOP_ENV=dev to use an insecure development secret)")
	}
	log.Warn("JWT_SECRET is not set: signing tokens with the insecure development secret (SHOP_ENV=dev)")
	return []byte(devJWTSecret), nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, not %q", level)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}
