package http_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/saasapi/saasapi"
)

func (e *env) scalar(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func TestEraseMe(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner, _ := e.registerNamed()
	person, personName := e.registerNamed()
	org := e.createOrg(owner, uniqueName("Org"))
	e.addMember(owner, org, person, "admin")
	project := e.createProject(person.Token, org, map[string]any{"name": "Kept"})
	// An idempotent write of the person's, whose record keeps its response.
	want(t, e.do(req{method: "POST", path: "/orgs/" + org + "/projects", token: person.Token,
		header: map[string]string{"Idempotency-Key": "erase-1"}, body: map[string]any{"name": "Idem"}}), http.StatusCreated)

	want(t, e.do(req{method: "DELETE", path: "/me", token: person.Token, body: map[string]any{"password": "not the password"}}),
		http.StatusUnauthorized, saasapi.MsgInvalidCredentials)
	wantInvalid(t, e.do(req{method: "DELETE", path: "/me", token: person.Token, body: map[string]any{}}), "password")
	events := e.count("events")
	want(t, e.do(req{method: "DELETE", path: "/me", token: owner.Token, body: map[string]any{"password": testPassword}}),
		http.StatusConflict, saasapi.MsgLastOwner)
	if n := e.count("events"); n != events {
		t.Fatalf("a refused erasure recorded %d events", n-events)
	}

	want(t, e.do(req{method: "DELETE", path: "/me", token: person.Token, body: map[string]any{"password": testPassword}}),
		http.StatusNoContent)
	want(t, e.do(req{method: "GET", path: "/me", token: person.Token}), http.StatusUnauthorized)
	want(t, e.do(req{method: "POST", path: "/auth/login", body: map[string]any{"email": person.Email, "password": testPassword}}),
		http.StatusUnauthorized, saasapi.MsgInvalidCredentials)
	if n := e.scalar(`SELECT count(*) FROM users WHERE id = $1 AND email IS NULL AND display_name IS NULL AND NOT is_active`, person.ID); n != 1 {
		t.Errorf("users row is not a tombstone")
	}
	for table, n := range map[string]int{
		"person_keys":      e.scalar(`SELECT count(*) FROM person_keys WHERE user_id = $1`, person.ID),
		"user_credentials": e.scalar(`SELECT count(*) FROM user_credentials WHERE user_id = $1`, person.ID),
		"memberships":      e.scalar(`SELECT count(*) FROM memberships WHERE user_id = $1`, person.ID),
	} {
		if n != 0 {
			t.Errorf("%s still holds %d rows of the erased person", table, n)
		}
	}
	if n := e.scalar(`SELECT count(*) FROM events WHERE ledger_id = $1 AND event_type = 'user.erased'`, person.ID); n != 1 {
		t.Errorf("%d user.erased events in the person's ledger, want 1", n)
	}
	if n := e.scalar(`SELECT count(*) FROM events WHERE ledger_id = $1 AND event_type = 'member.removed' AND payload->>'user_id' = $2`, org, person.ID); n != 1 {
		t.Errorf("%d member.removed events in the organisation's ledger, want 1", n)
	}
	got := e.do(req{method: "GET", path: "/orgs/" + org + "/projects/" + project["id"].(string), token: owner.Token})
	want(t, got, http.StatusOK)
	if got.Body["created_by_user_id"] != person.ID {
		t.Errorf("project lost its creator's ID: %v", got.Body)
	}

	// Nothing kept elsewhere names the erased person: not the idempotency
	// records, not the logs.
	var records string
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT coalesce(string_agg(r::text, ' '), '') FROM idempotency_records r`).Scan(&records); err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string]string{"idempotency_records": records, "logs": e.logs.String()} {
		if strings.Contains(strings.ToLower(text), strings.ToLower(person.Email)) || strings.Contains(text, personName) {
			t.Errorf("%s hold the erased person's email or name", what)
		}
	}

	r := e.do(req{method: "POST", path: "/auth/register", body: map[string]any{
		"email": person.Email, "password": testPassword, "display_name": "Someone new"}})
	want(t, r, http.StatusCreated)
	if id := r.obj("user")["id"]; id == person.ID {
		t.Fatal("the new account has the erased person's ID")
	}
}

// TestEraseWhileSigningInAndJoining: sign-ins and a membership change of
// the person run while they erase themselves; afterwards no sign-in follows
// the erasure in their ledger and no membership of theirs is left.
func TestEraseWhileSigningInAndJoining(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner, _ := e.registerNamed()
	person, _ := e.registerNamed()
	orgs := []string{e.createOrg(owner, uniqueName("A")), e.createOrg(owner, uniqueName("B"))}
	e.addMember(owner, orgs[0], person, "member")

	var wg sync.WaitGroup
	statuses := make(chan int, 64)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				r, err := e.send(req{method: "POST", path: "/auth/login", body: map[string]any{"email": person.Email, "password": testPassword}})
				if err != nil {
					t.Error(err)
					return
				}
				statuses <- r.Status
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		r, err := e.send(req{method: "POST", path: "/orgs/" + orgs[1] + "/members", token: owner.Token, body: map[string]any{"user_id": person.ID, "role": "viewer"}})
		if err != nil {
			t.Error(err)
			return
		}
		statuses <- r.Status
	}()
	go func() {
		defer wg.Done()
		r, err := e.send(req{method: "DELETE", path: "/me", token: person.Token, body: map[string]any{"password": testPassword}})
		if err != nil || r.Status != http.StatusNoContent {
			t.Errorf("erase: %v %v", r.Status, err)
		}
	}()
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s >= 500 {
			t.Errorf("a concurrent request got %d", s)
		}
	}
	if n := e.scalar(`SELECT count(*) FROM memberships WHERE user_id = $1`, person.ID); n != 0 {
		t.Errorf("%d memberships of the erased person remain", n)
	}
	if n := e.scalar(`SELECT count(*) FROM events a JOIN events b ON b.ledger_id = a.ledger_id AND b.sequence > a.sequence
		WHERE a.ledger_id = $1 AND a.event_type = 'user.erased'`, person.ID); n != 0 {
		t.Errorf("%d events follow user.erased in the person's ledger", n)
	}
	e.svc.Wait()
}
