package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
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
	"github.com/saasapi/saasapi/internal/pgcluster"
	"github.com/saasapi/saasapi/internal/testdb"
	"github.com/saasapi/saasapi/projections"
)

// opsWorld is a database with some history, made by the real commands.
type opsWorld struct {
	url    string
	pool   *pgxpool.Pool // superuser
	org    saasapi.ID
	events int64
	users  []saasapi.ID // the owner, then a member
}

func newOpsWorld(t *testing.T) opsWorld {
	t.Helper()
	ctx := context.Background()
	db := testdb.New(t)
	app, err := dbpool.Open(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	svc := commands.New(app, commands.Config{
		Keys:   testKeyring(t),
		Hasher: auth.NewHasher(auth.TestParams, 0),
		Tokens: auth.NewTokenIssuer([]byte(strings.Repeat("k", 32)), "test", time.Minute),
	})
	t.Cleanup(svc.Close) // before the pool closes
	var users []saasapi.ID
	for _, email := range []string{"owner@example.com", "member@example.com"} {
		u, err := svc.Register(ctx, commands.Meta{RequestID: "req"},
			commands.RegisterInput{Email: email, Password: "correct horse battery", DisplayName: email})
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, u.ID)
	}
	owner := commands.Meta{Principal: saasapi.UserPrincipal(users[0]), RequestID: "req"}
	org, err := svc.CreateOrganisation(ctx, owner, commands.CreateOrganisationInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddMember(ctx, owner, org.ID, commands.AddMemberInput{UserID: users[1], Role: saasapi.RoleMember}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateProject(ctx, owner, org.ID, commands.CreateProjectInput{Name: "alpha"}, nil,
		func(projections.Project) (commands.Rendered, error) { return commands.Rendered{Status: 201}, nil }); err != nil {
		t.Fatal(err)
	}
	n, err := eventstore.CountEvents(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	return opsWorld{url: db.URL, pool: db.Pool, org: org.ID, events: n, users: users}
}

// runOps runs the program with the world's database URL.
func (w opsWorld) run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(t.Context(), args, environment(map[string]string{"SAAS_API_DATABASE_URL": w.url, "SAAS_API_DATA_KEY": testDataKey}), &out, &errOut)
	return out.String(), errOut.String(), err
}

// tamperEvent rewrites a stored event's payload as the superuser, with the
// append-only trigger disabled.
func tamperEvent(t *testing.T, pool *pgxpool.Pool, ledger saasapi.ID, seq int64) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, sql := range []string{
		`ALTER TABLE events DISABLE TRIGGER events_append_only`,
		`UPDATE events SET payload = '{"user_id":"01M00000000000000000000000","role":"owner"}' WHERE ledger_id = $1 AND sequence = $2`,
		`ALTER TABLE events ENABLE TRIGGER events_append_only`,
	} {
		args := []any{}
		if strings.Contains(sql, "$1") {
			args = []any{ledger, seq}
		}
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestAuditVerifyCommand(t *testing.T) {
	t.Parallel()
	w := newOpsWorld(t)
	// Two user ledgers (registration) and the organisation's.
	want := fmt.Sprintf("verified 3 ledgers, %d events\n", w.events)
	out, stderr, err := w.run(t, "audit", "verify")
	if err != nil || out != want {
		t.Fatalf("audit verify: %q, %v; want %q", out, err, want)
	}
	if summary := fmt.Sprintf("audit verify: %d events in ", w.events); !strings.HasPrefix(stderr, summary) ||
		!strings.HasSuffix(stderr, " events/s)\n") || strings.ContainsAny(stderr, "\r\x1b") {
		t.Errorf("audit verify on a non-terminal stderr: %q; want the plain summary %q...", stderr, summary)
	}
	// organisation.created, member.added (owner), member.added, project.created.
	if out, _, err := w.run(t, "audit", "verify", "--org", string(w.org)); err != nil || out != "verified 1 ledger, 4 events\n" {
		t.Fatalf("audit verify --org: %q, %v", out, err)
	}
	// IDs are accepted in any letter case, as in the API.
	if out, _, err := w.run(t, "audit", "verify", "--org="+strings.ToLower(string(w.org))); err != nil || out != "verified 1 ledger, 4 events\n" {
		t.Fatalf("audit verify --org in lower case: %q, %v", out, err)
	}

	tamperEvent(t, w.pool, w.org, 3)
	wantErr := fmt.Sprintf("ledger %s: first bad sequence 3: stored hash does not match the hash recomputed from the row", w.org)
	for _, args := range [][]string{{"audit", "verify"}, {"audit", "verify", "--org", string(w.org)}} {
		out, _, err := w.run(t, args...)
		var ce *eventstore.ChainError
		if !errors.As(err, &ce) || err.Error() != wantErr || out != "" {
			t.Errorf("%v after tampering: stdout %q, error %v; want no report and the error %q", args, out, err, wantErr)
		}
	}
}

func TestAuditVerifyUsage(t *testing.T) {
	t.Parallel()
	w := opsWorld{url: "postgres://127.0.0.1:1/none"}
	for _, args := range [][]string{{"audit"}, {"audit", "check"}, {"audit", "verify", "--bogus"}, {"audit", "verify", "extra"}} {
		if _, stderr, err := w.run(t, args...); !errors.Is(err, errUsage) || !strings.Contains(stderr, "saasapi audit verify [--org ID]") {
			t.Errorf("%v: %v, stderr %q; want the usage", args, err, stderr)
		}
	}
	if _, _, err := w.run(t, "audit", "verify", "--org", "not-an-id"); err == nil || !strings.Contains(err.Error(), `--org "not-an-id"`) {
		t.Errorf("a malformed --org: %v", err)
	}
	for _, args := range [][]string{{"projections"}, {"projections", "replay"}, {"projections", "verify", "now"}} {
		if _, stderr, err := w.run(t, args...); !errors.Is(err, errUsage) || !strings.Contains(stderr, "Usage:") ||
			!strings.Contains(stderr, "saasapi projections") {
			t.Errorf("%v: %v, stderr %q; want the usage", args, err, stderr)
		}
	}
	for _, args := range [][]string{{"audit", "--help"}, {"audit", "verify", "-h"}, {"projections", "--help"}} {
		if stdout, _, err := w.run(t, args...); err != nil || !strings.HasPrefix(stdout, "Usage:") {
			t.Errorf("%v: %v, stdout %q; want the usage", args, err, stdout)
		}
	}
	var out bytes.Buffer
	for _, args := range [][]string{{"audit", "verify"}, {"projections", "verify"}, {"projections", "rebuild"}} {
		err := run(t.Context(), args, environment(nil), &out, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "SAAS_API_DATABASE_URL is required") {
			t.Errorf("%v without a database URL: %v", args, err)
		}
	}
}

func TestAuditVerifyUnknownOrganisation(t *testing.T) {
	t.Parallel()
	w := newOpsWorld(t)
	id := saasapi.NewID()
	if _, _, err := w.run(t, "audit", "verify", "--org", string(id)); err == nil || err.Error() != "audit verify: there is no ledger "+string(id) {
		t.Fatalf("audit verify of an unknown organisation: %v", err)
	}
}

func TestProjectionsCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newOpsWorld(t)
	want := fmt.Sprintf("read tables match a replay of %d events\n", w.events)
	out, stderr, err := w.run(t, "projections", "verify")
	if err != nil || out != want {
		t.Fatalf("projections verify: %q, %v; want %q", out, err, want)
	}
	if summary := fmt.Sprintf("projections verify: %d events in ", w.events); !strings.HasPrefix(stderr, summary) ||
		!strings.HasSuffix(stderr, " events/s)\n") {
		t.Errorf("projections verify stderr %q; want the summary %q...", stderr, summary)
	}

	if _, err := w.pool.Exec(ctx, `UPDATE organisations SET name = 'tampered' WHERE id = $1`, w.org); err != nil {
		t.Fatal(err)
	}
	out, _, err = w.run(t, "projections", "verify")
	wantErr := fmt.Sprintf("projections verify: 1 rows differ from a replay of %d events", w.events)
	if err == nil || !strings.HasPrefix(err.Error(), wantErr) {
		t.Fatalf("projections verify after tampering: %v; want an error starting %q", err, wantErr)
	}
	lines := strings.Split(out, "\n")
	if len(lines) != 4 || lines[0] != "organisations id="+string(w.org)+":" ||
		!strings.HasPrefix(lines[1], "  live:    ("+string(w.org)+",tampered,") ||
		!strings.HasPrefix(lines[2], "  rebuilt: ("+string(w.org)+",Acme,") || lines[3] != "" {
		t.Fatalf("projections verify report:\n%s", out)
	}
	var name string
	if err := w.pool.QueryRow(ctx, `SELECT name FROM organisations WHERE id = $1`, w.org).Scan(&name); err != nil || name != "tampered" {
		t.Fatalf("projections verify changed the table: name %q, %v", name, err)
	}

	out, stderr, err = w.run(t, "projections", "rebuild")
	prefix := fmt.Sprintf("rebuilt the read tables from %d events in ", w.events)
	if err != nil || !strings.HasPrefix(out, prefix) || !strings.HasSuffix(out, " events/s)\n") {
		t.Fatalf("projections rebuild: %q, %v; want %q...", out, err, prefix)
	}
	if !strings.Contains(stderr, "rebuild: replayed") ||
		!strings.Contains(stderr, fmt.Sprintf("projections rebuild: %d events in ", w.events)) {
		t.Errorf("projections rebuild reported no progress or summary: %q", stderr)
	}
	if out, _, err := w.run(t, "projections", "verify"); err != nil || out != want {
		t.Fatalf("projections verify after rebuild: %q, %v; want %q", out, err, want)
	}
}

// TestAuditAtScale measures the audit machinery on a durable cluster with a
// ledger of a million events. It is too slow for the default suite; run it
// with
//
//	SAAS_API_BIG=1 go test -run '^TestAuditAtScale$' -v -timeout 2h ./cmd/saasapi/
//
// Figures are printed, never asserted.
func TestAuditAtScale(t *testing.T) {
	if os.Getenv("SAAS_API_BIG") == "" {
		t.Skip("set SAAS_API_BIG=1 to build a million-event ledger and measure")
	}
	ctx := context.Background()
	cluster, err := pgcluster.StartTemp(ctx, pgcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Stop(context.Background()) })
	url := cluster.URL(pgcluster.AppDatabase)
	if _, err := migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	big := envInt(t, "SAAS_API_BIG_EVENTS", 1_000_000)
	small := envInt(t, "SAAS_API_BIG_SMALL_EVENTS", 2_000)
	g := &generator{pool: pool, rnd: rand.New(rand.NewPCG(1, 2)), t0: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	for i := range 10 {
		g.users = append(g.users, g.user(ctx, t, i))
	}
	start := time.Now()
	bigOrg := g.org(ctx, t, 0, big)
	elapsed := time.Since(start)
	t.Logf("append: %d events into one ledger in %s: %.0f events/s (5,000 per transaction, projections applied inline)",
		big, elapsed.Round(time.Millisecond), float64(big)/elapsed.Seconds())
	start = time.Now()
	for i := 1; i < 100; i++ {
		g.org(ctx, t, i, small)
	}
	elapsed = time.Since(start)
	t.Logf("append: 99 more ledgers of %d events in %s: %.0f events/s", small, elapsed.Round(time.Millisecond),
		float64(99*small)/elapsed.Seconds())
	total, err := eventstore.CountEvents(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		t.Fatal(err)
	}
	var size string
	if err := pool.QueryRow(ctx, `SELECT pg_size_pretty(pg_total_relation_size('events'))`).Scan(&size); err != nil {
		t.Fatal(err)
	}
	t.Logf("database: %d events in 100 organisation and 10 user ledgers; events table with indexes %s", total, size)

	env := environment(map[string]string{"SAAS_API_DATABASE_URL": url, "SAAS_API_DATA_KEY": testDataKey})
	for _, args := range [][]string{{"audit", "verify"}, {"audit", "verify", "--org", string(bigOrg.id)},
		{"projections", "rebuild"}, {"projections", "verify"}} {
		events := total
		if len(args) > 2 {
			events = int64(big)
		}
		var out, errOut bytes.Buffer
		start := time.Now()
		err := run(ctx, args, env, &out, &errOut)
		elapsed := time.Since(start)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut.String())
		}
		t.Logf("saasapi %s: %q in %s (%.0f events/s)", strings.Join(args, " "),
			strings.TrimSpace(out.String()), elapsed.Round(time.Millisecond), float64(events)/elapsed.Seconds())
	}

	access, err := saasapi.Authorize(saasapi.UserPrincipal(g.users[0]), bigOrg.id, saasapi.RoleOwner, saasapi.PermReadAudit)
	if err != nil {
		t.Fatal(err)
	}
	measureExport(ctx, t, pool, access, eventstore.AuditFilter{}, "whole ledger")
	measureExport(ctx, t, pool, access, eventstore.AuditFilter{ActorUserID: g.users[3]}, "actor_user_id filter")

	// SAAS_API_BIG_EXPLAIN=1 prints the plans of the audit queries, logged
	// by auto_explain into the server's log.
	var explain *pgxpool.Pool
	serverLog := func() string { return "" }
	if os.Getenv("SAAS_API_BIG_EXPLAIN") != "" {
		cfg, err := pgxpool.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
			_, err := conn.Exec(ctx, `LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;
				SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on`)
			return err
		}
		if explain, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		defer explain.Close()
		logPath := filepath.Join(cluster.Dir(), "postgres.log")
		var offset int64
		serverLog = func() string {
			b, err := os.ReadFile(logPath)
			if err != nil {
				return err.Error()
			}
			out := b[min(offset, int64(len(b))):]
			offset = int64(len(b))
			return string(out)
		}
		serverLog()
	}

	mid := g.t0.Add(time.Duration(big/2) * eventSpacing)
	midEnd := mid.Add(time.Hour)
	half := int64(big / 2)
	pages := []struct {
		name   string
		f      eventstore.AuditFilter
		offset int
		before *int64
	}{
		{"first page", eventstore.AuditFilter{}, 0, nil},
		{"offset 500,000", eventstore.AuditFilter{}, big / 2, nil},
		{"offset 999,900", eventstore.AuditFilter{}, big - 100, nil},
		{"before_sequence 500,000", eventstore.AuditFilter{}, 0, &half},
		{"action=project.deleted", eventstore.AuditFilter{Action: saasapi.EventProjectDeleted}, 0, nil},
		{"action=project.deleted, before_sequence 500,000", eventstore.AuditFilter{Action: saasapi.EventProjectDeleted}, 0, &half},
		{"target_type=organisation (rare)", eventstore.AuditFilter{TargetType: saasapi.StreamOrganisation}, 0, nil},
		{"target_type=project (common)", eventstore.AuditFilter{TargetType: saasapi.StreamProject}, 0, nil},
		{"target_id=a project", eventstore.AuditFilter{TargetID: bigOrg.midProject}, 0, nil},
		{"actor_user_id", eventstore.AuditFilter{ActorUserID: g.users[3]}, 0, nil},
		{"actor_api_key_id", eventstore.AuditFilter{ActorAPIKeyID: bigOrg.keys[1]}, 0, nil},
		{"since+until, one hour in the middle", eventstore.AuditFilter{Since: &mid, Until: &midEnd}, 0, nil},
		{"until, the first hour", eventstore.AuditFilter{Until: ptr(g.t0.Add(time.Hour))}, 0, nil},
		{"action+actor_api_key_id", eventstore.AuditFilter{Action: saasapi.EventProjectCreated, ActorAPIKeyID: bigOrg.keys[1]}, 0, nil},
	}
	for _, p := range pages {
		var durations []time.Duration
		var total, count int
		for range 7 {
			start := time.Now()
			evs, n, _, err := eventstore.ListAudit(ctx, pool, access, p.f, 50, p.offset, p.before)
			durations = append(durations, time.Since(start))
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			total, count = n, len(evs)
		}
		first := durations[0]
		slices.Sort(durations)
		t.Logf("ListAudit %-48s limit 50: %2d items, total %7d: first call %7s, median of 7 %7s",
			p.name, count, total, first.Round(10*time.Microsecond), durations[3].Round(10*time.Microsecond))
		if explain != nil {
			if _, _, _, err := eventstore.ListAudit(ctx, explain, access, p.f, 50, p.offset, p.before); err != nil {
				t.Fatal(err)
			}
			t.Logf("plans:\n%s", serverLog())
		}
	}

	// Where the space goes.
	rows, err := pool.Query(ctx, `SELECT c.relname, pg_size_pretty(pg_relation_size(c.oid))
		FROM pg_class c WHERE c.oid = 'events'::regclass
			OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'events'::regclass)
		ORDER BY pg_relation_size(c.oid) DESC`)
	if err != nil {
		t.Fatal(err)
	}
	sizes, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (string, error) {
		var name, size string
		err := row.Scan(&name, &size)
		return name + " " + size, err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sizes: %s", strings.Join(sizes, ", "))

	// Index cost on appends: fresh ledgers with and without the audit
	// indexes, alternating, so that checkpoints and autovacuum hit both
	// alike; and what building the indexes costs on this table.
	probe := envInt(t, "SAAS_API_BIG_PROBE", 50_000)
	if probe == 0 {
		return
	}
	rate := func() float64 {
		start := time.Now()
		g.org(ctx, t, 1000+int(time.Now().UnixNano()%1000), probe)
		return float64(probe) / time.Since(start).Seconds()
	}
	indexes := auditIndexes(ctx, t, pool)
	var with, without []float64
	var build []time.Duration
	for range 3 {
		with = append(with, rate())
		for _, ix := range indexes {
			if _, err := pool.Exec(ctx, `DROP INDEX `+pgx.Identifier{ix.name}.Sanitize()); err != nil {
				t.Fatal(err)
			}
		}
		without = append(without, rate())
		start := time.Now()
		for _, ix := range indexes {
			if _, err := pool.Exec(ctx, ix.def); err != nil {
				t.Fatal(err)
			}
		}
		build = append(build, time.Since(start))
	}
	t.Logf("append, %d events per probe: with the %d audit indexes %.0f events/s; without %.0f events/s; "+
		"building them on ~%d events took %s", probe, len(indexes), with, without, total+int64(probe)*6, build)
}

