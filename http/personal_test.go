package http_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/saasapi/saasapi"
)

// registerNamed registers a user whose display name is unique too, so that
// a search for it in the database means something.
func (e *env) registerNamed() (u user, displayName string) {
	e.t.Helper()
	displayName = "Person" + saasapi.NewID().String()
	return e.register(displayName), displayName
}

// TestEventsHoldNoPersonalData dumps the payloads of every event, as a
// database dump or backup would hold them, and finds no email or display
// name, while the person still sees both.
func TestEventsHoldNoPersonalData(t *testing.T) {
	t.Parallel()
	e := setup(t)
	a, aName := e.registerNamed()
	b, bName := e.registerNamed()
	e.addMember(a, e.createOrg(a, uniqueName("Org")), b, "member")

	rows, err := e.db.Pool.Query(context.Background(), `SELECT payload::text FROM events`)
	if err != nil {
		t.Fatal(err)
	}
	var dump strings.Builder
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		dump.WriteString(p + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	text := strings.ToLower(dump.String())
	for _, secret := range []string{a.Email, b.Email, aName, bName, "@example.com"} {
		if strings.Contains(text, strings.ToLower(secret)) {
			t.Errorf("events.payload holds %q in plain text", secret)
		}
	}
	if !strings.Contains(text, `"email":"pd1:`) {
		t.Errorf("no sealed email in the events: %s", text)
	}

	me := e.do(req{method: "GET", path: "/me", token: a.Token})
	want(t, me, http.StatusOK)
	if mu := me.obj("user"); mu["email"] != a.Email || mu["display_name"] != aName {
		t.Errorf("GET /me shows %v, want %q %q", mu, a.Email, aName)
	}
	r := e.do(req{method: "GET", path: "/me/audit-events", token: a.Token})
	want(t, r, http.StatusOK)
	found := false
	for _, item := range r.items() {
		if item["action"] == saasapi.EventUserRegistered {
			m, _ := item["metadata"].(map[string]any)
			found = m["email"] == a.Email && m["display_name"] == aName
		}
	}
	if !found {
		t.Errorf("the person's own user.registered does not show their email and name: %v", r.items())
	}
}
