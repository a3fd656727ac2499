// Package testdb gives each test its own fresh, fully migrated PostgreSQL
// database, cheaply: the migrations run once into a template database, and
// every test gets a copy made with CREATE DATABASE ... TEMPLATE.
//
// Usage:
//
//	func TestMain(m *testing.M) { os.Exit(testdb.Run(m)) }
//
//	func TestSomething(t *testing.T) {
//		t.Parallel()
//		db := testdb.New(t)
//		db.Pool.Exec(ctx, "...")        // a pool on the fresh database
//		pgx.Connect(ctx, db.URL)         // or connections of your own
//	}
//
// NewEmpty gives a database without the schema, for testing the migrations.
// The database is dropped when the test ends. DB.URL connects as the
// server's superuser; tests that need another role can connect with
// DB.URLAs, or SET ROLE. ServerURL gives the superuser URL of the server's
// maintenance database, for work outside any one test database.
//
// The server comes from the environment variable SAAS_API_TEST_DATABASE_URL
// (EnvURL): a URL, as a superuser, to any database of a PostgreSQL server,
// such as postgres://postgres@127.0.0.1:5432/postgres. `make test` sets it
// with internal/withcluster, so that all test packages share one server.
// When it is unset, the first New of a test binary starts a private
// throwaway cluster (pgcluster.StartTemp), which Run stops when the tests are
// done; that is why packages using testdb need the TestMain above.
//
// Template databases are named saasapi_tmpl_<first 12 hex digits of
// migrations.Hash()>, so a changed migration gets a new template. They are
// kept on the server, so that a long-lived server given by
// SAAS_API_TEST_DATABASE_URL pays for the migrations once; drop old ones
// (ALTER DATABASE x IS_TEMPLATE false; DROP DATABASE x) whenever you like.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/saasapi/saasapi/internal/pgcluster"
	"github.com/saasapi/saasapi/migrations"
)

// EnvURL names the environment variable holding the superuser URL of the
// PostgreSQL server that tests use.
const EnvURL = "SAAS_API_TEST_DATABASE_URL"

// DB is a fresh database belonging to one test.
type DB struct {
	// Name is the database's name.
	Name string
	// URL connects to the database as the server's superuser.
	URL string
	// Pool is a pool on URL. It connects lazily and is closed when the test
	// ends, before the database is dropped.
	Pool *pgxpool.Pool
}

// URLAs returns the URL of the database with user and password (empty for
// none) in place of the superuser. Roles are cluster-wide: give the ones a
// test creates names that no parallel test uses.
func (db *DB) URLAs(user, password string) string {
	u, err := url.Parse(db.URL)
	if err != nil {
		panic(err) // New made db.URL from a URL that parsed
	}
	if password == "" {
		u.User = url.User(user)
	} else {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}

// New creates a fresh database for t from the migrated template and drops
// it when t ends. It fails t if there is no server to be had.
func New(t testing.TB) *DB {
	t.Helper()
	return newDB(t, true)
}

// NewEmpty is New without the schema, for testing the migrations
// themselves. The cluster-wide objects that the migrations create, such as
// the application role, already exist (the template's migration made them),
// so that migrating several empty databases in parallel does not race on
// creating them.
func NewEmpty(t testing.TB) *DB {
	t.Helper()
	return newDB(t, false)
}

func newDB(t testing.TB, migrated bool) *DB {
	t.Helper()
	admin := ServerURL(t)
	ctx := t.Context()
	tmpl, err := ensureTemplate(ctx, admin)
	if err != nil {
		t.Fatalf("testdb: template database: %v", err)
	}
	name := freshName(t.Name())
	if migrated {
		err = tmpl.clone(ctx, admin, name)
	} else {
		err = adminExec(ctx, admin, "CREATE DATABASE "+ident(name)+tmpl.strategy)
	}
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	// Registered before the pool's Close, so it runs after it.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := adminExec(ctx, admin, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
			t.Errorf("testdb: drop database %s: %v", name, err)
		}
	})
	db := &DB{Name: name, URL: withDatabase(admin, name)}
	if db.Pool, err = pgxpool.New(ctx, db.URL); err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(db.Pool.Close)
	return db
}

// NewURL is New for tests that only want the URL.
func NewURL(t testing.TB) string {
	t.Helper()
	return New(t).URL
}

// ServerURL returns the superuser URL of the server's maintenance database
// (the database named in SAAS_API_TEST_DATABASE_URL, or "postgres" on the
// private cluster), starting the private cluster if needed. Use it for
// server-wide work such as creating roles; use New for a database to test
// in.
func ServerURL(t testing.TB) string {
	t.Helper()
	server.once.Do(startServer)
	if server.err != nil {
		t.Fatalf("testdb: %v", server.err)
	}
	return server.url
}

// Run runs the tests of m and then stops the private cluster, if New or
// ServerURL started one. Use it as func TestMain(m *testing.M) {
// os.Exit(testdb.Run(m)) }.
func Run(m *testing.M) int {
	server.mu.Lock()
	server.run = true
	server.mu.Unlock()

	code := m.Run()

	server.mu.Lock()
	defer server.mu.Unlock()
	if server.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := server.cluster.Stop(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "testdb: %v\n", err)
		}
		server.cluster = nil
	}
	return code
}

// server is the one server of the test binary.
var server struct {
	once sync.Once
	url  string
	err  error

	mu      sync.Mutex
	run     bool               // Run is in charge: it will stop cluster
	cluster *pgcluster.Cluster // the private cluster, if started
}