func ptr[T any](v T) *T { return &v }

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var n int
	if _, err := fmt.Sscan(v, &n); err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

type auditIndex struct{ name, def string }

func auditIndexes(ctx context.Context, t *testing.T, pool *pgxpool.Pool) []auditIndex {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events' AND indexname LIKE 'events_audit_%'`)
	if err != nil {
		t.Fatal(err)
	}
	ixs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (auditIndex, error) {
		var ix auditIndex
		return ix, row.Scan(&ix.name, &ix.def)
	})
	if err != nil {
		t.Fatal(err)
	}
	return ixs
}

// measureExport exports a ledger as the NDJSON handler would (one JSON
// line per event) and samples the heap while doing so.
func measureExport(ctx context.Context, t *testing.T, pool *pgxpool.Pool, a saasapi.Access, f eventstore.AuditFilter, name string) {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapInuse, ms.HeapInuse
	enc := json.NewEncoder(io.Discard)
	var n int64
	start := time.Now()
	err := eventstore.Export(ctx, pool, a, f, 0, 0, func(e saasapi.Event) error {
		n++
		if n%10_000 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
		return enc.Encode(map[string]any{
			"id": e.ID, "organisation_id": e.LedgerID, "sequence": e.Sequence, "action": e.Type,
			"target_type": e.StreamType, "target_id": e.StreamID, "actor_user_id": e.Actor.UserID.Ptr(),
			"actor_api_key_id": e.Actor.APIKeyID.Ptr(), "request_id": e.RequestID, "metadata": e.Payload,
			"created_at": e.OccurredAt, "prev_hash": fmt.Sprintf("%x", e.PrevHash), "hash": fmt.Sprintf("%x", e.Hash),
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	t.Logf("Export (%s): %d events in %s, %.0f events/s; heap in use %.1f MiB before, peak %.1f MiB sampled every 10,000 events",
		name, n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), float64(base)/(1<<20), float64(peak)/(1<<20))
}

// eventSpacing is the time between two generated events of a ledger.
const eventSpacing = 100 * time.Millisecond

// generator appends realistic ledgers through eventstore.Append, applying
// the projections in the same transaction as the commands do.
type generator struct {
	pool  *pgxpool.Pool
	rnd   *rand.Rand
	t0    time.Time
	users []saasapi.ID
}

type generatedOrg struct {
	id         saasapi.ID
	keys       []saasapi.ID
	midProject saasapi.ID
}

// write appends evs to the ledger in one transaction.
func (g *generator) write(ctx context.Context, t *testing.T, create bool, evs []saasapi.NewEvent) {
	t.Helper()
	tx, err := g.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	b := &pgx.Batch{}
	var head eventstore.Head
	if create {
		head = eventstore.NewLedger(b, evs[0].LedgerID, evs[0].LedgerType)
	} else if head, err = eventstore.LockLedger(ctx, tx, evs[0].LedgerID); err != nil {
		t.Fatal(err)
	}
	recorded, err := eventstore.Append(b, &head, evs)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range recorded {
		if err := projections.Apply(b, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func (g *generator) user(ctx context.Context, t *testing.T, i int) saasapi.ID {
	t.Helper()
	id := saasapi.NewID()
	g.write(ctx, t, true, []saasapi.NewEvent{{
		LedgerID: id, LedgerType: saasapi.LedgerUser, StreamType: saasapi.StreamUser, StreamID: id, StreamVersion: 1,
		Type: saasapi.EventUserRegistered, Actor: saasapi.Actor{Type: saasapi.PrincipalUser, UserID: id},
		RequestID: "req-register", OccurredAt: g.t0,
		Data: saasapi.UserRegistered{Email: fmt.Sprintf("user%d@example.com", i), DisplayName: fmt.Sprintf("User %d", i)},
	}})
	return id
}

// org appends a ledger of n events: the organisation, its members and three
// API keys, then project traffic (30% creations, the rest updates and some
// deletions of live projects) by users and keys.
func (g *generator) org(ctx context.Context, t *testing.T, index, n int) generatedOrg {
	t.Helper()
	o := generatedOrg{id: saasapi.NewID()}
	const perTx = 5000
	pending := make([]saasapi.NewEvent, 0, perTx)
	created := false
	seq := 0
	flush := func() {
		if len(pending) > 0 {
			g.write(ctx, t, !created, pending)
			created = true
			pending = pending[:0]
		}
	}
	add := func(streamType string, id saasapi.ID, version int64, typ string, actor saasapi.Actor, data any) {
		pending = append(pending, saasapi.NewEvent{
			LedgerID: o.id, LedgerType: saasapi.LedgerOrganisation, StreamType: streamType, StreamID: id,
			StreamVersion: version, Type: typ, Actor: actor, RequestID: fmt.Sprintf("req-%d-%d", index, seq),
			OccurredAt: g.t0.Add(time.Duration(seq) * eventSpacing), Data: data,
		})
		seq++
		if len(pending) == perTx {
			flush()
		}
	}
	owner := saasapi.Actor{Type: saasapi.PrincipalUser, UserID: g.users[0]}
	add(saasapi.StreamOrganisation, o.id, 1, saasapi.EventOrganisationCreated, owner,
		saasapi.OrganisationCreated{Name: fmt.Sprintf("Org %d", index), Slug: fmt.Sprintf("org-%d-%s", index, strings.ToLower(string(o.id[20:])))})
	for i, u := range g.users {
		role := saasapi.RoleMember
		if i == 0 {
			role = saasapi.RoleOwner
		}
		add(saasapi.StreamMembership, saasapi.NewID(), 1, saasapi.EventMemberAdded, owner, saasapi.MemberAdded{UserID: u, Role: role})
	}
	for i := range 3 {
		k := saasapi.NewID()
		o.keys = append(o.keys, k)
		add(saasapi.StreamAPIKey, k, 1, saasapi.EventAPIKeyCreated, owner,
			saasapi.APIKeyCreated{APIKeyName: fmt.Sprintf("key %d", i), KeyPrefix: "sk_" + strings.ToLower(string(k[18:])) + ""})
	}
	type project struct {
		id      saasapi.ID
		version int64
	}
	var live []project
	statuses := []string{"active", "archived"}
	for seq < n {
		actor := saasapi.Actor{Type: saasapi.PrincipalUser, UserID: g.users[g.rnd.IntN(len(g.users))]}
		if g.rnd.IntN(4) == 0 {
			actor = saasapi.Actor{Type: saasapi.PrincipalAPIKey, APIKeyID: o.keys[g.rnd.IntN(len(o.keys))]}
		}
		r := g.rnd.IntN(100)
		switch {
		case len(live) == 0 || r < 30:
			p := project{id: saasapi.NewID(), version: 1}
			if o.midProject == "" && seq >= n/2 {
				o.midProject = p.id
			}
			desc := fmt.Sprintf("Project created at event %d", seq)
			add(saasapi.StreamProject, p.id, 1, saasapi.EventProjectCreated, actor,
				saasapi.ProjectCreated{ProjectName: fmt.Sprintf("project %d", seq), Status: "active", Description: &desc})
			live = append(live, p)
		case r < 90:
			i := g.rnd.IntN(len(live))
			live[i].version++
			upd := saasapi.ProjectUpdated{ChangedFields: []string{"status"}, Status: &statuses[g.rnd.IntN(2)]}
			if g.rnd.IntN(2) == 0 {
				name := fmt.Sprintf("project %d renamed at %d", i, seq)
				upd = saasapi.ProjectUpdated{ChangedFields: []string{"name"}, Name: &name}
			}
			add(saasapi.StreamProject, live[i].id, live[i].version, saasapi.EventProjectUpdated, actor, upd)
		default:
			i := g.rnd.IntN(len(live))
			add(saasapi.StreamProject, live[i].id, live[i].version+1, saasapi.EventProjectDeleted, actor,
				saasapi.ProjectDeleted{ProjectName: "deleted"})
			live[i] = live[len(live)-1]
			live = live[:len(live)-1]
		}
	}
	flush()
	return o
}

// TestProjectionsRebuildOrg: `projections rebuild --org ID` repairs that
// organisation's rows and leaves another drifted table as it was.
func TestProjectionsRebuildOrg(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newOpsWorld(t)
	if _, err := w.pool.Exec(ctx, `UPDATE organisations SET name = 'tampered' WHERE id = $1`, w.org); err != nil {
		t.Fatal(err)
	}
	if _, err := w.pool.Exec(ctx, `UPDATE users SET display_name = 'tampered'`); err != nil {
		t.Fatal(err)
	}
	out, _, err := w.run(t, "projections", "rebuild", "--org", string(w.org))
	if err != nil || !strings.HasPrefix(out, "rebuilt the rows of organisation "+string(w.org)+" from ") {
		t.Fatalf("projections rebuild --org: %q, %v", out, err)
	}
	var name string
	if err := w.pool.QueryRow(ctx, `SELECT name FROM organisations WHERE id = $1`, w.org).Scan(&name); err != nil || name == "tampered" {
		t.Fatalf("rebuild --org left the organisation's name %q, %v", name, err)
	}
	var tampered int
	if err := w.pool.QueryRow(ctx, `SELECT count(*) FROM users WHERE display_name = 'tampered'`).Scan(&tampered); err != nil || tampered == 0 {
		t.Fatalf("rebuild --org touched the users table: %d tampered rows left, %v", tampered, err)
	}
	id := saasapi.NewID()
	if _, _, err := w.run(t, "projections", "rebuild", "--org", string(id)); err == nil ||
		err.Error() != "projections rebuild: there is no organisation "+string(id) {
		t.Errorf("rebuild --org of an unknown organisation: %v", err)
	}
	if _, _, err := w.run(t, "projections", "rebuild", "--org", "nope"); err == nil || !strings.Contains(err.Error(), `--org "nope"`) {
		t.Errorf("a malformed --org: %v", err)
	}
}

// testDataKey is the key-encryption key of the tests' operator commands and
// of the services they inspect.
var testDataKey = saasapi.NewDataKEK()

func testKeyring(t testing.TB) *saasapi.DataKeyring {
	k, err := saasapi.ParseDataKEK(testDataKey)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := saasapi.NewDataKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
