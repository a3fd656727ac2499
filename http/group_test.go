package http_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/internal/dbpool"
	"github.com/saasapi/saasapi/projections"
)

// Group commit: project creations that arrive while a command of their
// organisation is in flight, or while every write slot is taken, share
// one transaction (commands/group.go, ADR 0009).

// createdCounts returns the row counts of what a project creation writes.
func (e *env) createdCounts() map[string]int {
	out := map[string]int{}
	for _, table := range []string{"events", "projects", "idempotency_records"} {
		out[table] = e.count(table)
	}
	return out
}

// waitUntil polls cond until it holds, failing the test after a while.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// holdLedger locks the organisation's ledger row in a transaction of the
// test's own, so that the next command of the organisation stays in
// flight, blocked in its first round trip, until release is called.
func (e *env) holdLedger(t *testing.T, org string) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := e.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM ledgers WHERE ledger_id = $1 FOR UPDATE`, org); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := tx.Commit(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// lockWaiters returns how many backends of the test's database wait for a
// lock.
func (e *env) lockWaiters(t *testing.T, event string) int {
	t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = $1`, event).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// inFlight starts a project creation of org and waits until it is in
// flight, blocked on the ledger lock that holdLedger took.
func (e *env) inFlight(t *testing.T, owner user, org string) <-chan response {
	t.Helper()
	waiters := e.lockWaiters(t, "transactionid")
	out := make(chan response, 1)
	go func() {
		r, err := e.send(req{method: "POST", path: projectsURL(org), token: owner.Token, body: map[string]any{"name": "In flight"}})
		if err != nil {
			t.Error(err)
		}
		out <- r
	}()
	waitUntil(t, "the first command waits for the ledger lock", func() bool { return e.lockWaiters(t, "transactionid") > waiters })
	return out
}

// TestGroupCommitRoundTrips: fifteen creations that queue behind one in
// flight run as one transaction of two round trips, and each gets its own
// 201 and its own project.
func TestGroupCommitRoundTrips(t *testing.T) {
	rt := &roundTrips{}
	e := setupPool(t, func(c *pgxpool.Config) {
		c.ConnConfig.Tracer = rt
		c.MaxConns = 1
	})
	owner := e.register("Owner")
	org := e.createOrg(owner, uniqueName("Group"))
	key := e.createAPIKey(owner, org)
	// Every statement prepared once on the one connection.
	e.createProject(owner.Token, org, map[string]any{"name": "Warm"})
	e.createProject(key.Raw, org, map[string]any{"name": "Warm"})
	wantFresh(t, e.do(req{method: "POST", path: projectsURL(org), token: owner.Token, header: withKey("warm"),
		body: map[string]any{"name": "Warm"}}))
	projects, events := e.count("projects"), e.count("events")

	release := e.holdLedger(t, org)
	rt.take()
	first := e.inFlight(t, owner, org)
	const queued = 15
	reqs := make([]req, queued)
	for i := range reqs {
		r := req{method: "POST", path: projectsURL(org), token: owner.Token,
			body: map[string]any{"name": fmt.Sprintf("Grouped %d", i), "description": fmt.Sprintf("number %d", i)}}
		switch i % 3 {
		case 1:
			r.token = key.Raw
		case 2:
			r.header = withKey(fmt.Sprintf("grouped-%d", i))
		}
		reqs[i] = r
	}
	wait := e.sendConcurrently(reqs, nil)
	waitUntil(t, "every creation waits in the write queue", func() bool { return e.svc.Waiting(saasapi.ID(org)) == queued })
	release()
	results := wait()
	want(t, <-first, http.StatusCreated)

	trips := rt.take()
	// The one in flight: two round trips; the fifteen: two more.
	if len(trips) != 4 {
		t.Fatalf("%d creations cost %d round trips, want 4 (2 for the one in flight, 2 for the group):\n%s",
			queued+1, len(trips), describeTrips(trips))
	}
	group := trips[2:]
	if span := lockSpan(group); span != 2 {
		t.Errorf("the group holds the ledger lock for %d round trips, want 2", span)
	}
	locks, commits := 0, 0
	for _, trip := range group {
		for _, sql := range trip {
			if strings.Contains(sql, "FOR UPDATE") {
				locks++
			}
			if sql == "COMMIT" {
				commits++
			}
		}
	}
	if locks != 1 || commits != 1 {
		t.Errorf("the group took the ledger lock %d times and committed %d times, want once each:\n%s", locks, commits, describeTrips(group))
	}

	ids := map[string]bool{}
	for i, r := range results {
		wantFresh(t, r)
		name := fmt.Sprintf("Grouped %d", i)
		if r.str("name") != name || r.str("description") != fmt.Sprintf("number %d", i) {
			t.Errorf("request %d got the project %s", i, r.Raw)
		}
		id := r.str("id")
		if ids[id] {
			t.Fatalf("two requests got project %s", id)
		}
		ids[id] = true
		got := e.do(req{method: "GET", path: projectsURL(org) + "/" + id, token: owner.Token})
		want(t, got, http.StatusOK)
		if string(got.Raw) != string(r.Raw) {
			t.Errorf("request %d was answered\n%s\nbut the project reads\n%s", i, r.Raw, got.Raw)
		}
		if reqs[i].header != nil {
			replay := e.do(reqs[i])
			if replay.Header.Get("Idempotency-Replayed") != "true" || string(replay.Raw) != string(r.Raw) {
				t.Errorf("the replay of request %d is %s (replayed %q), want its response", i, replay.Raw, replay.Header.Get("Idempotency-Replayed"))
			}
		}
	}
	if n := e.count("projects") - projects; n != queued+1 {
		t.Errorf("%d projects created, want %d", n, queued+1)
	}
	if n := e.count("events") - events; n != queued+1 {
		t.Errorf("%d events recorded, want %d", n, queued+1)
	}
	verifyDatabase(t, e)
}

