package http_test

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/saasapi/saasapi"
)

// idemEndpoint is one of the routes that take an Idempotency-Key (A.9).
type idemEndpoint struct {
	name string
	// path returns the route's path for the organisation (unused by POST /orgs).
	path func(org string) string
	// body returns a request body; n varies it (a different request).
	body func(n int) map[string]any
	// table holds the created rows; event is the type recorded per creation.
	table, event string
	// secret is whether the response carries a secret that a replay omits.
	secret bool
}

var idemEndpoints = []idemEndpoint{
	{"CreateOrganisation", func(string) string { return "/orgs" },
		func(n int) map[string]any {
			return map[string]any{"name": "Idempotent Org", "slug": "idem-org-" + string(rune('a'+n))}
		},
		"organisations", saasapi.EventOrganisationCreated, false},
	{"CreateProject", projectsURL,
		func(n int) map[string]any {
			return map[string]any{"name": "Idempotent", "description": strings.Repeat("d", n)}
		},
		"projects", saasapi.EventProjectCreated, false},
	{"CreateAPIKey", apiKeysURL,
		func(n int) map[string]any { return map[string]any{"name": "Idempotent key " + string(rune('a'+n))} },
		"api_keys", saasapi.EventAPIKeyCreated, true},
}

func withKey(key string) map[string]string { return map[string]string{"Idempotency-Key": key} }

// wantFresh fails the test unless r is a 201 executed now (not replayed).
func wantFresh(t *testing.T, r response) {
	t.Helper()
	want(t, r, http.StatusCreated)
	if v := r.Header.Values("Idempotency-Replayed"); len(v) != 0 {
		t.Fatalf("Idempotency-Replayed = %q on a request that executed, want no such header", v)
	}
}

