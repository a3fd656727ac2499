// Package dbpool opens the service's connection pool: sized for the
// machine, and with every connection switched to the application role, which
// may only INSERT and SELECT events.
package dbpool

import (
	"context"
	"fmt"
	neturl "net/url"
	"runtime"
	"strings"

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
	// connections than a few per core only queue inside PostgreSQL. The
	// URL's pool_max_conns, when given, says otherwise.
	if !hasParam(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns()
	}
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

// DefaultMaxConns is the pool's size unless the database URL sets
// pool_max_conns.
func DefaultMaxConns() int32 { return int32(max(8, 4*runtime.GOMAXPROCS(0))) }

// hasParam reports whether a connection string, a URL or key=value
// pairs, names the parameter.
func hasParam(conn, name string) bool {
	if u, err := neturl.Parse(conn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return u.Query().Has(name)
	}
	for _, f := range strings.Fields(conn) {
		if k, _, ok := strings.Cut(f, "="); ok && strings.TrimSpace(k) == name {
			return true
		}
	}
	return false
}