// verifyDatabase checks what `saasapi audit verify` and `saasapi
// projections verify` check: every hash chain and Merkle tree, and the
// read tables against a replay of the events.
func verifyDatabase(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := eventstore.VerifyAll(ctx, e.db.Pool, nil); err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	read := commands.OpenedEvents(saasapi.EphemeralDataKeyring())
	if _, diffs, err := projections.Verify(ctx, e.db.Pool, read); err != nil || len(diffs) != 0 {
		t.Fatalf("projections verify: diffs %v, %v", diffs, err)
	}
}

// TestGroupCommitRefusedMembersLeave: members that their group refuses (a
// viewer, a replayed key, a key reused with another body, a second use of
// a key within the group) each get their own outcome, nothing of them
// commits, and the others are created.
func TestGroupCommitRefusedMembersLeave(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner, viewer := e.register("Owner"), e.register("Viewer")
	org := e.createOrg(owner, uniqueName("Refused"))
	e.addMember(owner, org, viewer, "viewer")
	earlier := req{method: "POST", path: projectsURL(org), token: owner.Token, header: withKey("earlier"),
		body: map[string]any{"name": "Earlier"}}
	original := e.do(earlier)
	wantFresh(t, original)
	before := e.createdCounts()

	release := e.holdLedger(t, org)
	first := e.inFlight(t, owner, org)
	body := func(name string) map[string]any { return map[string]any{"name": name} }
	reqs := []req{
		{method: "POST", path: projectsURL(org), token: owner.Token, body: body("Good one")},
		{method: "POST", path: projectsURL(org), token: viewer.Token, body: body("Viewer's")},
		earlier,
		{method: "POST", path: projectsURL(org), token: owner.Token, header: withKey("earlier"), body: body("Other body")},
		{method: "POST", path: projectsURL(org), token: owner.Token, header: withKey("twice"), body: body("Twice")},
		{method: "POST", path: projectsURL(org), token: owner.Token, header: withKey("twice"), body: body("Twice")},
		{method: "POST", path: projectsURL(org), token: owner.Token, header: withKey("once"), body: body("Good two")},
	}
	wait := e.sendConcurrently(reqs, nil)
	waitUntil(t, "every creation waits in the write queue", func() bool { return e.svc.Waiting(saasapi.ID(org)) == len(reqs) })
	release()
	results := wait()
	want(t, <-first, http.StatusCreated)

	wantFresh(t, results[0])
	wantProblem(t, results[1], http.StatusForbidden, saasapi.MsgInsufficientPerms)
	if results[2].Header.Get("Idempotency-Replayed") != "true" || string(results[2].Raw) != string(original.Raw) {
		t.Errorf("the replayed key got %d %s, want the replay of %s", results[2].Status, results[2].Raw, original.Raw)
	}
	wantProblem(t, results[3], http.StatusConflict, saasapi.MsgIdempotencyMismatch)
	// The same key twice: one executes, the other replays it.
	a, b := results[4], results[5]
	if a.Header.Get("Idempotency-Replayed") == "true" {
		a, b = b, a
	}
	wantFresh(t, a)
	if b.Header.Get("Idempotency-Replayed") != "true" || string(b.Raw) != string(a.Raw) {
		t.Errorf("the second use of a key got %d %s, want the replay of %s", b.Status, b.Raw, a.Raw)
	}
	wantFresh(t, results[6])
	for i, name := range map[int]string{0: "Good one", 4: "Twice", 6: "Good two"} {
		if results[i].str("name") != name {
			t.Errorf("request %d got %s, want the project %q", i, results[i].Raw, name)
		}
	}
	after := e.createdCounts()
	// The one in flight, "Good one", "Twice" and "Good two"; two new
	// idempotency records ("twice", "once").
	if n := after["projects"] - before["projects"]; n != 4 {
		t.Errorf("%d projects created, want 4", n)
	}
	if n := after["events"] - before["events"]; n != 4 {
		t.Errorf("%d events recorded, want 4", n)
	}
	if n := after["idempotency_records"] - before["idempotency_records"]; n != 2 {
		t.Errorf("%d idempotency records added, want 2", n)
	}
	verifyDatabase(t, e)
}