// wantReplayOf fails the test unless r replays first: the same status and
// body marked as replayed; for an API key, without the raw key and with
// the note that says why.
func wantReplayOf(t *testing.T, ep idemEndpoint, r, first response) {
	t.Helper()
	if r.Status != first.Status || r.Header.Get("Idempotency-Replayed") != "true" {
		t.Fatalf("replay answered %d with Idempotency-Replayed %q, want %d and \"true\"; body %s",
			r.Status, r.Header.Get("Idempotency-Replayed"), first.Status, r.Raw)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("replay Content-Type = %q, want application/json", ct)
	}
	if !ep.secret {
		if string(r.Raw) != string(first.Raw) {
			t.Fatalf("replay body = %s, want the byte-identical first body %s", r.Raw, first.Raw)
		}
		return
	}
	wantKeys(t, "api key replay", r.Body, "api_key", "idempotency_replay")
	if got, want := mustJSON(t, r.Body["api_key"]), mustJSON(t, first.Body["api_key"]); got != want {
		t.Fatalf("replayed api_key = %s, want the created %s", got, want)
	}
	note := r.obj("idempotency_replay")
	wantKeys(t, "idempotency_replay", note, "secret_available", "reason")
	if reason, _ := note["reason"].(string); note["secret_available"] != false || strings.TrimSpace(reason) == "" {
		t.Fatalf("idempotency_replay = %v, want secret_available false and a reason", note)
	}
	if raw := first.str("raw_key"); raw == "" || strings.Contains(string(r.Raw), raw) {
		t.Fatalf("replay %s must not contain the raw key %q (and the first response must have had one)", r.Raw, raw)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// idemFixture is a fresh service with an owner and an organisation.
func idemFixture(t *testing.T) (*env, user, string) {
	t.Helper()
	e := setup(t)
	owner := e.register("Owner")
	return e, owner, e.createOrg(owner, uniqueName("Idem"))
}

func TestIdempotentRequestsReplay(t *testing.T) {
	t.Parallel()
	for _, ep := range idemEndpoints {
		t.Run(ep.name, func(t *testing.T) {
			t.Parallel()
			e, owner, org := idemFixture(t)
			rows, events := e.count(ep.table), e.countEvents(ep.event)
			send := func() response {
				return e.do(req{method: "POST", path: ep.path(org), token: owner.Token, body: ep.body(1), header: withKey("retry-1")})
			}
			first := send()
			wantFresh(t, first)
			second, third := send(), send()
			wantReplayOf(t, ep, second, first)
			wantReplayOf(t, ep, third, first)
			if string(second.Raw) != string(third.Raw) {
				t.Fatalf("two replays differ: %s and %s", second.Raw, third.Raw)
			}
			if n := e.count(ep.table); n != rows+1 {
				t.Fatalf("%s has %d rows after one request and two replays, want %d", ep.table, n, rows+1)
			}
			if n := e.countEvents(ep.event); n != events+1 {
				t.Fatalf("%d %s events after one request and two replays, want %d", n, ep.event, events+1)
			}
		})
	}
}

func TestIdempotencyKeyReusedWithOtherBodyConflicts(t *testing.T) {
	t.Parallel()
	for _, ep := range idemEndpoints {
		t.Run(ep.name, func(t *testing.T) {
			t.Parallel()
			e, owner, org := idemFixture(t)
			first := e.do(req{method: "POST", path: ep.path(org), token: owner.Token, body: ep.body(1), header: withKey("k")})
			wantFresh(t, first)
			before := e.snapshot()
			r := e.do(req{method: "POST", path: ep.path(org), token: owner.Token, body: ep.body(2), header: withKey("k")})
			wantProblem(t, r, http.StatusConflict, saasapi.MsgIdempotencyMismatch)
			if after := e.snapshot(); !maps.Equal(before, after) {
				t.Fatalf("tables changed on an idempotency conflict: %v -> %v", before, after)
			}
			// The record still answers its own body.
			wantReplayOf(t, ep, e.do(req{method: "POST", path: ep.path(org), token: owner.Token, body: ep.body(1), header: withKey("k")}), first)
		})
	}
}

func TestIdempotencyKeyLength(t *testing.T) {
	t.Parallel()
	for _, ep := range idemEndpoints {
		t.Run(ep.name, func(t *testing.T) {
			t.Parallel()
			e, owner, org := idemFixture(t)
			rows := e.count(ep.table)
			for _, bad := range []string{strings.Repeat("k", 256), ""} {
				wantInvalid(t, e.do(req{method: "POST", path: ep.path(org), token: owner.Token, body: ep.body(1), header: withKey(bad)}), "Idempotency-Key")
			}
			if n := e.count(ep.table); n != rows {
				t.Fatalf("%s went from %d to %d rows on refused keys, want no change", ep.table, rows, n)
			}
			longest := strings.Repeat("k", 255)
			first := e.do(req{method: "POST", path: ep.path(org), token: owner.Token, body: ep.body(1), header: withKey(longest)})
			wantFresh(t, first)
			wantReplayOf(t, ep, e.do(req{method: "POST", path: ep.path(org), token: owner.Token, body: ep.body(1), header: withKey(longest)}), first)
		})
	}
}

func TestIdempotencyBodyIsComparedAsJSON(t *testing.T) {
	t.Parallel()
	e, owner, org := idemFixture(t)
	ep := idemEndpoints[1]
	first := e.do(req{method: "POST", path: projectsURL(org), token: owner.Token,
		body: `{"name":"Canon","description":"d","status":"archived"}`, header: withKey("canon")})
	wantFresh(t, first)
	for _, same := range []string{
		"{ \"status\" : \"archived\",\n\t\"description\": \"d\",  \"name\":\"Canon\" }\n",
		`{"description":"d","name":"Can\u006fn","status":"archived"}`,
	} {
		wantReplayOf(t, ep, e.do(req{method: "POST", path: projectsURL(org), token: owner.Token, body: same, header: withKey("canon")}), first)
	}
	// A body that means something else is another request.
	wantProblem(t, e.do(req{method: "POST", path: projectsURL(org), token: owner.Token,
		body: `{"name":"Canon","description":"d"}`, header: withKey("canon")}), http.StatusConflict, saasapi.MsgIdempotencyMismatch)
	if n := e.count("projects"); n != 1 {
		t.Fatalf("projects has %d rows, want 1", n)
	}
}

func TestIdempotencyScope(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner, other := e.register("Owner"), e.register("Other")
	org := e.createOrg(owner, uniqueName("Scope"))
	org2 := e.createOrg(owner, uniqueName("Scope Two"))
	e.addMember(owner, org, other, "admin")
	key := e.createAPIKey(owner, org)

	tests := []struct {
		name   string
		first  req
		second req
		// slugClash: the second request, executed on its own, meets the
		// slug the first one took (instead of replaying the first's 201).
		slugClash bool
	}{
		{"AnotherUser",
			req{method: "POST", path: projectsURL(org), token: owner.Token, body: map[string]any{"name": "P"}},
			req{method: "POST", path: projectsURL(org), token: other.Token, body: map[string]any{"name": "P"}}, false},
		{"AnotherOrganisation",
			req{method: "POST", path: projectsURL(org), token: owner.Token, body: map[string]any{"name": "P"}},
			req{method: "POST", path: projectsURL(org2), token: owner.Token, body: map[string]any{"name": "P"}}, false},
		{"UserThenAPIKey",
			req{method: "POST", path: projectsURL(org), token: owner.Token, body: map[string]any{"name": "P"}},
			req{method: "POST", path: projectsURL(org), token: key.Raw, body: map[string]any{"name": "P"}}, false},
		{"AnotherRoute",
			req{method: "POST", path: projectsURL(org), token: owner.Token, body: map[string]any{"name": "P"}},
			req{method: "POST", path: apiKeysURL(org), token: owner.Token, body: map[string]any{"name": "P"}}, false},
		{"AnotherUserCreatingAnOrganisation",
			req{method: "POST", path: "/orgs", token: owner.Token, body: map[string]any{"name": "Scoped", "slug": "scoped-owner"}},
			req{method: "POST", path: "/orgs", token: other.Token, body: map[string]any{"name": "Scoped", "slug": "scoped-other"}}, false},
		{"AnotherUserWithSameOrganisationBody",
			req{method: "POST", path: "/orgs", token: owner.Token, body: map[string]any{"name": "Clashing", "slug": "clashing"}},
			req{method: "POST", path: "/orgs", token: other.Token, body: map[string]any{"name": "Clashing", "slug": "clashing"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := e.forT(t)
			k := "scope-" + tt.name
			tt.first.header, tt.second.header = withKey(k), withKey(k)
			first := e.do(tt.first)
			wantFresh(t, first)
			second := e.do(tt.second)
			if tt.slugClash {
				wantProblem(t, second, http.StatusConflict, saasapi.MsgSlugTaken)
				return
			}
			wantFresh(t, second)
			id := func(r response) string {
				if k := r.obj("api_key"); k != nil {
					return k["id"].(string)
				}
				return r.str("id")
			}
			if id(first) == id(second) {
				t.Fatalf("both requests returned %s, want two separate executions", id(first))
			}
		})
	}
}

func TestIdempotentReplayChecksPermissionsFirst(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner := e.register("Owner")

	t.Run("DemotedToViewer", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		u := e.register("Writer")
		org := e.createOrg(owner, uniqueName("Demote"))
		e.addMember(owner, org, u, "member")
		r := req{method: "POST", path: projectsURL(org), token: u.Token, body: map[string]any{"name": "Mine"}, header: withKey("mine")}
		wantFresh(t, e.do(r))
		want(t, e.do(req{method: "PATCH", path: memberURL(org, u.ID), token: owner.Token, body: map[string]any{"role": "viewer"}}), http.StatusOK)
		wantProblem(t, e.do(r), http.StatusForbidden, saasapi.MsgInsufficientPerms)
		want(t, e.do(req{method: "DELETE", path: memberURL(org, u.ID), token: owner.Token}), http.StatusNoContent)
		wantProblem(t, e.do(r), http.StatusForbidden, saasapi.MsgOrgAccessDenied)
	})

	t.Run("AdminDemotedToMember", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		u := e.register("Keymaster")
		org := e.createOrg(owner, uniqueName("Keys"))
		e.addMember(owner, org, u, "admin")
		r := req{method: "POST", path: apiKeysURL(org), token: u.Token, body: map[string]any{"name": "Mine"}, header: withKey("mine")}
		wantFresh(t, e.do(r))
		want(t, e.do(req{method: "PATCH", path: memberURL(org, u.ID), token: owner.Token, body: map[string]any{"role": "member"}}), http.StatusOK)
		wantProblem(t, e.do(r), http.StatusForbidden, saasapi.MsgInsufficientPerms)
	})

	t.Run("RevokedAPIKey", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		org := e.createOrg(owner, uniqueName("Revoked"))
		key := e.createAPIKey(owner, org)
		r := req{method: "POST", path: projectsURL(org), token: key.Raw, body: map[string]any{"name": "Mine"}, header: withKey("mine")}
		wantFresh(t, e.do(r))
		want(t, e.do(req{method: "DELETE", path: apiKeyURL(org, key.ID), token: owner.Token}), http.StatusOK)
		wantProblem(t, e.do(r), http.StatusUnauthorized, saasapi.MsgInvalidTokenOrKey)
	})
}

