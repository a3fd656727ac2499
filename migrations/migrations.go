// Package migrations owns the database schema: tern migrations in embedded
// SQL files and the function that applies them to a connection.
package migrations

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed sql/*.sql
var files embed.FS

// VersionTable is where tern records the schema version.
const VersionTable = "public.schema_version"

// AppRole is the database role the service switches to after connecting: it
// may only INSERT and SELECT events.
const AppRole = "saas_api_app"

func sqlFS() fs.FS {
	sub, err := fs.Sub(files, "sql")
	if err != nil {
		panic(err)
	}
	return sub
}

func newMigrator(ctx context.Context, conn *pgx.Conn) (*migrate.Migrator, error) {
	m, err := migrate.NewMigrator(ctx, conn, VersionTable)
	if err != nil {
		return nil, fmt.Errorf("create migrator: %w", err)
	}
	if err := m.LoadMigrations(sqlFS()); err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return m, nil
}

// Migrate brings the database behind conn to the latest schema and returns
// the resulting version. It is safe to run again and concurrently: tern
// takes an advisory lock.
func Migrate(ctx context.Context, conn *pgx.Conn) (int32, error) {
	m, err := newMigrator(ctx, conn)
	if err != nil {
		return 0, err
	}
	if err := m.Migrate(ctx); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	return m.GetCurrentVersion(ctx)
}

// MigrateTo brings the database behind conn to the given version; tests of
// a migration use it to set up the schema that migration finds.
func MigrateTo(ctx context.Context, conn *pgx.Conn, version int32) error {
	m, err := newMigrator(ctx, conn)
	if err != nil {
		return err
	}
	if err := m.MigrateTo(ctx, version); err != nil {
		return fmt.Errorf("migrate to version %d: %w", version, err)
	}
	return nil
}

// VersionNamed returns the version of the migration whose file name ends in
// suffix (such as "_ledger_tree.sql"), or 0 when there is none, so that a
// test of a migration sets up the schema just before it whatever its number.
func VersionNamed(suffix string) int32 {
	entries, err := fs.Glob(sqlFS(), "*.sql")
	if err != nil {
		panic(err)
	}
	sort.Strings(entries)
	for i, name := range entries {
		if strings.HasSuffix(name, suffix) {
			return int32(i + 1)
		}
	}
	return 0
}

// Latest returns the version the embedded migrations lead to.
func Latest() int32 {
	entries, err := fs.Glob(sqlFS(), "*.sql")
	if err != nil {
		panic(err)
	}
	return int32(len(entries))
}

// CurrentVersion reads the schema version recorded in the database; 0 when
// the database was never migrated.
func CurrentVersion(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int32, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", VersionTable).Scan(&exists); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v int32
	if err := q.QueryRow(ctx, "SELECT version FROM "+VersionTable).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// Hash identifies the embedded migrations' content, so that test template
// databases are rebuilt when a migration changes.
func Hash() string {
	entries, err := fs.Glob(sqlFS(), "*.sql")
	if err != nil {
		panic(err)
	}
	sort.Strings(entries)
	h := sha256.New()
	for _, name := range entries {
		b, err := fs.ReadFile(sqlFS(), name)
		if err != nil {
			panic(err)
		}
		_, _ = fmt.Fprintf(h, "%s\x00%d\x00", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}
