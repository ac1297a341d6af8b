package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/shopdev/shop/migrations"
)

// Migrate creates the database named in databaseURL if it does not exist,
// then applies every pending migration; it reports whether it created the
// database. Several processes may run it at once: goose serializes them
// with a Postgres advisory lock.
func Migrate(ctx context.Context, databaseURL string, log *slog.Logger) (created bool, err error) {
	if created, err = CreateDatabase(ctx, databaseURL); err != nil {
		return false, err
	}
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return created, fmt.Errorf("parse database url: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	if created {
		log.Info("database created", "database", cfg.Database)
	}
	return created, migrate(ctx, db, log)
}

func migrate(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return classify(fmt.Errorf("apply migrations: %w", err))
	}
	for _, r := range results {
		log.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration.Round(time.Microsecond))
	}
	version, err := provider.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	log.Info("schema up to date", "version", version, "applied", len(results))
	return nil
}

// CreateDatabase creates the database named in databaseURL, connecting to
// the server's "postgres" database to do so, unless it already exists; it
// reports whether it created it.
func CreateDatabase(ctx context.Context, databaseURL string) (created bool, err error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return false, fmt.Errorf("parse database url: %w", err)
	}
	name := cfg.Database
	if name == "" {
		return false, errors.New("database url names no database")
	}
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, classify(fmt.Errorf("connect to create database %q: %w", name, err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return false, classify(fmt.Errorf("look up database %q: %w", name, err))
	}
	if exists {
		return false, nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505") {
		return false, nil // created by a concurrent migrate
	}
	if err != nil {
		return false, fmt.Errorf("create database %q: %w", name, err)
	}
	return true, nil
}

// DropDatabase drops the database named in databaseURL, closing any
// connection to it. Tests use it to clean up.
func DropDatabase(ctx context.Context, databaseURL string) error {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("parse database url: %w", err)
	}
	name := cfg.Database
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to drop database %q: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %q: %w", name, err)
	}
	return nil
}