func TestConcurrentIdempotentRequestsExecuteOnce(t *testing.T) {
	t.Parallel()
	const n = 20
	for _, ep := range idemEndpoints {
		t.Run(ep.name, func(t *testing.T) {
			t.Parallel()
			e, owner, org := idemFixture(t)
			rows, events := e.count(ep.table), e.countEvents(ep.event)
			r := req{method: "POST", path: ep.path(org), token: owner.Token, body: ep.body(1), header: withKey("burst")}

			results := make([]response, n)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					results[i], errs[i] = e.send(r)
				})
			}
			close(start)
			wg.Wait()

			var fresh []response
			statuses := map[int]int{}
			for i, res := range results {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				statuses[res.Status]++
				if res.Header.Get("Idempotency-Replayed") != "true" {
					fresh = append(fresh, res)
				}
			}
			if statuses[http.StatusCreated] != n {
				t.Fatalf("statuses %v, want all %d to be 201", statuses, n)
			}
			if len(fresh) != 1 {
				t.Fatalf("%d responses were not marked replayed, want exactly 1", len(fresh))
			}
			for _, res := range results {
				if res.Header.Get("Idempotency-Replayed") == "true" {
					wantReplayOf(t, ep, res, fresh[0])
				}
			}
			gotRows, gotEvents := e.count(ep.table)-rows, e.countEvents(ep.event)-events
			if gotRows != 1 || gotEvents != 1 {
				t.Fatalf("%d concurrent requests with one key made %d %s rows and %d %s events, want 1 and 1",
					n, gotRows, ep.table, gotEvents, ep.event)
			}
			m := e.exposition()
			if v := metricValue(t, m, "saas_api_idempotency_replays_total"); v != n-1 {
				t.Fatalf("idempotency_replays_total = %v, want %d", v, n-1)
			}
			created := map[string]string{"organisations": "saas_api_organisations_created_total",
				"projects": "saas_api_projects_created_total", "api_keys": "saas_api_api_keys_created_total"}[ep.table]
			// POST /orgs of the fixture created one organisation already.
			wantCreated := 1.0
			if ep.table == "organisations" {
				wantCreated = 2
			}
			if v := metricValue(t, m, created); v != wantCreated {
				t.Fatalf("%s = %v after %d concurrent requests with one key, want %v", created, v, n, wantCreated)
			}
			t.Logf("%d concurrent requests: statuses %v, 1 executed and %d replayed, %d new %s row, %d new %s event",
				n, statuses, n-len(fresh), gotRows, ep.table, gotEvents, ep.event)
		})
	}
}

