package projections_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/internal/dbpool"
	"github.com/saasapi/saasapi/internal/testdb"
	"github.com/saasapi/saasapi/projections"
)

func TestMain(m *testing.M) { os.Exit(testdb.Run(m)) }

// readEvents is the event source that cmd/saasapi hands to Rebuild and
// Verify.
var readEvents = commands.OpenedEvents(saasapi.EphemeralDataKeyring())

// world is a database with realistic history, made by the real commands
// through the application role.
type world struct {
	db       *testdb.DB
	svc      *commands.Service
	app      *pgxpool.Pool
	owner    saasapi.ID
	org      saasapi.ID
	orgName  string
	projects []saasapi.ID
}

func (w *world) as(user saasapi.ID) commands.Meta {
	return commands.Meta{Principal: saasapi.UserPrincipal(user), RequestID: "req-test"}
}

// newWorld records every kind of event: registrations and sign-ins,
// an organisation with members whose roles change and who leave, projects
// created, updated and deleted, an API key created and revoked.
func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{db: testdb.New(t)}
	w.app, w.svc = service(t, w.db.URL)
	var err error
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	register := func(email string) saasapi.ID {
		t.Helper()
		u, err := w.svc.Register(ctx, commands.Meta{RequestID: "req-register"},
			commands.RegisterInput{Email: email, Password: "correct horse battery", DisplayName: email})
		must(err)
		return u.ID
	}
	w.owner = register("owner@example.com")
	admin := register("admin@example.com")
	member := register("member@example.com")
	_, err = w.svc.Login(ctx, commands.Meta{RequestID: "req-login"}, "owner@example.com", "correct horse battery")
	must(err)
	if _, err := w.svc.Login(ctx, commands.Meta{RequestID: "req-login"}, "member@example.com", "wrong password!"); err == nil {
		t.Fatal("a wrong password signed in")
	}
	w.svc.Wait() // the failed sign-in is recorded in the background

	org, err := w.svc.CreateOrganisation(ctx, w.as(w.owner), commands.CreateOrganisationInput{Name: "Acme"})
	must(err)
	w.org = org.ID
	_, err = w.svc.AddMember(ctx, w.as(w.owner), w.org, commands.AddMemberInput{UserID: admin, Role: saasapi.RoleAdmin})
	must(err)
	_, err = w.svc.AddMember(ctx, w.as(admin), w.org, commands.AddMemberInput{UserID: member, Role: saasapi.RoleMember})
	must(err)
	_, err = w.svc.ChangeMemberRole(ctx, w.as(admin), w.org, member, saasapi.RoleViewer)
	must(err)
	w.orgName = "Acme Corporation"
	_, err = w.svc.UpdateOrganisation(ctx, w.as(admin), w.org, commands.UpdateOrganisationInput{Name: &w.orgName})
	must(err)

	for _, name := range []string{"alpha", "beta", "gamma"} {
		w.projects = append(w.projects, w.createProject(t, admin, name))
	}
	archived := "archived"
	_, err = w.svc.UpdateProject(ctx, w.as(admin), w.org, w.projects[0], commands.UpdateProjectInput{Status: &archived})
	must(err)
	must(w.svc.DeleteProject(ctx, w.as(w.owner), w.org, w.projects[1]))

	var keyID saasapi.ID
	_, err = w.svc.CreateAPIKey(ctx, w.as(w.owner), w.org, "ci", nil,
		func(k commands.CreatedAPIKey) (commands.Rendered, error) {
			keyID = k.Key.ID
			return commands.Rendered{Status: 201}, nil
		})
	must(err)
	_, err = w.svc.RevokeAPIKey(ctx, w.as(w.owner), w.org, keyID)
	must(err)
	must(w.svc.RemoveMember(ctx, w.as(w.owner), w.org, admin))
	return w
}

