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
	ctx := context.Background()
	db := testdb.New(t)
	org, other := saasapi.NewID(), saasapi.NewID()
	for _, o := range []struct {
		id saasapi.ID
		n  int
	}{{org, 20_000}, {other, 100}} {
		if _, err := db.Pool.Exec(ctx, `INSERT INTO projects (organisation_id, id, name, status, version, created_at, updated_at)
			SELECT $1, lpad(g::text, 26, '0'), 'Project ' || md5(g::text), 'active', 1,
				timestamptz '2026-01-01' + g * interval '1 second', timestamptz '2026-01-01' + g * interval '1 second'
			FROM generate_series(1, $2) g`, o.id, o.n); err != nil {
			t.Fatal(err)
		}
	}
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
	indexName := regexp.MustCompile(`"Index Name": "([a-z_]+)"`)
	for _, q := range b.QueuedQueries {
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
				case "users_pkey", "organisations_pkey", "memberships_pkey", "memberships_user_organisation_key":
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

// projectIDOf is the ID the seed gives its g-th project (lpad to 26).
func projectIDOf(g int) string { return fmt.Sprintf("%026d", g) }

func placeholders(n int) string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = "$" + strconv.Itoa(i+1)
	}
	return strings.Join(ps, ", ")
}