func TestIdempotencyMetrics(t *testing.T) {
	t.Parallel()
	e, owner, org := idemFixture(t)
	member := e.register("Member")
	e.addMember(owner, org, member, "member")
	values := func() [3]float64 {
		m := e.exposition()
		return [3]float64{metricValue(t, m, "saas_api_idempotency_replays_total"),
			metricValue(t, m, "saas_api_idempotency_conflicts_total"), metricValue(t, m, "saas_api_projects_created_total")}
	}
	post := func(u user, key string, body map[string]any) response {
		return e.do(req{method: "POST", path: projectsURL(org), token: u.Token, body: body, header: withKey(key)})
	}
	wantFresh(t, post(member, "a", map[string]any{"name": "A"}))
	if v := values(); v != [3]float64{0, 0, 1} {
		t.Fatalf("replays/conflicts/projects created = %v after one request, want [0 0 1]", v)
	}
	want(t, post(member, "a", map[string]any{"name": "A"}), http.StatusCreated)
	want(t, post(member, "a", map[string]any{"name": "A"}), http.StatusCreated)
	wantProblem(t, post(member, "a", map[string]any{"name": "B"}), http.StatusConflict, saasapi.MsgIdempotencyMismatch)
	if v := values(); v != [3]float64{2, 1, 1} {
		t.Fatalf("replays/conflicts/projects created = %v after two replays and a conflict, want [2 1 1]", v)
	}
	// Neither a refused key nor a replay refused by permissions counts.
	wantInvalid(t, post(member, strings.Repeat("x", 256), map[string]any{"name": "A"}), "Idempotency-Key")
	want(t, e.do(req{method: "PATCH", path: memberURL(org, member.ID), token: owner.Token, body: map[string]any{"role": "viewer"}}), http.StatusOK)
	wantProblem(t, post(member, "a", map[string]any{"name": "A"}), http.StatusForbidden, saasapi.MsgInsufficientPerms)
	wantProblem(t, post(member, "a", map[string]any{"name": "B"}), http.StatusForbidden, saasapi.MsgInsufficientPerms)
	if v := values(); v != [3]float64{2, 1, 1} {
		t.Fatalf("replays/conflicts/projects created = %v after refused requests, want still [2 1 1]", v)
	}
}

