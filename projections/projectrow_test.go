package projections_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/internal/testdb"
	"github.com/saasapi/saasapi/projections"
)

// TestProjectByKeyProbesOneEntry: the statements that read one project by
// its key (GET project with its gate, and the commands' read) scan the
// primary key and no other index of projects, in an organisation of 20,000
// projects whose table has no statistics yet (as after a fast growth). Given
// the chance, the planner picks a partial index led by the organisation and
// reads every entry of it, so that a GET costs more the larger the
// organisation.
func TestProjectByKeyProbesOneEntry(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	org := seedProjects(t, db)
	id := saasapi.ID(projectIDOf(10_000))
	user := saasapi.NewID()
	a, err := saasapi.Authorize(saasapi.UserPrincipal(user), org, saasapi.RoleOwner, saasapi.PermReadProjects)
	if err != nil {
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	var l projections.Lookup[projections.Project]
	if err := projections.QueueProject(b, projections.Within(a), id, &l); err != nil {
		t.Fatal(err)
	}
	projections.ReadProject(projections.NewGate(saasapi.UserPrincipal(user), org, saasapi.PermReadProjects), id, &l)(b)
	wantProjectsPkeyOnly(t, db, b.QueuedQueries)
}

// wantProjectsPkeyOnly fails the test unless each query, planned custom
// and generic, probes projects_pkey and no other index of projects.
func wantProjectsPkeyOnly(t *testing.T, db *testdb.DB, queries []*pgx.QueuedQuery) {
	t.Helper()
	ctx := context.Background()
	indexName := regexp.MustCompile(`"Index Name": "([a-z_]+)"`)
	for _, q := range queries {
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			var plan string
			err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = `+mode); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `PREPARE probe AS `+q.SQL); err != nil {
					return err
				}
				explain := `EXPLAIN (FORMAT JSON) EXECUTE probe(` + placeholders(len(q.Arguments)) + `)`
				return tx.QueryRow(ctx, explain, append([]any{pgx.QueryExecModeSimpleProtocol}, q.Arguments...)...).Scan(&plan)
			})
			if err != nil {
				t.Fatalf("%s: %v\n%s", mode, err, q.SQL)
			}
			if _, err := db.Pool.Exec(ctx, `DEALLOCATE ALL`); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, m := range indexName.FindAllStringSubmatch(plan, -1) {
				switch m[1] {
				case "projects_pkey":
					found = true
				case "users_pkey", "organisations_pkey", "memberships_pkey", "memberships_user_organisation_key", "project_counts_pkey":
				default:
					t.Errorf("%s: %s reads projects by key through %s:\n%s", mode, q.SQL, m[1], plan)
				}
			}
			if !found {
				t.Errorf("%s: %s does not probe projects_pkey:\n%s", mode, q.SQL, plan)
			}
		}
	}
}

// seedProjects fills two organisations of projects straight into the
// table, which has no statistics then: org with 20,000, another with 100.
func seedProjects(t *testing.T, db *testdb.DB) (org saasapi.ID) {
	t.Helper()
	org, other := saasapi.NewID(), saasapi.NewID()
	for _, o := range []struct {
		id saasapi.ID
		n  int
	}{{org, 20_000}, {other, 100}} {
		if _, err := db.Pool.Exec(context.Background(), `INSERT INTO projects (organisation_id, id, name, status, version, created_at, updated_at)
			SELECT $1, lpad(g::text, 26, '0'), 'Project ' || md5(g::text), 'active', 1,
				timestamptz '2026-01-01' + g * interval '1 second', timestamptz '2026-01-01' + g * interval '1 second'
			FROM generate_series(1, $2) g`, o.id, o.n); err != nil {
			t.Fatal(err)
		}
	}
	return org
}

// TestProjectCountersProbeOneEntry: the counter statements of a project's
// status change and deletion, which read the project's old status by its
// key, probe the primary key too, for the reason above.
func TestProjectCountersProbeOneEntry(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	org := seedProjects(t, db)
	id := saasapi.ID(projectIDOf(10_000))
	b := &pgx.Batch{}
	for _, e := range []saasapi.Event{
		{Type: saasapi.EventProjectUpdated, Payload: []byte(`{"changed_fields":["status"],"status":"archived"}`)},
		{Type: saasapi.EventProjectDeleted, Payload: []byte(`{"project_name":"Project"}`)},
	} {
		e.ID, e.LedgerID, e.LedgerType, e.StreamType, e.StreamID, e.StreamVersion = saasapi.NewID(), org,
			saasapi.LedgerOrganisation, saasapi.StreamProject, id, 2
		if err := projections.Apply(b, e); err != nil {
			t.Fatal(err)
		}
	}
	var counters []*pgx.QueuedQuery
	for _, q := range b.QueuedQueries {
		if strings.Contains(q.SQL, "project_counts") && strings.Contains(q.SQL, "FROM projects") {
			counters = append(counters, q)
		}
	}
	if len(counters) != 3 {
		t.Fatalf("found %d counter statements that read projects, want 3 (move out, move in, down)", len(counters))
	}
	wantProjectsPkeyOnly(t, db, counters)
}

// projectIDOf is the ID the seed gives its g-th project (lpad to 26).
func projectIDOf(g int) string { return fmt.Sprintf("%026d", g) }

func placeholders(n int) string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = "$" + strconv.Itoa(i+1)
	}
	return strings.Join(ps, ", ")
}