// service returns the commands on an application-role pool for url.
func service(t *testing.T, url string) (*pgxpool.Pool, *commands.Service) {
	t.Helper()
	app, err := dbpool.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	svc := commands.New(app, commands.Config{
		Keys:   saasapi.EphemeralDataKeyring(),
		Hasher: auth.NewHasher(auth.TestParams, 0),
		Tokens: auth.NewTokenIssuer([]byte(strings.Repeat("k", 32)), "test", time.Minute),
	})
	t.Cleanup(svc.Close) // before the pool closes
	return app, svc
}

func (w *world) createProject(t *testing.T, user saasapi.ID, name string) saasapi.ID {
	t.Helper()
	var id saasapi.ID
	_, err := w.svc.CreateProject(context.Background(), w.as(user), w.org, commands.CreateProjectInput{Name: name}, nil,
		func(p projections.Project) (commands.Rendered, error) {
			id = p.ID
			return commands.Rendered{Status: 201}, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (w *world) countEvents(t *testing.T) int64 {
	t.Helper()
	n, err := eventstore.CountEvents(context.Background(), w.db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// dump returns every row of every read table as text, to prove that
// something changed nothing.
func dump(t *testing.T, pool *pgxpool.Pool) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, table := range projections.Tables {
		rows, err := pool.Query(context.Background(), `SELECT t::text FROM `+pgx.Identifier{table}.Sanitize()+` t ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		if out[table], err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func sameDump(a, b map[string][]string) bool {
	for _, table := range projections.Tables {
		if strings.Join(a[table], "\n") != strings.Join(b[table], "\n") {
			return false
		}
	}
	return true
}

func TestVerifyFindsTamperingAndRebuildRepairs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	total := w.countEvents(t)

	n, diffs, err := projections.Verify(ctx, w.db.Pool, readEvents)
	if err != nil || n != total || len(diffs) != 0 {
		t.Fatalf("Verify of untouched tables = %d events, diffs %v, %v; want %d events and no diffs", n, diffs, err, total)
	}

	// Corrupt three read tables behind the projections' back: a changed
	// row, a deleted one, and one that no event explains.
	stray := saasapi.NewID()
	for _, sql := range []string{
		`UPDATE organisations SET name = 'tampered' WHERE id = $1`,
		`DELETE FROM projects WHERE organisation_id = $1 AND name = 'gamma'`,
		`INSERT INTO api_keys (organisation_id, id, name, key_prefix, version, created_at, updated_at)
			VALUES ($1, '` + string(stray) + `', 'stray', 'sk_x', 1, now(), now())`,
	} {
		if _, err := w.db.Pool.Exec(ctx, sql, w.org); err != nil {
			t.Fatal(err)
		}
	}
	before := dump(t, w.db.Pool)

	n, diffs, err = projections.Verify(ctx, w.db.Pool, readEvents)
	if err != nil || n != total {
		t.Fatalf("Verify = %d events, %v; want %d", n, err, total)
	}
	want := []struct{ table, key, live, rebuilt string }{
		{"api_keys", "organisation_id=" + string(w.org) + ", id=" + string(stray), ",stray,sk_x,", "missing"},
		{"projects", "organisation_id=" + string(w.org) + ", id=" + string(w.projects[2]), "missing", ",gamma,"},
		{"organisations", "id=" + string(w.org), ",tampered,", `,"` + w.orgName + `",`},
	}
	if len(diffs) != len(want) {
		t.Fatalf("Verify found %d diffs, want %d:\n%v", len(diffs), len(want), diffs)
	}
	for i, d := range diffs {
		wd := want[i]
		if d.Table != wd.table || d.Key != wd.key || !strings.Contains(d.Live, wd.live) || !strings.Contains(d.Rebuilt, wd.rebuilt) {
			t.Errorf("diff %d: got %s\nwant %s (%s): live containing %q, rebuilt containing %q",
				i, d, wd.table, wd.key, wd.live, wd.rebuilt)
		}
	}
	if after := dump(t, w.db.Pool); !sameDump(before, after) {
		t.Fatalf("Verify changed the read tables:\nbefore %v\nafter  %v", before, after)
	}

	var logs []string
	n, err = projections.Rebuild(ctx, w.db.Pool, readEvents, func(format string, args ...any) {
		logs = append(logs, format)
	})
	if err != nil || n != total {
		t.Fatalf("Rebuild = %d, %v; want %d", n, err, total)
	}
	if len(logs) == 0 || !strings.Contains(strings.Join(logs, "\n"), "events/s") {
		t.Errorf("Rebuild reported no throughput: %q", logs)
	}
	var name string
	if err := w.db.Pool.QueryRow(ctx, `SELECT name FROM organisations WHERE id = $1`, w.org).Scan(&name); err != nil || name != w.orgName {
		t.Fatalf("after Rebuild the organisation is named %q (%v), want %q", name, err, w.orgName)
	}
	if n, diffs, err = projections.Verify(ctx, w.db.Pool, readEvents); err != nil || n != total || len(diffs) != 0 {
		t.Fatalf("Verify after Rebuild = %d, %v, %v; want %d and no diffs", n, diffs, err, total)
	}
	// The indexes come back with their storage parameters (the trigram
	// index's short pending list, migration 010).
	var opts []string
	if err := w.db.Pool.QueryRow(ctx, `SELECT reloptions FROM pg_class WHERE relname = 'projects_name_trgm_idx'`).Scan(&opts); err != nil ||
		!slices.Contains(opts, "gin_pending_list_limit=256") {
		t.Fatalf("after Rebuild projects_name_trgm_idx has the options %q (%v), want gin_pending_list_limit=256", opts, err)
	}
	// Secrets and operational data are not projections: a rebuild keeps them.
	var creds int
	if err := w.db.Pool.QueryRow(ctx, `SELECT count(*) FROM user_credentials`).Scan(&creds); err != nil || creds != 3 {
		t.Fatalf("user_credentials after Rebuild: %d rows (%v), want 3", creds, err)
	}
}

// TestRebuildMakesWritersWait pauses a real rebuild after it took its lock
// and emptied the tables: a command started then waits for the lock (seen
// in pg_stat_activity) instead of writing into half-built tables, and
// completes once the rebuild commits.
// TestRebuildLetsWritersGoOn: while a rebuild replays into its copies
// (held paused here), ledger row locks are free and commands complete; a
// closed loop of commands runs through the whole rebuild, and every write
// made during it is in the swapped-in tables, which equal a replay.
func TestRebuildLetsWritersGoOn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)

	paused, resume := make(chan struct{}), make(chan struct{})
	first := true
	pausing := readEvents
	pausing.Streams = func(ctx context.Context, tx pgx.Tx, after saasapi.Event, limit int) ([]saasapi.Event, error) {
		if first {
			first = false
			close(paused)
			<-resume
		}
		return readEvents.Streams(ctx, tx, after, limit)
	}
	var rebuildErr error
	rebuilt := make(chan struct{})
	go func() {
		defer close(rebuilt)
		_, rebuildErr = projections.Rebuild(ctx, w.db.Pool, pausing, t.Logf)
	}()
	select {
	case <-paused:
	case <-rebuilt:
		t.Fatalf("Rebuild ended before replaying: %v", rebuildErr)
	}

	tx, err := w.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, `SET LOCAL lock_timeout = '1s'`)
	if err == nil {
		_, err = tx.Exec(ctx, `SELECT 1 FROM ledgers WHERE ledger_id = $1 FOR UPDATE`, w.org)
	}
	if err != nil {
		t.Errorf("locking a ledger row during a rebuild's replay: %v, want the lock", err)
	}
	_ = tx.Rollback(ctx)
	during := w.createProject(t, w.owner, "during the replay")

	// A closed loop of writes through the rest of the rebuild.
	var names []string
	var worst time.Duration
	var loopErr error
	loop := make(chan struct{})
	go func() {
		defer close(loop)
		for i := 0; ; i++ {
			select {
			case <-rebuilt:
				return
			default:
			}
			name := fmt.Sprintf("loop %d", i)
			began := time.Now()
			_, loopErr = w.svc.CreateProject(ctx, w.as(w.owner), w.org, commands.CreateProjectInput{Name: name}, nil,
				func(projections.Project) (commands.Rendered, error) { return commands.Rendered{Status: 201}, nil })
			if loopErr != nil {
				return
			}
			worst = max(worst, time.Since(began))
			names = append(names, name)
		}
	}()
	close(resume)
	<-loop
	<-rebuilt
	if rebuildErr != nil || loopErr != nil {
		t.Fatalf("Rebuild: %v; a write during it: %v", rebuildErr, loopErr)
	}
	t.Logf("%d writes during the rebuild, the slowest took %s", len(names), worst.Round(time.Microsecond))

	a, err := saasapi.Authorize(saasapi.UserPrincipal(w.owner), w.org, saasapi.RoleOwner, saasapi.PermReadProjects)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := projections.GetProject(ctx, w.db.Pool, a, during); err != nil || p.Name != "during the replay" {
		t.Fatalf("the project written during the replay: %+v, %v", p, err)
	}
	var found int
	if err := w.db.Pool.QueryRow(ctx, `SELECT count(*) FROM projects WHERE organisation_id = $1 AND name = ANY($2)`,
		w.org, names).Scan(&found); err != nil || found != len(names) {
		t.Fatalf("%d of the %d projects written during the rebuild are in the new tables (%v)", found, len(names), err)
	}
	total := w.countEvents(t)
	if n, diffs, err := projections.Verify(ctx, w.db.Pool, readEvents); err != nil || n != total || len(diffs) != 0 {
		t.Fatalf("Verify = %d, %v, %v; want %d and no diffs", n, diffs, err, total)
	}
	// The service's role can still write and read the swapped-in tables.
	w.createProject(t, w.owner, "after the rebuild")
}

// TestRebuildFailureChangesNothing makes the rebuild fail after the copies
// were loaded (every event twice: every row is copied twice, which the
// primary keys built after the load refuse): the rebuild rolls back and
// the read tables are as they were.
func TestRebuildFailureChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	before := dump(t, w.db.Pool)
	twice := readEvents
	twice.Streams = func(ctx context.Context, tx pgx.Tx, after saasapi.Event, limit int) ([]saasapi.Event, error) {
		evs, err := readEvents.Streams(ctx, tx, after, limit)
		return append(evs, evs...), err
	}
	if _, err := projections.Rebuild(ctx, w.db.Pool, twice, nil); err == nil || !strings.Contains(err.Error(), "23505") {
		t.Fatalf("Rebuild replaying every event twice: %v, want a unique violation (23505)", err)
	}
	if after := dump(t, w.db.Pool); !sameDump(before, after) {
		t.Fatal("a failed Rebuild changed the read tables")
	}
	// The copies it left behind do not stand in the way of the next one.
	var left int
	if err := w.db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'projections_rebuild'`).Scan(&left); err != nil || left == 0 {
		t.Fatalf("%d copies left by the failed Rebuild (%v); want some, to prove the next run copes", left, err)
	}
	if _, err := projections.Rebuild(ctx, w.db.Pool, readEvents, nil); err != nil {
		t.Fatalf("Rebuild after a failed one: %v", err)
	}
	if after := dump(t, w.db.Pool); !sameDump(before, after) {
		t.Fatal("a Rebuild of unchanged events changed the read tables")
	}
}

// TestProjectCountsMatchAReplay: the counters that commands keep event by
// event equal the ones a replay recomputes, and a drifted counter is found
// and repaired like any other read row.
func TestProjectCountsMatchAReplay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	var active, archived int
	if err := w.db.Pool.QueryRow(ctx, `SELECT
			coalesce(sum(live) FILTER (WHERE status = 'active'), 0), coalesce(sum(live) FILTER (WHERE status = 'archived'), 0)
		FROM project_counts WHERE organisation_id = $1`, w.org).Scan(&active, &archived); err != nil {
		t.Fatal(err)
	}
	var liveActive, liveArchived int
	if err := w.db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'active'), count(*) FILTER (WHERE status = 'archived')
		FROM projects WHERE organisation_id = $1 AND deleted_at IS NULL`, w.org).Scan(&liveActive, &liveArchived); err != nil {
		t.Fatal(err)
	}
	if active != liveActive || archived != liveArchived || archived == 0 {
		t.Fatalf("counters say %d active and %d archived, the projects table %d and %d (want equal, some archived)",
			active, archived, liveActive, liveArchived)
	}
	// Emptying a status (archive or delete its last project) drops its
	// counter rather than leaving a zero that a replay would not produce.
	for _, p := range w.projects {
		_ = w.svc.DeleteProject(ctx, w.as(w.owner), w.org, p) // some are gone already
	}
	if _, diffs, err := projections.Verify(ctx, w.db.Pool, readEvents); err != nil || len(diffs) != 0 {
		t.Fatalf("Verify after deleting every project: %v, %v; want no diffs", diffs, err)
	}
	if _, err := w.db.Pool.Exec(ctx, `INSERT INTO project_counts VALUES ($1, 'active', 5)`, w.org); err != nil {
		t.Fatal(err)
	}
	_, diffs, err := projections.Verify(ctx, w.db.Pool, readEvents)
	if err != nil || len(diffs) != 1 || diffs[0].Table != "project_counts" {
		t.Fatalf("Verify after a drifted counter: %v, %v; want one project_counts diff", diffs, err)
	}
	if _, err := projections.Rebuild(ctx, w.db.Pool, readEvents, nil); err != nil {
		t.Fatal(err)
	}
	if _, diffs, err = projections.Verify(ctx, w.db.Pool, readEvents); err != nil || len(diffs) != 0 {
		t.Fatalf("Verify after Rebuild: %v, %v; want no diffs", diffs, err)
	}
}

// TestAuditCountsMatchAReplay: the audit totals that commands keep event
// by event equal a count of the events, a drifted one is found by Verify
// and repaired by Rebuild.
func TestAuditCountsMatchAReplay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	var drift int
	if err := w.db.Pool.QueryRow(ctx, `SELECT count(*) FROM (
			SELECT c.filter, c.value, c.events, (SELECT count(*) FROM events e WHERE e.ledger_id = c.ledger_id AND
				CASE c.filter WHEN 'action' THEN e.event_type WHEN 'target_type' THEN e.stream_type
					WHEN 'actor_user_id' THEN e.actor_user_id ELSE e.actor_api_key_id END = c.value) AS counted
			FROM audit_counts c WHERE c.ledger_id = $1) x WHERE events <> counted`, w.org).Scan(&drift); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := w.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_counts WHERE ledger_id = $1`, w.org).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if drift != 0 || rows < 8 {
		t.Fatalf("%d of %d audit counters differ from a count of the events (want 0 of at least 8)", drift, rows)
	}
	if _, err := w.db.Pool.Exec(ctx, `UPDATE audit_counts SET events = events + 1
		WHERE ledger_id = $1 AND filter = 'action' AND value = 'project.created'`, w.org); err != nil {
		t.Fatal(err)
	}
	_, diffs, err := projections.Verify(ctx, w.db.Pool, readEvents)
	if err != nil || len(diffs) != 1 || diffs[0].Table != "audit_counts" {
		t.Fatalf("Verify after a drifted audit counter: %v, %v; want one audit_counts diff", diffs, err)
	}
	if _, err := projections.Rebuild(ctx, w.db.Pool, readEvents, nil); err != nil {
		t.Fatal(err)
	}
	if _, diffs, err = projections.Verify(ctx, w.db.Pool, readEvents); err != nil || len(diffs) != 0 {
		t.Fatalf("Verify after Rebuild: %v, %v; want no diffs", diffs, err)
	}
}