// createDirect creates a project through the service, as the transport
// does, and returns the new project's ID as its outcome's body.
func createDirect(ctx context.Context, e *env, owner user, org, name string) (string, error) {
	out, err := e.svc.CreateProject(ctx, commands.Meta{Principal: saasapi.UserPrincipal(saasapi.ID(owner.ID)), RequestID: name},
		saasapi.ID(org), commands.CreateProjectInput{Name: name}, nil,
		func(p projections.Project) (commands.Rendered, error) {
			return commands.Rendered{Status: http.StatusCreated, Body: []byte(p.ID)}, nil
		})
	return string(out.Body), err
}

// wantProjectNamed fails the test unless the project reads with the name.
func wantProjectNamed(t *testing.T, e *env, owner user, org, id, name string) {
	t.Helper()
	got := e.do(req{method: "GET", path: projectsURL(org) + "/" + id, token: owner.Token})
	want(t, got, http.StatusOK)
	if got.str("name") != name {
		t.Errorf("%s was created as %s", name, got.Raw)
	}
}

// onProjectInsert runs the PL/pgSQL statement body before every insert
// into the test database's projects (NEW is the row).
func onProjectInsert(t *testing.T, e *env, body string) {
	t.Helper()
	if _, err := e.db.Pool.Exec(context.Background(), `CREATE FUNCTION on_project_insert() RETURNS trigger
		LANGUAGE plpgsql AS $$ BEGIN `+body+` RETURN NEW; END $$;
		CREATE TRIGGER on_project_insert BEFORE INSERT ON projects FOR EACH ROW EXECUTE FUNCTION on_project_insert()`); err != nil {
		t.Fatal(err)
	}
}

