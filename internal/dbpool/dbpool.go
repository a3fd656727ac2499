// Package dbpool opens the service's connection pool: sized for the
// machine, and with every connection switched to the application role, which
// may only INSERT and SELECT events.
package dbpool

import (
	"context"
	"fmt"
	"runtime"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi/migrations"
)

// Open returns a pool for url. It connects lazily; call Ping to check the
// database. Every connection runs SET ROLE to the application role, so
// even credentials that own the schema cannot rewrite history through the
// service. A database that was never migrated has no such role: its
// connections fail until it is, which /readyz reports.
//
// configure, if given, adjusts the configuration last (tests add a
// tracer).
func Open(ctx context.Context, url string, configure ...func(*pgxpool.Config)) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	// Each command holds one connection for a few round trips; more
	// connections than a few per core only queue inside PostgreSQL.
	cfg.MaxConns = int32(max(8, 4*runtime.GOMAXPROCS(0)))
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "SET ROLE "+migrations.AppRole)
		return err
	}
	for _, c := range configure {
		c(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	return pool, nil
}
