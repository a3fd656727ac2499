package http_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/projections"
)

// isolationSweep names, for every route that takes an organisation or
// object id, what an attack on another tenant's data sends and which
// "not found" the route answers for an object of another organisation.
var isolationSweep = map[string]struct {
	body any
	// apiKeys is whether the route admits API keys (the project routes).
	apiKeys bool
	// notFound is the detail for another organisation's object reached
	// through the caller's own organisation; empty for routes without an
	// object id.
	notFound string
}{
	"GET /orgs/{organisation_id}":                                {nil, false, ""},
	"PATCH /orgs/{organisation_id}":                              {map[string]any{"name": "Hijacked"}, false, ""},
	"GET /orgs/{organisation_id}/members":                        {nil, false, ""},
	"POST /orgs/{organisation_id}/members":                       {nil, false, ""}, // body is built per attacker
	"PATCH /orgs/{organisation_id}/members/{user_id}":            {map[string]any{"role": "owner"}, false, saasapi.MsgMembershipNotFound},
	"DELETE /orgs/{organisation_id}/members/{user_id}":           {nil, false, saasapi.MsgMembershipNotFound},
	"POST /orgs/{organisation_id}/api-keys":                      {map[string]any{"name": "Tenant A key"}, false, ""},
	"GET /orgs/{organisation_id}/api-keys":                       {nil, false, ""},
	"DELETE /orgs/{organisation_id}/api-keys/{api_key_id}":       {nil, false, saasapi.MsgAPIKeyNotFound},
	"POST /orgs/{organisation_id}/projects":                      {map[string]any{"name": "Tenant A project"}, true, ""},
	"GET /orgs/{organisation_id}/projects":                       {nil, true, ""},
	"GET /orgs/{organisation_id}/projects/{project_id}":          {nil, true, saasapi.MsgProjectNotFound},
	"PATCH /orgs/{organisation_id}/projects/{project_id}":        {map[string]any{"name": "Hijacked"}, true, saasapi.MsgProjectNotFound},
	"DELETE /orgs/{organisation_id}/projects/{project_id}":       {nil, true, saasapi.MsgProjectNotFound},
	"GET /orgs/{organisation_id}/audit-events":                   {nil, false, ""},
	"GET /orgs/{organisation_id}/audit-events/head":              {nil, false, ""},
	"GET /orgs/{organisation_id}/audit-events/export":            {nil, false, ""},
	"GET /orgs/{organisation_id}/audit-events/checkpoint":        {nil, false, ""},
	"GET /orgs/{organisation_id}/audit-events/proof/inclusion":   {nil, false, ""},
	"GET /orgs/{organisation_id}/audit-events/proof/consistency": {nil, false, ""},
}

// idParam matches the id parameters of a route template.
var idParam = regexp.MustCompile(`\{[a-z_]+_id\}`)

// snapshotTables are the tables whose content no refused request may
// change: every read table the projections keep (users, organisations,
// memberships, projects, api_keys and any added later), the secrets and
// idempotency records, the ledgers and the events themselves.
var snapshotTables = append(slices.Clone(projections.Tables),
	"api_key_secrets", "user_credentials", "idempotency_records", "ledgers", "events")

// snapshot returns a digest of every row of each snapshot table, and the
// number of events.
func (e *env) snapshot() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, table := range snapshotTables {
		var digest string
		err := e.db.Pool.QueryRow(context.Background(),
			`SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), 'empty') FROM `+table+` t`).Scan(&digest)
		if err != nil {
			e.t.Fatal(err)
		}
		out[table] = digest
	}
	out["events count"] = fmt.Sprint(e.count("events"))
	return out
}