// TestGroupCommitFailedBatchRunsMembersAlone: when PostgreSQL refuses the
// group's second batch, the group rolls back and each member runs alone:
// the failing one gets its error, the others their projects.
func TestGroupCommitFailedBatchRunsMembersAlone(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner := e.register("Owner")
	org := e.createOrg(owner, uniqueName("Failing"))
	ctx := context.Background()
	onProjectInsert(t, e, `IF NEW.name = 'Boom' THEN RAISE unique_violation USING MESSAGE = 'boom refused'; END IF;`)
	before := e.count("projects")

	release := e.holdLedger(t, org)
	first := e.inFlight(t, owner, org)
	names := []string{"Before boom", "Boom", "After boom"}
	ids, errs := make([]string, len(names)), make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { ids[i], errs[i] = createDirect(ctx, e, owner, org, name) })
	}
	waitUntil(t, "every creation waits in the write queue", func() bool { return e.svc.Waiting(saasapi.ID(org)) == len(names) })
	release()
	wg.Wait()
	want(t, <-first, http.StatusCreated)

	if errs[1] == nil || !strings.Contains(errs[1].Error(), "boom refused") {
		t.Errorf("Boom: %v, want the trigger's error", errs[1])
	}
	for _, i := range []int{0, 2} {
		if errs[i] != nil {
			t.Fatalf("%s: %v", names[i], errs[i])
		}
		wantProjectNamed(t, e, owner, org, ids[i], names[i])
	}
	if n := e.count("projects") - before; n != 3 {
		t.Errorf("%d projects created, want 3 (the one in flight, before and after boom)", n)
	}
	verifyDatabase(t, e)
}

// TestGroupCommitCancelledMember: a member whose request is cancelled
// while it waits leaves the queue with its context's error and records
// nothing; one cancelled while its group is in flight (the group's leader,
// even) does not cancel the group's transaction.
func TestGroupCommitCancelledMember(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner := e.register("Owner")
	org := e.createOrg(owner, uniqueName("Cancelled"))
	ctx := context.Background()
	// A project named "Wait" is inserted only while the test allows it.
	onProjectInsert(t, e, `IF NEW.name = 'Wait' THEN PERFORM pg_advisory_xact_lock_shared(4242); END IF;`)
	before := e.count("projects")

	// Cancelled while waiting.
	release := e.holdLedger(t, org)
	first := e.inFlight(t, owner, org)
	waitCtx, cancelWaiting := context.WithCancel(ctx)
	waited := make(chan error, 1)
	go func() {
		_, err := createDirect(waitCtx, e, owner, org, "Gone")
		waited <- err
	}()
	waitUntil(t, "the creation waits in the write queue", func() bool { return e.svc.Waiting(saasapi.ID(org)) == 1 })
	cancelWaiting()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("a creation cancelled while it waited: %v, want %v", err, context.Canceled)
	}
	if n := e.svc.Waiting(saasapi.ID(org)); n != 0 {
		t.Fatalf("%d commands wait after the only one waiting was cancelled", n)
	}
	release()
	want(t, <-first, http.StatusCreated)

	// Cancelled while its group is in flight: the leader, "Leader", is
	// cancelled while the group waits to insert "Wait".
	conn, err := e.db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(4242)`); err != nil {
		t.Fatal(err)
	}
	release = e.holdLedger(t, org)
	first = e.inFlight(t, owner, org)
	leaderCtx, cancelLeader := context.WithCancel(ctx)
	defer cancelLeader()
	type result struct {
		id  string
		err error
	}
	leader, other := make(chan result, 1), make(chan result, 1)
	go func() {
		id, err := createDirect(leaderCtx, e, owner, org, "Leader")
		leader <- result{id, err}
	}()
	waitUntil(t, "the leader waits in the write queue", func() bool { return e.svc.Waiting(saasapi.ID(org)) == 1 })
	go func() {
		id, err := createDirect(ctx, e, owner, org, "Wait")
		other <- result{id, err}
	}()
	waitUntil(t, "both wait in the write queue", func() bool { return e.svc.Waiting(saasapi.ID(org)) == 2 })
	release()
	want(t, <-first, http.StatusCreated)
	waitUntil(t, "the group waits to insert Wait", func() bool { return e.lockWaiters(t, "advisory") == 1 })
	cancelLeader()
	// A transaction that the leader's context governed would be cancelled
	// by now.
	time.Sleep(100 * time.Millisecond)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock(4242)`); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan result{"Leader": leader, "Wait": other} {
		r := <-ch
		if r.err != nil {
			t.Fatalf("%s: %v, want it created with its group", name, r.err)
		}
		wantProjectNamed(t, e, owner, org, r.id, name)
	}
	// The two in flight, Leader and Wait; not Gone.
	if n := e.count("projects") - before; n != 4 {
		t.Errorf("%d projects created, want 4", n)
	}
	verifyDatabase(t, e)
}

