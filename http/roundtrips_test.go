package http_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
)

// roundTrips records what the service sends to PostgreSQL: one entry per
// round trip (a query, or a batch of statements sent together), with the
// statements it carried.
type roundTrips struct {
	mu    sync.Mutex
	trips [][]string
}

func (rt *roundTrips) add(sqls []string) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.trips = append(rt.trips, sqls)
}

func (rt *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	// A new connection's SET ROLE is the pool's business, not a request's.
	if !strings.HasPrefix(d.SQL, "SET ROLE") {
		rt.add([]string{d.SQL})
	}
	return ctx
}

func (rt *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (rt *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	sqls := make([]string, 0, d.Batch.Len())
	for _, q := range d.Batch.QueuedQueries {
		sqls = append(sqls, q.SQL)
	}
	rt.add(sqls)
	return ctx
}

func (rt *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (rt *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

func (rt *roundTrips) TracePrepareStart(ctx context.Context, _ *pgx.Conn, d pgx.TracePrepareStartData) context.Context {
	rt.add([]string{"PREPARE " + d.SQL})
	return ctx
}

func (rt *roundTrips) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

// take returns the round trips recorded since the last take.
func (rt *roundTrips) take() [][]string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	out := rt.trips
	rt.trips = nil
	return out
}

// lockSpan returns how many round trips hold a ledger lock: from the one
// that takes it (FOR UPDATE) to the one that commits, both included; 0
// when no ledger is locked.
func lockSpan(trips [][]string) int {
	lock, commit := -1, -1
	for i, trip := range trips {
		for _, sql := range trip {
			// One ledger's lock, or a group's lock of several.
			if lock < 0 && strings.Contains(sql, "FROM ledgers WHERE ledger_id = ") && strings.HasSuffix(sql, "FOR UPDATE") {
				lock = i
			}
			if lock >= 0 && (sql == "COMMIT" || sql == "ROLLBACK") {
				commit = i
			}
		}
	}
	if lock < 0 {
		return 0
	}
	return commit - lock + 1
}

// TestRoundTripsPerRoute pins what every route costs in round trips to
// PostgreSQL, authentication included: one for every read of a resource or
// a page, two for every command (with or without Idempotency-Key), and the
// ledger lock held for at most two. Each request runs twice and the second
// is counted, once the connection has prepared its statements; the pool
// has one connection, so that it is the same one.
func TestRoundTripsPerRoute(t *testing.T) {
	rt := &roundTrips{}
	e := setupPool(t, func(c *pgxpool.Config) {
		c.ConnConfig.Tracer = rt
		c.MaxConns = 1
	})
	owner := e.register("Owner")
	org := e.createOrg(owner, uniqueName("Trips"))
	key := e.createAPIKey(owner, org)
	joiners := []user{e.register("Joiner"), e.register("Joiner")}
	leavers := []user{e.register("Leaver"), e.register("Leaver")}
	mistaken := []user{e.register("Mistaken"), e.register("Mistaken")}
	moved := e.register("Moved")
	e.addMember(owner, org, moved, "member")
	for _, u := range leavers {
		e.addMember(owner, org, u, "member")
	}
	revoked := []apiKey{e.createAPIKey(owner, org), e.createAPIKey(owner, org)}
	project := e.createProject(owner.Token, org, map[string]any{"name": "Counted"})["id"].(string)
	deleted := []string{
		e.createProject(owner.Token, org, map[string]any{"name": "Deleted"})["id"].(string),
		e.createProject(owner.Token, org, map[string]any{"name": "Deleted"})["id"].(string),
	}
	email := strings.ToLower(saasapi.NewID().String()) + "@example.com"
	orgPath := "/orgs/" + org
	n := func(i int) string { return strconv.Itoa(i) }

	cases := []struct {
		name  string
		req   func(i int) req
		trips int
		// statements, when not 0, is the number of statements they carry.
		statements int
	}{
		{"GET /me", func(int) req { return req{method: "GET", path: "/me", token: owner.Token} }, 1, 0},
		{"GET /me/audit-events", func(int) req { return req{method: "GET", path: "/me/audit-events", token: owner.Token} }, 1, 0},
		{"GET /orgs", func(int) req { return req{method: "GET", path: "/orgs", token: owner.Token} }, 1, 0},
		{"GET /orgs/{id}", func(int) req { return req{method: "GET", path: orgPath, token: owner.Token} }, 1, 0},
		{"GET members", func(int) req { return req{method: "GET", path: orgPath + "/members", token: owner.Token} }, 1, 0},
		{"GET api-keys", func(int) req { return req{method: "GET", path: orgPath + "/api-keys", token: owner.Token} }, 1, 0},
		{"GET audit-events", func(int) req { return req{method: "GET", path: orgPath + "/audit-events", token: owner.Token} }, 1, 0},
		{"GET audit-events, action", func(int) req {
			return req{method: "GET", path: orgPath + "/audit-events?action=project.created", token: owner.Token}
		}, 1, 0},
		{"GET audit-events, time window", func(int) req {
			return req{method: "GET", path: orgPath + "/audit-events?since=2000-01-01T00:00:00Z", token: owner.Token}
		}, 1, 0},
		{"GET audit-events/head", func(int) req { return req{method: "GET", path: orgPath + "/audit-events/head", token: owner.Token} }, 1, 0},
		// The gate, the head the export stops at, and one batch of events.
		{"GET audit-events/export", func(int) req {
			return req{method: "GET", path: orgPath + "/audit-events/export", token: owner.Token}
		}, 3, 0},
		{"GET projects", func(int) req { return req{method: "GET", path: orgPath + "/projects", token: owner.Token} }, 1, 0},
		{"GET projects, status", func(int) req {
			return req{method: "GET", path: orgPath + "/projects?status=active", token: owner.Token}
		}, 1, 0},
		// The hottest read: the gate and the project in one statement.
		{"GET project", func(int) req { return req{method: "GET", path: orgPath + "/projects/" + project, token: owner.Token} }, 1, 1},
		{"GET project, API key", func(int) req {
			return req{method: "GET", path: orgPath + "/projects/" + project, token: key.Raw}
		}, 1, 1},

		{"POST /auth/register", func(i int) req {
			return req{method: "POST", path: "/auth/register", body: map[string]any{
				"email": n(i) + email, "password": testPassword, "display_name": "New"}}
		}, 1, 0},
		// The credentials, then the sign-in event's two.
		{"POST /auth/login", func(int) req {
			return req{method: "POST", path: "/auth/login", body: map[string]any{"email": owner.Email, "password": testPassword}}
		}, 3, 0},
		// The first failure of an account is recorded at once, after the
		// answer: the credentials, then the event's two.
		{"POST /auth/login, first wrong password", func(i int) req {
			return req{method: "POST", path: "/auth/login", body: map[string]any{"email": mistaken[i].Email, "password": "wrong password!"}}
		}, 3, 0},
		// A second failure is coalesced into the event that ends the
		// account's window, minutes later.
		{"POST /auth/login, wrong password", func(int) req {
			return req{method: "POST", path: "/auth/login", body: map[string]any{"email": owner.Email, "password": "wrong password!"}}
		}, 1, 0},
		{"POST /orgs", func(int) req {
			return req{method: "POST", path: "/orgs", token: owner.Token, body: map[string]any{"name": uniqueName("Counted")}}
		}, 2, 0},
		{"POST /orgs, Idempotency-Key", func(i int) req {
			return req{method: "POST", path: "/orgs", token: owner.Token, header: withKey("org-" + org + n(i)),
				body: map[string]any{"name": uniqueName("Counted")}}
		}, 2, 0},
		{"PATCH /orgs/{id}", func(i int) req {
			return req{method: "PATCH", path: orgPath, token: owner.Token, body: map[string]any{"name": "Renamed " + n(i)}}
		}, 2, 0},
		{"POST members", func(i int) req {
			return req{method: "POST", path: orgPath + "/members", token: owner.Token,
				body: map[string]any{"user_id": joiners[i].ID, "role": "viewer"}}
		}, 2, 0},
		{"PATCH member", func(i int) req {
			return req{method: "PATCH", path: orgPath + "/members/" + moved.ID, token: owner.Token,
				body: map[string]any{"role": []string{"admin", "viewer"}[i]}}
		}, 2, 0},
		{"DELETE member", func(i int) req {
			return req{method: "DELETE", path: orgPath + "/members/" + leavers[i].ID, token: owner.Token}
		}, 2, 0},
		{"POST api-keys", func(int) req {
			return req{method: "POST", path: orgPath + "/api-keys", token: owner.Token, body: map[string]any{"name": "Counted"}}
		}, 2, 0},
		{"POST api-keys, Idempotency-Key", func(i int) req {
			return req{method: "POST", path: orgPath + "/api-keys", token: owner.Token, header: withKey("key-" + n(i)),
				body: map[string]any{"name": "Counted"}}
		}, 2, 0},
		{"DELETE api-key", func(i int) req {
			return req{method: "DELETE", path: orgPath + "/api-keys/" + revoked[i].ID, token: owner.Token}
		}, 2, 0},
		{"POST projects", func(int) req {
			return req{method: "POST", path: orgPath + "/projects", token: owner.Token, body: map[string]any{"name": "Counted"}}
		}, 2, 0},
		{"POST projects, API key", func(int) req {
			return req{method: "POST", path: orgPath + "/projects", token: key.Raw, body: map[string]any{"name": "Counted"}}
		}, 2, 0},
		{"POST projects, Idempotency-Key", func(i int) req {
			return req{method: "POST", path: orgPath + "/projects", token: owner.Token, header: withKey("project-" + n(i)),
				body: map[string]any{"name": "Counted"}}
		}, 2, 0},
		// The second request replays the first: the claim finds the
		// result, and the transaction is rolled back.
		{"POST projects, replay", func(int) req {
			return req{method: "POST", path: orgPath + "/projects", token: owner.Token, header: withKey("replayed"),
				body: map[string]any{"name": "Counted"}}
		}, 2, 0},
		{"PATCH project", func(i int) req {
			return req{method: "PATCH", path: orgPath + "/projects/" + project, token: owner.Token,
				body: map[string]any{"name": "Renamed " + n(i)}}
		}, 2, 0},
		{"DELETE project", func(i int) req {
			return req{method: "DELETE", path: orgPath + "/projects/" + deleted[i], token: owner.Token}
		}, 2, 0},
	}
	for _, tc := range cases {
		for i := range 2 {
			rt.take()
			r := e.do(tc.req(i))
			if r.Status >= 300 && !strings.Contains(tc.name, "wrong password") {
				t.Fatalf("%s: %d %s", tc.name, r.Status, r.Raw)
			}
			if r.Status == http.StatusUnauthorized {
				e.svc.Wait()
			}
			trips := rt.take()
			if i == 0 {
				continue
			}
			if len(trips) != tc.trips {
				t.Errorf("%s: %d round trips, want %d:\n%s", tc.name, len(trips), tc.trips, describeTrips(trips))
			}
			if n := statementCount(trips); tc.statements != 0 && n != tc.statements {
				t.Errorf("%s: %d statements, want %d:\n%s", tc.name, n, tc.statements, describeTrips(trips))
			}
			if span := lockSpan(trips); span > 2 {
				t.Errorf("%s: the ledger lock is held for %d round trips, want at most 2:\n%s", tc.name, span, describeTrips(trips))
			}
		}
	}
}

func statementCount(trips [][]string) int {
	n := 0
	for _, trip := range trips {
		n += len(trip)
	}
	return n
}

func describeTrips(trips [][]string) string {
	var b strings.Builder
	for i, trip := range trips {
		b.WriteString("  round trip " + strconv.Itoa(i+1) + ":\n")
		for _, sql := range trip {
			b.WriteString("    " + strings.Join(strings.Fields(sql), " ") + "\n")
		}
	}
	return b.String()
}

// TestDeactivatedUserIsRefusedByTheGate: the middleware checks only a
// token's signature, so a deactivated user's valid token must be refused
// by the gate of every route, reads and writes alike, with the route's 401
// detail, and change nothing.
func TestDeactivatedUserIsRefusedByTheGate(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner := e.register("Owner")
	org := e.createOrg(owner, uniqueName("Gone"))
	project := e.createProject(owner.Token, org, map[string]any{"name": "Kept"})["id"].(string)
	if _, err := e.db.Pool.Exec(context.Background(), `UPDATE users SET is_active = false WHERE id = $1`, owner.ID); err != nil {
		t.Fatal(err)
	}
	before := e.counts()
	orgPath := "/orgs/" + org
	for _, tc := range []struct {
		r      req
		detail string
	}{
		{req{method: "GET", path: "/me"}, saasapi.MsgInvalidToken},
		{req{method: "GET", path: "/orgs"}, saasapi.MsgInvalidToken},
		{req{method: "GET", path: "/me/audit-events"}, saasapi.MsgInvalidToken},
		{req{method: "GET", path: orgPath}, saasapi.MsgInvalidToken},
		{req{method: "GET", path: orgPath + "/audit-events"}, saasapi.MsgInvalidToken},
		{req{method: "POST", path: "/orgs", body: map[string]any{"name": "After"}}, saasapi.MsgInvalidToken},
		{req{method: "PATCH", path: orgPath, body: map[string]any{"name": "After"}}, saasapi.MsgInvalidToken},
		{req{method: "GET", path: orgPath + "/projects/" + project}, saasapi.MsgInvalidTokenOrKey},
		{req{method: "GET", path: orgPath + "/projects"}, saasapi.MsgInvalidTokenOrKey},
		{req{method: "POST", path: orgPath + "/projects", body: map[string]any{"name": "After"}}, saasapi.MsgInvalidTokenOrKey},
		{req{method: "DELETE", path: orgPath + "/projects/" + project}, saasapi.MsgInvalidTokenOrKey},
	} {
		tc.r.token = owner.Token
		wantProblem(t, e.do(tc.r), http.StatusUnauthorized, tc.detail)
	}
	after := e.counts()
	for table, n := range before {
		if after[table] != n {
			t.Errorf("%s went from %d to %d rows after refused requests", table, n, after[table])
		}
	}
}