// TestTenantIsolation aims every route that takes an id at another
// tenant's organisation and objects, as that other tenant's owner, its API
// key and a user of no organisation, and checks both the answer and that
// nothing at all changed.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	e := setup(t)

	// Tenant A: an owner, a member, a project and an API key. The project
	// and key are created with an Idempotency-Key that every attacking POST
	// reuses with the same body, so a replay across tenants would show.
	const sharedKey = "tenant-a-request"
	ownerA, memberA := e.register("OwnerA"), e.register("MemberA")
	orgA := e.createOrg(ownerA, uniqueName("Tenant A"))
	e.addMember(ownerA, orgA, memberA, "member")
	r := e.do(req{method: "POST", path: "/orgs/" + orgA + "/projects", token: ownerA.Token,
		body: isolationSweep["POST /orgs/{organisation_id}/projects"].body, header: map[string]string{"Idempotency-Key": sharedKey}})
	want(t, r, http.StatusCreated)
	projectA := r.str("id")
	r = e.do(req{method: "POST", path: "/orgs/" + orgA + "/api-keys", token: ownerA.Token,
		body: isolationSweep["POST /orgs/{organisation_id}/api-keys"].body, header: map[string]string{"Idempotency-Key": sharedKey}})
	want(t, r, http.StatusCreated)
	keyA := r.obj("api_key")["id"].(string)

	// Tenant B: its owner and an API key; and a user of no organisation.
	ownerB := e.register("OwnerB")
	orgB := e.createOrg(ownerB, uniqueName("Tenant B"))
	keyB := e.createAPIKey(ownerB, orgB)
	outsider := e.register("Outsider")

	t.Run("EverySweptRouteIsServed", func(t *testing.T) {
		t.Parallel()
		served := e.server.Routes()
		for _, route := range served {
			if idParam.MatchString(route) {
				if _, ok := isolationSweep[route]; !ok {
					t.Errorf("route %q takes an id but has no isolation sweep entry", route)
				}
			}
		}
		for route := range isolationSweep {
			if !slices.Contains(served, route) {
				t.Errorf("isolation sweep entry %q is not a route of the router", route)
			}
		}
	})

	objectOfA := map[string]string{"{user_id}": memberA.ID, "{project_id}": projectA, "{api_key_id}": keyA}
	attackers := []struct {
		name, token string
		isKey       bool
		ownsB       bool // the attacker may act in organisation B
	}{
		{"OwnerB", ownerB.Token, false, true},
		{"APIKeyB", keyB.Raw, true, true},
		{"Outsider", outsider.Token, false, false},
	}

	// Every refused request must leave every table as it was; checked once
	// all parallel attacks below have finished.
	before := e.snapshot()
	t.Cleanup(func() {
		if after := e.snapshot(); !maps.Equal(before, after) {
			for table := range before {
				if before[table] != after[table] {
					t.Errorf("%s changed during the attacks (%s -> %s), want no change", table, before[table], after[table])
				}
			}
		}
	})

	for _, route := range slices.Sorted(maps.Keys(isolationSweep)) {
		entry := isolationSweep[route]
		method, template, _ := strings.Cut(route, " ")
		object := idParam.FindAllString(strings.Replace(template, "{organisation_id}", "", 1), -1)
		targets := []struct{ name, org string }{{"OrgA", orgA}}
		if len(object) > 0 {
			// B's own organisation with A's object: the object must not be
			// found through an organisation it does not belong to.
			targets = append(targets, struct{ name, org string }{"OrgBWithObjectOfA", orgB})
		}
		for _, target := range targets {
			for _, att := range attackers {
				t.Run(route+"/"+target.name+"/"+att.name, func(t *testing.T) {
					t.Parallel()
					path := strings.Replace(template, "{organisation_id}", target.org, 1)
					for param, id := range objectOfA {
						path = strings.Replace(path, param, id, 1)
					}
					body := entry.body
					if route == "POST /orgs/{organisation_id}/members" {
						body = map[string]any{"user_id": outsider.ID, "role": "owner"}
					}
					var header map[string]string
					if method == "POST" {
						header = map[string]string{"Idempotency-Key": sharedKey}
					}
					r := e.forT(t).do(req{method: method, path: path, token: att.token, body: body, header: header})

					switch {
					case att.isKey && !entry.apiKeys:
						wantProblem(t, r, http.StatusUnauthorized, saasapi.MsgInvalidToken)
					case target.org == orgB && att.ownsB:
						wantProblem(t, r, http.StatusNotFound, entry.notFound)
					default:
						wantProblem(t, r, http.StatusForbidden, saasapi.MsgOrgAccessDenied)
					}
				})
			}
		}
	}

	t.Run("OwnListsShowNoRowOfAnotherTenant", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		lists := []struct {
			path, token string
			wantIDs     []string
			idOf        func(map[string]any) string
		}{
			{"/orgs/" + orgB + "/projects", ownerB.Token, nil, func(m map[string]any) string { return m["id"].(string) }},
			{"/orgs/" + orgB + "/projects", keyB.Raw, nil, func(m map[string]any) string { return m["id"].(string) }},
			{"/orgs/" + orgB + "/api-keys", ownerB.Token, []string{keyB.ID}, func(m map[string]any) string { return m["id"].(string) }},
			{"/orgs/" + orgB + "/members", ownerB.Token, []string{ownerB.ID},
				func(m map[string]any) string { return m["user"].(map[string]any)["id"].(string) }},
			{"/orgs", ownerB.Token, []string{orgB}, func(m map[string]any) string { return m["id"].(string) }},
			{"/orgs", outsider.Token, nil, func(m map[string]any) string { return m["id"].(string) }},
		}
		for _, l := range lists {
			r := e.do(req{method: "GET", path: l.path, token: l.token})
			want(t, r, http.StatusOK)
			var got []string
			for _, it := range r.items() {
				got = append(got, l.idOf(it))
			}
			if !slices.Equal(got, l.wantIDs) || r.obj("pagination")["total"] != float64(len(l.wantIDs)) {
				t.Errorf("GET %s lists %v (total %v), want exactly %v", l.path, got, r.obj("pagination")["total"], l.wantIDs)
			}
			for _, secret := range []string{orgA, projectA, keyA, memberA.ID, ownerA.ID} {
				if strings.Contains(string(r.Raw), secret) {
					t.Errorf("GET %s mentions %s of tenant A: %s", l.path, secret, r.Raw)
				}
			}
		}
	})
}