// TestConcurrentCreatesInOneOrganisation: many concurrent creations in one
// organisation, with and without Idempotency-Key (some keys repeated) and
// some refused, grouped as they arrive: every key executes once, every
// response is the request's own, and the ledger and the read tables
// verify.
func TestConcurrentCreatesInOneOrganisation(t *testing.T) {
	t.Parallel()
	rt := &roundTrips{}
	e := setupPool(t, func(c *pgxpool.Config) { c.ConnConfig.Tracer = rt })
	owner, viewer := e.register("Owner"), e.register("Viewer")
	org := e.createOrg(owner, uniqueName("Crowd"))
	e.addMember(owner, org, viewer, "viewer")
	key := e.createAPIKey(owner, org)
	before := e.createdCounts()

	const n = 60
	reqs := make([]req, n)
	for i := range reqs {
		name := fmt.Sprintf("Crowd %d", i)
		r := req{method: "POST", path: projectsURL(org), token: owner.Token, body: map[string]any{"name": name}}
		switch i % 6 {
		case 1:
			r.token = key.Raw
		case 2, 3:
			// Keys used by three requests each, with the same body.
			k := i / 6 % 4
			r.header = withKey(fmt.Sprintf("shared-%d-%d", i%6, k))
			r.body = map[string]any{"name": fmt.Sprintf("Shared %d %d", i%6, k)}
		case 4:
			r.header = withKey(fmt.Sprintf("own-%d", i))
		case 5:
			if i%12 == 5 {
				r.token = viewer.Token
			}
		}
		reqs[i] = r
	}
	start := make(chan struct{})
	wait := e.sendConcurrently(reqs, start)
	rt.take()
	close(start)
	results := wait()
	commits := 0
	for _, trip := range rt.take() {
		for _, sql := range trip {
			if sql == "COMMIT" {
				commits++
			}
		}
	}

	created := 0
	byKey := map[string][]response{}
	ids := map[string]bool{}
	for i, r := range results {
		if reqs[i].token == viewer.Token {
			wantProblem(t, r, http.StatusForbidden, saasapi.MsgInsufficientPerms)
			continue
		}
		want(t, r, http.StatusCreated)
		if name := reqs[i].body.(map[string]any)["name"]; r.str("name") != name {
			t.Errorf("request %d for %q got %s", i, name, r.Raw)
		}
		if k := reqs[i].header["Idempotency-Key"]; k != "" {
			byKey[k] = append(byKey[k], r)
			continue
		}
		if ids[r.str("id")] {
			t.Errorf("two requests got project %s", r.str("id"))
		}
		ids[r.str("id")] = true
		created++
	}
	for k, rs := range byKey {
		fresh := 0
		for _, r := range rs {
			if r.Header.Get("Idempotency-Replayed") != "true" {
				fresh++
			}
			if string(r.Raw) != string(rs[0].Raw) {
				t.Errorf("key %s answered %s and %s", k, rs[0].Raw, r.Raw)
			}
		}
		if fresh != 1 {
			t.Errorf("key %s executed %d times, want once", k, fresh)
		}
		if ids[rs[0].str("id")] {
			t.Errorf("two requests got project %s", rs[0].str("id"))
		}
		ids[rs[0].str("id")] = true
		created++
	}
	after := e.createdCounts()
	if got := after["projects"] - before["projects"]; got != created {
		t.Errorf("%d projects created, want %d", got, created)
	}
	if got := after["events"] - before["events"]; got != created {
		t.Errorf("%d events recorded, want %d", got, created)
	}
	if got := after["idempotency_records"] - before["idempotency_records"]; got != len(byKey) {
		t.Errorf("%d idempotency records added, want %d", got, len(byKey))
	}
	verifyDatabase(t, e)
	// How the arrivals happened to group (not asserted: it depends on
	// their timing).
	t.Logf("%d requests created %d projects in %d commits", n, created, commits)
}

// TestUnsharedCommandsDoNotJoinGroups: a member removal, whose last-owner
// rule reads what an earlier command could change, never waits in a
// write queue: it waits for the ledger lock in PostgreSQL, behind the
// creation in flight.
func TestUnsharedCommandsDoNotJoinGroups(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner, leaver := e.register("Owner"), e.register("Leaver")
	org := e.createOrg(owner, uniqueName("Unshared"))
	e.addMember(owner, org, leaver, "member")

	release := e.holdLedger(t, org)
	first := e.inFlight(t, owner, org)
	removed := make(chan response, 1)
	go func() {
		r, err := e.send(req{method: "DELETE", path: "/orgs/" + org + "/members/" + leaver.ID, token: owner.Token})
		if err != nil {
			t.Error(err)
		}
		removed <- r
	}()
	waitUntil(t, "the removal waits for the ledger lock", func() bool { return e.lockWaiters(t, "tuple") == 1 })
	if n := e.svc.Waiting(saasapi.ID(org)); n != 0 {
		t.Fatalf("%d commands wait in the write queue, want none", n)
	}
	release()
	want(t, <-first, http.StatusCreated)
	want(t, <-removed, http.StatusNoContent)
}

// sendConcurrently sends every request of reqs from a goroutine of its own
// once start is closed (nil: at once); wait waits for them all and returns
// the responses in the order of reqs. A transport failure fails the test.
func (e *env) sendConcurrently(reqs []req, start <-chan struct{}) (wait func() []response) {
	results := make([]response, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() {
			if start != nil {
				<-start
			}
			var err error
			if results[i], err = e.send(r); err != nil {
				e.t.Error(err)
			}
		})
	}
	return func() []response {
		wg.Wait()
		return results
	}
}

// TestGroupCommitAcrossOrganisations: while every write slot is taken,
// creations in other organisations wait, and when a slot frees they go out
// together: one transaction that locks their ledgers in one statement,
// with each ledger's events chained at its own head, each request its own
// 201, and every chain (gapless), tree and read table verifying afterwards.
func TestGroupCommitAcrossOrganisations(t *testing.T) {
	rt := &roundTrips{}
	e := setupPool(t, func(c *pgxpool.Config) {
		c.ConnConfig.Tracer = rt
		c.MaxConns = int32(commands.DefaultWriteGroups) + 1
	})
	owner := e.register("Owner")
	busy := make([]string, commands.DefaultWriteGroups)
	for i := range busy {
		busy[i] = e.createOrg(owner, uniqueName("Busy"))
	}
	orgs := []string{e.createOrg(owner, uniqueName("Waits")), e.createOrg(owner, uniqueName("Waits")),
		e.createOrg(owner, uniqueName("Waits"))}
	for _, org := range orgs {
		e.createProject(owner.Token, org, map[string]any{"name": "Before"})
	}

	// Every slot holds a creation blocked on its ledger's lock.
	var releases []func()
	var firsts []<-chan response
	for _, org := range busy {
		releases = append(releases, e.holdLedger(t, org))
		firsts = append(firsts, e.inFlight(t, owner, org))
	}
	var reqs []req
	for i := range 2 * len(orgs) {
		reqs = append(reqs, req{method: "POST", path: projectsURL(orgs[i%len(orgs)]), token: owner.Token,
			body: map[string]any{"name": fmt.Sprintf("Across %d", i)}})
	}
	wait := e.sendConcurrently(reqs, nil)
	waitUntil(t, "every creation waits for a slot", func() bool {
		n := 0
		for _, org := range orgs {
			n += e.svc.Waiting(saasapi.ID(org))
		}
		return n == len(reqs)
	})
	rt.take()
	releases[0]()
	want(t, <-firsts[0], http.StatusCreated)
	results := wait()
	var created []string
	for i, r := range results {
		wantFresh(t, r)
		if r.str("name") != fmt.Sprintf("Across %d", i) {
			t.Errorf("request %d got the project %s", i, r.Raw)
		}
		created = append(created, r.str("id"))
	}
	trips := rt.take()
	for _, release := range releases[1:] {
		release()
	}
	for _, first := range firsts[1:] {
		want(t, <-first, http.StatusCreated)
	}

	// The second round trip of the slot's creation (its first was sent
	// before the count began), then the group's two.
	if len(trips) != 3 {
		t.Fatalf("the creations cost %d round trips, want 3:\n%s", len(trips), describeTrips(trips))
	}
	locks, commits := 0, 0
	for _, sql := range slices.Concat(trips[1:]...) {
		if strings.Contains(sql, "FOR UPDATE") {
			locks++
		}
		if sql == "COMMIT" {
			commits++
		}
	}
	if locks != 1 || commits != 1 {
		t.Errorf("the group took %d lock statements and %d commits, want one each:\n%s", locks, commits, describeTrips(trips[1:]))
	}
	var txs int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(DISTINCT xmin::text) FROM events
		WHERE stream_id = ANY($1)`, created).Scan(&txs); err != nil {
		t.Fatal(err)
	}
	if txs != 1 {
		t.Errorf("the creations committed in %d transactions, want 1", txs)
	}
	// Every chain gapless and every tree whole, as audit verify checks.
	verifyDatabase(t, e)
}

// TestGroupsOfTwoReplicasNeverDeadlock: two processes' schedulers (two
// services on their own pools, as two replicas) group creations of the
// same organisations at once; their groups lock overlapping sets of
// ledgers, in ID order, so none ever waits in a cycle (PostgreSQL counts
// no deadlock), every creation succeeds once, and the chains verify.
func TestGroupsOfTwoReplicasNeverDeadlock(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	owner := e.register("Owner")
	var orgs []string
	for range 3 {
		orgs = append(orgs, e.createOrg(owner, uniqueName("Shared")))
	}
	// Two replicas, each with its own pool and scheduler.
	var pools []*pgxpool.Pool
	var replicas []*commands.Service
	for range 2 {
		pool, err := dbpool.Open(ctx, e.db.URL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		svc := commands.New(pool, commands.Config{Keys: saasapi.EphemeralDataKeyring(),
			Hasher: auth.NewHasher(auth.TestParams, 0), Tokens: e.tokens, PasswordMinLength: 12})
		pools, replicas = append(pools, pool), append(replicas, svc)
	}
	deadlocks := func() int64 {
		var n int64
		if err := e.db.Pool.QueryRow(ctx, `SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := deadlocks()
	meta := commands.Meta{Principal: saasapi.UserPrincipal(saasapi.ID(owner.ID)), RequestID: "req-replicas"}
	const perReplica = 120
	errs := make(chan error, 2*perReplica)
	var wg sync.WaitGroup
	for r, svc := range replicas {
		for i := range perReplica {
			wg.Add(1)
			go func() {
				defer wg.Done()
				org := saasapi.ID(orgs[(i*7+r*3)%len(orgs)])
				_, err := svc.CreateProject(ctx, meta, org, commands.CreateProjectInput{Name: fmt.Sprintf("replica %d %d", r, i)}, nil,
					func(projections.Project) (commands.Rendered, error) { return commands.Rendered{Status: 201}, nil })
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// A backend reports its counts when it ends, and they reach
	// pg_stat_database within about a second: closing the pools ends the
	// replicas' backends, and the count is watched for a while.
	for i, svc := range replicas {
		svc.Close()
		pools[i].Close()
	}
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && deadlocks() == before; {
		time.Sleep(100 * time.Millisecond)
	}
	if n := deadlocks() - before; n != 0 {
		t.Errorf("PostgreSQL counted %d deadlocks", n)
	}
	var created int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM projects WHERE name LIKE 'replica %'`).Scan(&created); err != nil {
		t.Fatal(err)
	}
	if created != 2*perReplica {
		t.Errorf("%d projects created, want %d", created, 2*perReplica)
	}
	verifyDatabase(t, e)
}