func TestIdempotencyRecordsExpire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// age makes the record of key expire, as 24 hours would.
	age := func(e *env, key string) {
		e.t.Helper()
		tag, err := e.db.Pool.Exec(ctx, `UPDATE idempotency_records SET expires_at = now() - interval '1 second'
			WHERE idempotency_key = $1`, key)
		if err != nil || tag.RowsAffected() != 1 {
			e.t.Fatalf("age idempotency record %q: %d rows, %v; want 1 row", key, tag.RowsAffected(), err)
		}
	}

	t.Run("KeyExecutesAgainAfterExpiry", func(t *testing.T) {
		t.Parallel()
		e, owner, org := idemFixture(t)
		r := req{method: "POST", path: projectsURL(org), token: owner.Token, body: map[string]any{"name": "Daily"}, header: withKey("daily")}
		first := e.do(r)
		wantFresh(t, first)
		var expires, created float64
		if err := e.db.Pool.QueryRow(ctx, `SELECT extract(epoch FROM expires_at), extract(epoch FROM created_at)
			FROM idempotency_records WHERE idempotency_key = 'daily'`).Scan(&expires, &created); err != nil {
			t.Fatal(err)
		}
		if expires-created != 24*3600 {
			t.Fatalf("the record expires %v s after it was made, want 24 h", expires-created)
		}
		age(e, "daily")
		second := e.do(r)
		wantFresh(t, second)
		if second.str("id") == first.str("id") || e.count("projects") != 2 {
			t.Fatalf("after expiry the key returned %s (projects: %d), want a second, new project", second.str("id"), e.count("projects"))
		}
		// The new execution is what the key replays now.
		wantReplayOf(t, idemEndpoints[1], e.do(r), second)
		// And an expired key may carry another body.
		age(e, "daily")
		r.body = map[string]any{"name": "Weekly"}
		third := e.do(r)
		wantFresh(t, third)
		if third.str("name") != "Weekly" {
			t.Fatalf("after expiry a new body created %v, want a project named Weekly", third.Body)
		}
	})

	t.Run("PruneDeletesOnlyExpiredRecords", func(t *testing.T) {
		t.Parallel()
		e, owner, org := idemFixture(t)
		for _, k := range []string{"old", "new"} {
			wantFresh(t, e.do(req{method: "POST", path: projectsURL(org), token: owner.Token, body: map[string]any{"name": k}, header: withKey(k)}))
		}
		age(e, "old")
		n, err := e.svc.PruneIdempotency(ctx)
		if err != nil || n != 1 {
			t.Fatalf("PruneIdempotency = %d, %v; want 1 record deleted", n, err)
		}
		var keys []string
		rows, err := e.db.Pool.Query(ctx, `SELECT idempotency_key FROM idempotency_records ORDER BY idempotency_key`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0] != "new" {
			t.Fatalf("idempotency records after pruning: %v, want only [new]", keys)
		}
		if n, err := e.svc.PruneIdempotency(ctx); err != nil || n != 0 {
			t.Fatalf("a second PruneIdempotency = %d, %v; want 0", n, err)
		}
		wantFresh(t, e.do(req{method: "POST", path: projectsURL(org), token: owner.Token, body: map[string]any{"name": "old"}, header: withKey("old")}))
		want(t, e.do(req{method: "POST", path: projectsURL(org), token: owner.Token, body: map[string]any{"name": "new"}, header: withKey("new")}), http.StatusCreated)
		if n := e.count("projects"); n != 3 {
			t.Fatalf("projects has %d rows, want 3: the pruned key executes again, the live one replays", n)
		}
	})
}

// TestIdempotencyScopeIgnoresIDLetterCase: IDs are case-insensitive, so a
// retry that spells the organisation ID in lower case replays instead of
// executing a second time.
func TestIdempotencyScopeIgnoresIDLetterCase(t *testing.T) {
	t.Parallel()
	for _, ep := range idemEndpoints {
		if !strings.Contains(ep.path("ORG"), "ORG") {
			continue // POST /orgs has no ID in its path
		}
		t.Run(ep.name, func(t *testing.T) {
			t.Parallel()
			e, owner, org := idemFixture(t)
			rows := e.count(ep.table)
			first := e.do(req{method: "POST", path: ep.path(org), token: owner.Token, body: ep.body(1), header: withKey("case-1")})
			wantFresh(t, first)
			again := e.do(req{method: "POST", path: ep.path(strings.ToLower(org)), token: owner.Token, body: ep.body(1), header: withKey("case-1")})
			wantReplayOf(t, ep, again, first)
			if n := e.count(ep.table); n != rows+1 {
				t.Fatalf("%s has %d rows, want %d: the lower-case retry executed again", ep.table, n, rows+1)
			}
		})
	}
}