func startServer() {
	if u := os.Getenv(EnvURL); u != "" {
		if parsed, err := url.Parse(u); err != nil || (parsed.Scheme != "postgres" && parsed.Scheme != "postgresql") {
			server.err = fmt.Errorf("%s=%q is not a postgres:// URL", EnvURL, u)
			return
		}
		server.url = u
		return
	}
	server.mu.Lock()
	defer server.mu.Unlock()
	if !server.run {
		// Without Run nobody would stop the cluster and its server would
		// outlive the test binary.
		server.err = fmt.Errorf("%s is not set, and a private PostgreSQL cluster needs Run to stop it: "+
			"add func TestMain(m *testing.M) { os.Exit(testdb.Run(m)) } to the package's tests", EnvURL)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgcluster.StartTemp(ctx, pgcluster.Options{Fast: true})
	if err != nil {
		server.err = fmt.Errorf("%s is not set and a private cluster could not be started: %w", EnvURL, err)
		return
	}
	server.cluster = c
	server.url = c.URL("postgres")
}

// templateLockKey is the pg_advisory_lock key under which templates are
// built, so that test binaries sharing a server build each template once.
// One key for all templates also serialises builds of different
// migrations.Hash() values (two branches sharing a server), whose CREATE
// ROLE of the cluster-wide application role would otherwise race.
const templateLockKey = 0x73616173_746d706c // "saastmpl"

// templateDB is a built template database.
type templateDB struct {
	name string
	// strategy is the CREATE DATABASE STRATEGY clause for copies. Without
	// fsync, FILE_COPY (PostgreSQL 15's old default) copies the small
	// template about four times faster than WAL_LOG, which writes every
	// page to the WAL; with fsync, its checkpoints make it the slower one.
	strategy string
}

// template caches the built template for the test binary.
var template struct {
	mu sync.Mutex
	db *templateDB
}

// ensureTemplate returns the template database for the current migrations,
// building it if no one has.
func ensureTemplate(ctx context.Context, admin string) (*templateDB, error) {
	template.mu.Lock()
	defer template.mu.Unlock()
	if template.db != nil {
		return template.db, nil
	}
	tmpl := &templateDB{name: "saasapi_tmpl_" + migrations.Hash()[:12]}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return nil, err
	}
	defer closeConn(ctx, conn)

	var fileCopy bool
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int >= 150000 "+
		"AND NOT current_setting('fsync')::bool").Scan(&fileCopy); err != nil {
		return nil, err
	}
	if fileCopy {
		tmpl.strategy = " STRATEGY FILE_COPY"
	}

	ready, err := isTemplate(ctx, conn, tmpl.name)
	if err != nil {
		return nil, err
	}
	if !ready {
		// Session-level lock: released by the unlock below or, if we die,
		// by the connection closing.
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(templateLockKey)); err != nil {
			return nil, err
		}
		defer func() {
			// Failing, the lock goes with the connection closed next.
			_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(templateLockKey))
		}()
		if ready, err = isTemplate(ctx, conn, tmpl.name); err != nil {
			return nil, err
		}
		if !ready {
			if err := buildTemplate(ctx, conn, admin, tmpl.name); err != nil {
				return nil, err
			}
		}
	}
	template.db = tmpl
	return tmpl, nil
}

// isTemplate tells whether the template is complete: buildTemplate marks it
// a template only once the migrations succeeded.
func isTemplate(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)", name).Scan(&ok)
	return ok, err
}

func buildTemplate(ctx context.Context, conn *pgx.Conn, admin, name string) error {
	// A database of that name that is not marked a template is the
	// remainder of a build that died half-way.
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident(name)); err != nil {
		return err
	}
	tconn, err := pgx.Connect(ctx, withDatabase(admin, name))
	if err != nil {
		return err
	}
	version, err := migrations.Migrate(ctx, tconn)
	closeConn(ctx, tconn)
	if err != nil {
		return err
	}
	if version != migrations.Latest() {
		return fmt.Errorf("migrated %s to version %d, want %d", name, version, migrations.Latest())
	}
	// No connections: CREATE DATABASE ... TEMPLATE fails while anyone is
	// connected to the template.
	_, err = conn.Exec(ctx, "ALTER DATABASE "+ident(name)+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
	return err
}

// clone creates database name as a copy of the template.
func (tmpl *templateDB) clone(ctx context.Context, admin, name string) error {
	for attempt := 1; ; attempt++ {
		err := adminExec(ctx, admin, "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(tmpl.name)+tmpl.strategy)
		// object_in_use: the template still has a session, such as the
		// migration connection whose backend is still exiting. PostgreSQL
		// already waits 5s for it; try a couple more times.
		var pgErr *pgconn.PgError
		if attempt < 3 && errors.As(err, &pgErr) && pgErr.Code == "55006" {
			continue
		}
		if err != nil {
			return fmt.Errorf("create database %s from %s: %w", name, tmpl.name, err)
		}
		return nil
	}
}

func adminExec(ctx context.Context, admin, sql string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer closeConn(ctx, conn)
	_, err = conn.Exec(ctx, sql)
	return err
}

// closeConn closes conn, even when ctx is done. Its error only says that
// the goodbye to the server was lost, and the server notices anyway.
func closeConn(ctx context.Context, conn *pgx.Conn) {
	_ = conn.Close(context.WithoutCancel(ctx))
}

// freshName makes a database name unique across parallel test binaries,
// with the test's name in it to tell whose a database is.
func freshName(testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		switch {
		case b.Len() >= 24:
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return "saasapi_t_" + b.String() + "_" + hex.EncodeToString(randomBytes(6))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return b
}

// withDatabase returns the server URL admin pointed at database name.
func withDatabase(admin, name string) string {
	u, err := url.Parse(admin)
	if err != nil {
		panic(err) // startServer checked it
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }
