package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/internal/testdb"
	"github.com/saasapi/saasapi/projections"
)

// BenchmarkListProjectsMillion measures the project list in an
// organisation with a million live projects (plus another organisation's
// million, so the indexes must lead with the organisation): the first page,
// a deep offset page, the same depth by cursor, and a name search. The rows
// are written straight into the read tables: this measures the queries and
// their indexes, not the write path.
func BenchmarkListProjectsMillion(b *testing.B) {
	ctx := context.Background()
	db := testdb.New(b)
	const n = 1_000_000
	org, other := saasapi.NewID(), saasapi.NewID()
	start := time.Now()
	for _, o := range []saasapi.ID{org, other} {
		if _, err := db.Pool.Exec(ctx, `INSERT INTO projects (organisation_id, id, name, status, version, created_at, updated_at)
			SELECT $1, lpad(g::text, 26, '0'), 'Project ' || md5(g::text), CASE WHEN g % 3 = 0 THEN 'archived' ELSE 'active' END,
				1, timestamptz '2026-01-01' + g * interval '1 second', timestamptz '2026-01-01' + g * interval '1 second'
			FROM generate_series(1, $2) g`, o, n); err != nil {
			b.Fatal(err)
		}
	}
	// The counters the projection would have kept, and the visibility map
	// a live table has after autovacuum.
	if _, err := db.Pool.Exec(ctx, `INSERT INTO project_counts (organisation_id, status, live)
		SELECT organisation_id, status, count(*) FROM projects GROUP BY 1, 2`); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `VACUUM ANALYZE projects`); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d projects in %v", 2*n, time.Since(start))
	a, err := saasapi.Authorize(saasapi.UserPrincipal(saasapi.NewID()), org, saasapi.RoleOwner, saasapi.PermReadProjects)
	if err != nil {
		b.Fatal(err)
	}
	page := func(offset int) projections.Page { return projections.Page{Limit: 50, Offset: offset} }
	// The item at depth 900,000 in created_at DESC order, for the cursor case.
	deep, _, _, err := projections.ListProjects(ctx, db.Pool, a, projections.ProjectQuery{
		Sort: projections.SortCreatedAt, Desc: true, Page: projections.Page{Limit: 1, Offset: 900_000}})
	if err != nil || len(deep) != 1 {
		b.Fatalf("deep item: %v", err)
	}
	cases := []struct {
		name string
		q    projections.ProjectQuery
	}{
		{"first-page", projections.ProjectQuery{Sort: projections.SortCreatedAt, Desc: true, Page: page(0)}},
		{"offset-900k", projections.ProjectQuery{Sort: projections.SortCreatedAt, Desc: true, Page: page(900_000)}},
		{"cursor-900k", projections.ProjectQuery{Sort: projections.SortCreatedAt, Desc: true, Page: page(0), After: &deep[0]}},
		{"by-name-first-page", projections.ProjectQuery{Sort: projections.SortName, Page: page(0)}},
		{"status-filter", projections.ProjectQuery{Status: "archived", Sort: projections.SortCreatedAt, Desc: true, Page: page(0)}},
		{"name-search", projections.ProjectQuery{Name: "abc1", Sort: projections.SortCreatedAt, Desc: true, Page: page(0)}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var total int
			for b.Loop() {
				items, t, _, err := projections.ListProjects(ctx, db.Pool, a, tc.q)
				if err != nil || len(items) == 0 {
					b.Fatalf("%s: %d items, %v", tc.name, len(items), err)
				}
				total = t
			}
			b.ReportMetric(float64(total), "matches")
		})
	}
	fmt.Println() // keep the figures apart from the log lines
}
