package testdb_test

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/saasapi/saasapi/internal/testdb"
	"github.com/saasapi/saasapi/migrations"
)

func TestMain(m *testing.M) { os.Exit(testdb.Run(m)) }

// names collects the databases the parallel tests got, to check they differ.
var names sync.Map

func checkFresh(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	db := testdb.New(t)
	if prev, dup := names.LoadOrStore(db.Name, t.Name()); dup {
		t.Fatalf("database %s handed to both %s and %s", db.Name, prev, t.Name())
	}

	var events bool
	if err := db.Pool.QueryRow(ctx, "SELECT to_regclass('events') IS NOT NULL").Scan(&events); err != nil {
		t.Fatal(err)
	}
	if !events {
		t.Fatal("table events missing from the fresh database")
	}
	version, err := migrations.CurrentVersion(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	if version != migrations.Latest() {
		t.Errorf("schema version %d, want %d", version, migrations.Latest())
	}

	// A fresh database is empty, whatever the other tests write to theirs.
	var n int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM ledgers").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("fresh database has %d ledgers, want 0", n)
	}
	if _, err := db.Pool.Exec(ctx, "INSERT INTO ledgers (ledger_id, ledger_type) VALUES ($1, 'organisation')", t.Name()); err != nil {
		t.Fatal(err)
	}
}

func TestFreshDatabaseA(t *testing.T) { t.Parallel(); checkFresh(t) }
func TestFreshDatabaseB(t *testing.T) { t.Parallel(); checkFresh(t) }
func TestFreshDatabaseC(t *testing.T) { t.Parallel(); checkFresh(t) }

func TestURLs(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := testdb.New(t)

	// DB.URL connects as a superuser, which tests need to, say, disable the
	// append-only triggers.
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var super bool
	var current string
	if err := conn.QueryRow(ctx, "SELECT rolsuper, current_database() FROM pg_roles WHERE rolname = current_user").Scan(&super, &current); err != nil {
		t.Fatal(err)
	}
	if !super || current != db.Name {
		t.Errorf("DB.URL: superuser %v in database %q, want a superuser in %q", super, current, db.Name)
	}

	// Another role, by URLAs.
	// With a password: a server reached through SAAS_API_TEST_DATABASE_URL
	// (CI's service container) may not trust local TCP connections the way
	// the private test clusters do.
	role := "testdb_" + db.Name[len(db.Name)-12:]
	const rolePassword = "local-test-password"
	if _, err := conn.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD '"+rolePassword+"' IN ROLE "+migrations.AppRole); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin, err := pgx.Connect(context.Background(), testdb.ServerURL(t))
		if err != nil {
			t.Error(err)
			return
		}
		defer func() { _ = admin.Close(context.Background()) }()
		// Roles are cluster-wide: dropping the database leaves it behind.
		if _, err := admin.Exec(context.Background(), "DROP ROLE "+role); err != nil {
			t.Error(err)
		}
	})
	app, err := pgx.Connect(ctx, db.URLAs(role, rolePassword))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = app.Close(ctx) }()
	if _, err := app.Exec(ctx, "SET ROLE "+migrations.AppRole); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Exec(ctx, "DELETE FROM events"); err == nil {
		t.Error("the application role could delete events")
	}
}

func TestDropAtCleanup(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("sub", func(t *testing.T) { name = testdb.New(t).Name })

	conn, err := pgx.Connect(t.Context(), testdb.ServerURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(t.Context()) }()
	var exists bool
	if err := conn.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

// BenchmarkNew measures what a test pays for its database (the drops happen
// after the timing, at the benchmark's cleanup).
func BenchmarkNew(b *testing.B) {
	testdb.New(b) // the template and, if needed, the server
	b.ResetTimer()
	for b.Loop() {
		testdb.New(b)
	}
}

// TestNewEmptyMigrates migrates several empty databases at once, as tests of
// the migrations may: they must not race on the cluster-wide role.
func TestNewEmptyMigrates(t *testing.T) {
	t.Parallel()
	for i := range 3 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			db := testdb.NewEmpty(t)
			conn, err := pgx.Connect(t.Context(), db.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close(t.Context()) }()
			if v, err := migrations.CurrentVersion(t.Context(), conn); err != nil || v != 0 {
				t.Fatalf("empty database at version %d, %v; want 0", v, err)
			}
			if v, err := migrations.Migrate(t.Context(), conn); err != nil || v != migrations.Latest() {
				t.Fatalf("Migrate = %d, %v; want %d", v, err, migrations.Latest())
			}
		})
	}
}
