package http_test

import (
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/saasapi/saasapi"
)

// wantOrganisation fails the test unless o is the public shape of an
// organisation with the name and slug.
func wantOrganisation(t *testing.T, o map[string]any, name, slug string) {
	t.Helper()
	wantKeys(t, "organisation", o, "id", "name", "slug", "created_at", "updated_at")
	wantULID(t, "organisation.id", o["id"])
	if o["name"] != name || o["slug"] != slug {
		t.Fatalf("organisation = %v, want name %q and slug %q", o, name, slug)
	}
	created := wantTimestamp(t, "organisation.created_at", o["created_at"])
	if updated := wantTimestamp(t, "organisation.updated_at", o["updated_at"]); updated.Before(created) {
		t.Fatalf("organisation.updated_at %v is before created_at %v", updated, created)
	}
}

// wantETag fails the test unless r carries the strong ETag of version.
func wantETag(t *testing.T, r response, version string) {
	t.Helper()
	if got := r.Header.Get("ETag"); got != `"`+version+`"` {
		t.Fatalf("ETag = %q, want %q", got, `"`+version+`"`)
	}
}

// wantPagination fails the test unless r is a list with the given
// pagination block and as many items as count.
func wantPagination(t *testing.T, r response, limit, offset, total, count int) {
	t.Helper()
	wantKeys(t, "list", r.Body, "items", "pagination")
	wantKeys(t, "pagination", r.obj("pagination"), "limit", "offset", "total", "count")
	p := r.obj("pagination")
	if p["limit"] != float64(limit) || p["offset"] != float64(offset) || p["total"] != float64(total) || p["count"] != float64(count) {
		t.Fatalf("pagination = %v, want limit %d, offset %d, total %d, count %d", p, limit, offset, total, count)
	}
	if items, ok := r.Body["items"].([]any); !ok || len(items) != count {
		t.Fatalf("items = %v, want an array of %d", r.Body["items"], count)
	}
}

func TestCreateOrganisation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	alice := e.register("Alice")

	t.Run("ReturnsOrganisationWithETag", func(t *testing.T) {
		t.Parallel()
		r := e.forT(t).do(req{method: "POST", path: "/orgs", token: alice.Token, body: map[string]any{"name": "Created Org"}})
		want(t, r, http.StatusCreated)
		wantOrganisation(t, r.Body, "Created Org", "created-org")
		wantETag(t, r, "1")
		if r.Body["created_at"] != r.Body["updated_at"] {
			t.Fatalf("a new organisation's created_at %v and updated_at %v differ, want them equal", r.Body["created_at"], r.Body["updated_at"])
		}
	})

	t.Run("DerivesSlugFromName", func(t *testing.T) {
		t.Parallel()
		tests := []struct{ name, slug string }{
			{"Acme Corp!", "acme-corp"},
			{"A", "a-org"},
			{"Zz", "zz-org"},
			{"!!!", "org"},
			{"  Hello,   World  ", "hello-world"},
			{"Über Straße 42", "ber-stra-e-42"},
			{"x-", "x-org"},
			{strings.Repeat("x", 79) + "-yz", strings.Repeat("x", 79)},
			{strings.Repeat("Q", 120), strings.Repeat("q", 80)},
		}
		for _, tt := range tests {
			t.Run(tt.slug, func(t *testing.T) {
				t.Parallel()
				r := e.forT(t).do(req{method: "POST", path: "/orgs", token: alice.Token, body: map[string]any{"name": tt.name}})
				want(t, r, http.StatusCreated)
				wantOrganisation(t, r.Body, tt.name, tt.slug)
			})
		}
	})

	t.Run("UsesExplicitSlug", func(t *testing.T) {
		t.Parallel()
		for _, slug := range []string{"abc", "explicit-slug-7", strings.Repeat("s", 80)} {
			r := e.forT(t).do(req{method: "POST", path: "/orgs", token: alice.Token, body: map[string]any{"name": "Whatever", "slug": slug}})
			want(t, r, http.StatusCreated)
			wantOrganisation(t, r.Body, "Whatever", slug)
		}
	})

	t.Run("RejectsInvalidInput", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name, field string
			body        map[string]any
		}{
			{"SlugTooShort", "slug", map[string]any{"name": "N", "slug": "ab"}},
			{"SlugTooLong", "slug", map[string]any{"name": "N", "slug": strings.Repeat("s", 81)}},
			{"SlugEmpty", "slug", map[string]any{"name": "N", "slug": ""}},
			{"SlugUpperCase", "slug", map[string]any{"name": "N", "slug": "Acme"}},
			{"SlugDoubleHyphen", "slug", map[string]any{"name": "N", "slug": "acme--corp"}},
			{"SlugLeadingHyphen", "slug", map[string]any{"name": "N", "slug": "-acme"}},
			{"SlugTrailingHyphen", "slug", map[string]any{"name": "N", "slug": "acme-"}},
			{"SlugWithSpace", "slug", map[string]any{"name": "N", "slug": "acme corp"}},
			{"SlugUnderscore", "slug", map[string]any{"name": "N", "slug": "acme_corp"}},
			{"NameEmpty", "name", map[string]any{"name": ""}},
			{"Name121Chars", "name", map[string]any{"name": strings.Repeat("n", 121)}},
			{"NameMissing", "name", map[string]any{"slug": "no-name"}},
			{"NameNull", "name", map[string]any{"name": nil}},
			{"UpperCaseKey", "NAME", map[string]any{"NAME": "Acme"}},
			{"UnknownField", "owner", map[string]any{"name": "Acme", "owner": alice.ID}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				wantInvalid(t, e.forT(t).do(req{method: "POST", path: "/orgs", token: alice.Token, body: tt.body}), tt.field)
			})
		}
	})

	t.Run("AcceptsNameOf120MultiByteChars", func(t *testing.T) {
		t.Parallel()
		name := strings.Repeat("é", 120)
		r := e.forT(t).do(req{method: "POST", path: "/orgs", token: alice.Token, body: map[string]any{"name": name, "slug": "accents"}})
		want(t, r, http.StatusCreated)
		wantOrganisation(t, r.Body, name, "accents")
	})

	t.Run("SlugClashIsConflict", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		want(t, e.do(req{method: "POST", path: "/orgs", token: alice.Token, body: map[string]any{"name": "Clash Co"}}), http.StatusCreated)
		for _, body := range []map[string]any{
			{"name": "clash co!!"},                // derived slug clashes
			{"name": "Other", "slug": "clash-co"}, // explicit slug clashes
			{"name": "Clash Co"},                  // same name again: no auto-suffix
		} {
			r := e.do(req{method: "POST", path: "/orgs", token: alice.Token, body: body})
			wantProblem(t, r, http.StatusConflict, saasapi.MsgSlugTaken)
		}
	})

	t.Run("CreatorBecomesOwner", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		bob := e.register("Bob")
		org := e.createOrg(bob, "Bobs Org")
		me := e.do(req{method: "GET", path: "/me", token: bob.Token})
		want(t, me, http.StatusOK)
		ms, _ := me.Body["memberships"].([]any)
		if len(ms) != 1 || ms[0].(map[string]any)["organisation_id"] != org || ms[0].(map[string]any)["role"] != "owner" {
			t.Fatalf("/me memberships = %v, want one owner membership of %s", me.Body["memberships"], org)
		}
		members := e.do(req{method: "GET", path: "/orgs/" + org + "/members", token: bob.Token})
		want(t, members, http.StatusOK)
		items := members.items()
		if len(items) != 1 || items[0]["role"] != "owner" || items[0]["user"].(map[string]any)["id"] != bob.ID {
			t.Fatalf("members = %s, want the creator alone as owner", members.Raw)
		}
	})
}

func TestListOrganisations(t *testing.T) {
	t.Parallel()
	e := setup(t)
	alice, bob := e.register("Alice"), e.register("Bob")
	var aliceOrgs []string
	for _, name := range []string{"First", "Second", "Third"} {
		aliceOrgs = append(aliceOrgs, e.createOrg(alice, "Alice "+name))
	}
	bobOrg := e.createOrg(bob, "Bob Only")
	carol := e.register("Carol")
	carolOrg := e.createOrg(carol, "Carol Shared")
	e.addMember(carol, carolOrg, bob, "viewer")

	ids := func(r response) []string {
		var out []string
		for _, it := range r.items() {
			out = append(out, it["id"].(string))
		}
		return out
	}

	t.Run("ListsOnlyCallersOrganisationsOldestFirst", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		r := e.do(req{method: "GET", path: "/orgs", token: alice.Token})
		want(t, r, http.StatusOK)
		wantPagination(t, r, 50, 0, 3, 3)
		if got := strings.Join(ids(r), ","); got != strings.Join(aliceOrgs, ",") {
			t.Fatalf("alice's organisations = %s, want %s", got, strings.Join(aliceOrgs, ","))
		}
		wantOrganisation(t, r.items()[0], "Alice First", "alice-first")

		r = e.do(req{method: "GET", path: "/orgs", token: bob.Token})
		want(t, r, http.StatusOK)
		wantPagination(t, r, 50, 0, 2, 2)
		if got := strings.Join(ids(r), ","); got != bobOrg+","+carolOrg {
			t.Fatalf("bob's organisations = %s, want his own and the one he was added to: %s,%s", got, bobOrg, carolOrg)
		}

		dave := e.register("Dave")
		r = e.do(req{method: "GET", path: "/orgs", token: dave.Token})
		want(t, r, http.StatusOK)
		wantPagination(t, r, 50, 0, 0, 0)
	})

	t.Run("Paginates", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			query                       string
			limit, offset, total, count int
			ids                         []string
		}{
			{"?limit=2", 2, 0, 3, 2, aliceOrgs[:2]},
			{"?limit=2&offset=2", 2, 2, 3, 1, aliceOrgs[2:]},
			{"?offset=1", 50, 1, 3, 2, aliceOrgs[1:]},
			{"?limit=1&offset=1", 1, 1, 3, 1, aliceOrgs[1:2]},
			{"?offset=5", 50, 5, 3, 0, nil},
			{"?limit=100", 100, 0, 3, 3, aliceOrgs},
			{"?limit=&offset=", 50, 0, 3, 3, aliceOrgs},
		}
		for _, tt := range tests {
			t.Run(tt.query, func(t *testing.T) {
				t.Parallel()
				r := e.forT(t).do(req{method: "GET", path: "/orgs" + tt.query, token: alice.Token})
				want(t, r, http.StatusOK)
				wantPagination(t, r, tt.limit, tt.offset, tt.total, tt.count)
				if got := strings.Join(ids(r), ","); got != strings.Join(tt.ids, ",") {
					t.Fatalf("page %s = %s, want %s", tt.query, got, strings.Join(tt.ids, ","))
				}
			})
		}
	})

	t.Run("RejectsOutOfRangeParams", func(t *testing.T) {
		t.Parallel()
		tests := []struct{ query, field string }{
			{"limit=0", "limit"},
			{"limit=101", "limit"},
			{"limit=-1", "limit"},
			{"limit=x", "limit"},
			{"limit=1.5", "limit"},
			{"offset=-1", "offset"},
			{"offset=x", "offset"},
			{"offset=99999999999999999999", "offset"},
		}
		for _, tt := range tests {
			t.Run(tt.query, func(t *testing.T) {
				t.Parallel()
				wantInvalid(t, e.forT(t).do(req{method: "GET", path: "/orgs?" + tt.query, token: alice.Token}), tt.field)
			})
		}
	})
}

func TestGetOrganisation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.createOrg(tm.owner, "Readable Org")
	e.addMember(tm.owner, org, tm.viewer, "viewer")

	t.Run("ReturnsOrganisationWithETag", func(t *testing.T) {
		t.Parallel()
		r := e.forT(t).do(req{method: "GET", path: "/orgs/" + org, token: tm.viewer.Token})
		want(t, r, http.StatusOK)
		wantOrganisation(t, r.Body, "Readable Org", "readable-org")
		wantETag(t, r, "1")
		if r.Body["id"] != org {
			t.Fatalf("id = %v, want %s", r.Body["id"], org)
		}
	})

	t.Run("AcceptsLowerCaseID", func(t *testing.T) {
		t.Parallel()
		r := e.forT(t).do(req{method: "GET", path: "/orgs/" + strings.ToLower(org), token: tm.owner.Token})
		want(t, r, http.StatusOK)
		if r.Body["id"] != org {
			t.Fatalf("id = %v, want the canonical upper-case %s", r.Body["id"], org)
		}
	})

	t.Run("UnknownOrganisationIsNotFound", func(t *testing.T) {
		t.Parallel()
		r := e.forT(t).do(req{method: "GET", path: "/orgs/" + saasapi.NewID().String(), token: tm.owner.Token})
		wantProblem(t, r, http.StatusNotFound, saasapi.MsgOrgNotFound)
	})

	t.Run("MalformedIDIsInvalid", func(t *testing.T) {
		t.Parallel()
		for _, id := range []string{"not-a-ulid", "1234", org + "0", "U" + org[1:], "8" + org[1:], strings.Replace(org, org[5:6], "I", 1)} {
			wantInvalid(t, e.forT(t).do(req{method: "GET", path: "/orgs/" + id, token: tm.owner.Token}), "organisation_id")
		}
	})

	t.Run("NonMemberIsDenied", func(t *testing.T) {
		t.Parallel()
		r := e.forT(t).do(req{method: "GET", path: "/orgs/" + org, token: tm.outsider.Token})
		wantProblem(t, r, http.StatusForbidden, saasapi.MsgOrgAccessDenied)
	})
}

func TestUpdateOrganisation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()

	patch := func(e *env, u user, org string, body any, header map[string]string) response {
		return e.do(req{method: "PATCH", path: "/orgs/" + org, token: u.Token, body: body, header: header})
	}
	get := func(e *env, by user, org string) response {
		r := e.do(req{method: "GET", path: "/orgs/" + org, token: by.Token})
		want(e.t, r, http.StatusOK)
		return r
	}

	t.Run("OwnerAndAdminMayUpdate", func(t *testing.T) {
		t.Parallel()
		for _, u := range []user{tm.owner, tm.admin} {
			e := e.forT(t)
			org := e.teamOrg(tm)
			slug := strings.ToLower(saasapi.NewID().String())
			r := patch(e, u, org, map[string]any{"name": "Renamed", "slug": slug}, nil)
			want(t, r, http.StatusOK)
			wantOrganisation(t, r.Body, "Renamed", slug)
			wantETag(t, r, "2")
			g := get(e, tm.owner, org)
			wantOrganisation(t, g.Body, "Renamed", slug)
			wantETag(t, g, "2")
			if g.Body["created_at"] == g.Body["updated_at"] {
				t.Fatalf("updated_at %v did not move on update", g.Body["updated_at"])
			}
		}
	})

	t.Run("UpdatesOneFieldAlone", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		org := e.createOrg(tm.owner, "Single Field")
		r := patch(e, tm.owner, org, map[string]any{"name": "Only Name"}, nil)
		want(t, r, http.StatusOK)
		wantOrganisation(t, r.Body, "Only Name", "single-field")
		r = patch(e, tm.owner, org, map[string]any{"slug": "only-slug"}, nil)
		want(t, r, http.StatusOK)
		wantOrganisation(t, r.Body, "Only Name", "only-slug")
	})

	t.Run("MemberAndViewerLackPermission", func(t *testing.T) {
		t.Parallel()
		// Its own database: it compares row counts, which parallel
		// subtests would move.
		e := setup(t)
		tm := e.newTeam()
		org := e.teamOrg(tm)
		name := get(e, tm.owner, org).str("name")
		before := e.count("events")
		for _, u := range []user{tm.member, tm.viewer} {
			wantProblem(t, patch(e, u, org, map[string]any{"name": "Hijacked"}, nil), http.StatusForbidden, saasapi.MsgInsufficientPerms)
		}
		wantProblem(t, patch(e, tm.outsider, org, map[string]any{"name": "Hijacked"}, nil), http.StatusForbidden, saasapi.MsgOrgAccessDenied)
		wantProblem(t, patch(e, tm.owner, saasapi.NewID().String(), map[string]any{"name": "Ghost"}, nil), http.StatusNotFound, saasapi.MsgOrgNotFound)
		if got := get(e, tm.owner, org).str("name"); got != name {
			t.Fatalf("name = %q after refused updates, want %q", got, name)
		}
		if after := e.count("events"); after != before {
			t.Fatalf("events went from %d to %d on refused updates, want no change", before, after)
		}
	})

	t.Run("RequiresAtLeastOneField", func(t *testing.T) {
		t.Parallel()
		org := e.forT(t).createOrg(tm.owner, uniqueName("Fieldless"))
		wantProblem(t, patch(e.forT(t), tm.owner, org, `{}`, nil), http.StatusUnprocessableEntity, saasapi.MsgOrgFieldRequired)
		// name and slug are strings: an explicit null is invalid input
		// (TestNullForDefaultedFieldsIs422), not an absent field.
		for _, body := range []string{`{"name":null}`, `{"slug":null}`, `{"name":null,"slug":null}`, `{"name":"Kept","slug":null}`} {
			wantProblem(t, patch(e.forT(t), tm.owner, org, body, nil), http.StatusUnprocessableEntity, saasapi.MsgValidation)
		}
	})

	t.Run("RejectsInvalidInput", func(t *testing.T) {
		t.Parallel()
		org := e.forT(t).createOrg(tm.owner, uniqueName("Invalid Input"))
		tests := []struct {
			name, body, field string
		}{
			{"NameEmpty", `{"name":""}`, "name"},
			{"Name121Chars", `{"name":"` + strings.Repeat("n", 121) + `"}`, "name"},
			{"SlugInvalid", `{"slug":"Not A Slug"}`, "slug"},
			{"SlugTooShort", `{"slug":"ab"}`, "slug"},
			{"NameWrongType", `{"name":42}`, "name"},
			{"CaseVariantKey", `{"Name":"Renamed"}`, "Name"},
			{"UnknownField", `{"id":"` + org + `"}`, "id"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				wantInvalid(t, patch(e.forT(t), tm.owner, org, tt.body, nil), tt.field)
			})
		}
		t.Run("MalformedID", func(t *testing.T) {
			t.Parallel()
			wantInvalid(t, patch(e.forT(t), tm.owner, "nope", map[string]any{"name": "X"}, nil), "organisation_id")
		})
	})

	t.Run("SlugClashIsConflict", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		taken := e.do(req{method: "POST", path: "/orgs", token: tm.owner.Token, body: map[string]any{"name": uniqueName("Taken")}})
		want(t, taken, http.StatusCreated)
		org := e.createOrg(tm.owner, uniqueName("Clasher"))
		wantProblem(t, patch(e, tm.owner, org, map[string]any{"slug": taken.str("slug")}, nil), http.StatusConflict, saasapi.MsgSlugTaken)
		wantETag(t, get(e, tm.owner, org), "1")
	})

	t.Run("NoOpRecordsNothing", func(t *testing.T) {
		t.Parallel()
		// Its own database: it compares row counts, which parallel
		// subtests would move.
		e := setup(t)
		tm := e.newTeam()
		name := uniqueName("Unchanged")
		org := e.createOrg(tm.owner, name)
		before := e.count("events")
		r := patch(e, tm.owner, org, map[string]any{"name": name}, nil)
		want(t, r, http.StatusOK)
		wantETag(t, r, "1")
		if after := e.count("events"); after != before {
			t.Fatalf("events went from %d to %d on an update that changes nothing, want no change", before, after)
		}
	})

	t.Run("IfMatchGuardsAgainstLostUpdates", func(t *testing.T) {
		t.Parallel()
		// Its own database: it compares row counts, which parallel
		// subtests would move.
		e := setup(t)
		tm := e.newTeam()
		org := e.teamOrg(tm)
		wantETag(t, get(e, tm.owner, org), "1")

		r := patch(e, tm.owner, org, map[string]any{"name": "First Writer"}, map[string]string{"If-Match": `"1"`})
		want(t, r, http.StatusOK)
		wantETag(t, r, "2")

		before := e.counts()
		for _, stale := range []string{`"1"`, `"3"`, `W/"1"`, `"garbage"`, `1, 2`} {
			r = patch(e, tm.admin, org, map[string]any{"name": "Second Writer"}, map[string]string{"If-Match": stale})
			wantProblem(t, r, http.StatusPreconditionFailed, saasapi.MsgStale)
			// A stale write that would change nothing is still refused.
			r = patch(e, tm.admin, org, map[string]any{"name": "First Writer"}, map[string]string{"If-Match": stale})
			wantProblem(t, r, http.StatusPreconditionFailed, saasapi.MsgStale)
		}
		g := get(e, tm.owner, org)
		if g.str("name") != "First Writer" {
			t.Fatalf("name = %q after stale writes, want %q", g.str("name"), "First Writer")
		}
		wantETag(t, g, "2")
		if after := e.counts(); !maps.Equal(before, after) {
			t.Fatalf("row counts went from %v to %v on stale writes, want no change", before, after)
		}

		// Permissions come before the version check.
		wantProblem(t, patch(e, tm.member, org, map[string]any{"name": "X"}, map[string]string{"If-Match": `"1"`}),
			http.StatusForbidden, saasapi.MsgInsufficientPerms)

		r = patch(e, tm.admin, org, map[string]any{"name": "Second Writer"}, map[string]string{"If-Match": `"2"`})
		want(t, r, http.StatusOK)
		wantETag(t, r, "3")
		r = patch(e, tm.admin, org, map[string]any{"name": "Any Version"}, map[string]string{"If-Match": "*"})
		want(t, r, http.StatusOK)
		wantETag(t, r, "4")
	})
}

// TestFailedCommandsRecordNothing proves that a refused command rolls back
// completely: no event, no ledger, no read-table row.
func TestFailedCommandsRecordNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		detail string
		// act prepares its state with e and returns the refused request.
		act func(e *env) req
	}{
		{"DuplicateRegistration", http.StatusConflict, saasapi.MsgEmailTaken, func(e *env) req {
			u := e.register("Dup")
			return req{method: "POST", path: "/auth/register", body: registerBody(strings.ToUpper(u.Email))}
		}},
		{"SlugClashOnCreate", http.StatusConflict, saasapi.MsgSlugTaken, func(e *env) req {
			u := e.register("Clash")
			e.createOrg(u, "Clash Org")
			return req{method: "POST", path: "/orgs", token: u.Token, body: map[string]any{"name": "Clash Org"}}
		}},
		{"SlugClashOnUpdate", http.StatusConflict, saasapi.MsgSlugTaken, func(e *env) req {
			u := e.register("Clash")
			e.createOrg(u, "Clash Org")
			org := e.createOrg(u, "Other Org")
			return req{method: "PATCH", path: "/orgs/" + org, token: u.Token, body: map[string]any{"name": "New", "slug": "clash-org"}}
		}},
		{"AddExistingMember", http.StatusConflict, saasapi.MsgAlreadyMember, func(e *env) req {
			tm := e.newTeam()
			org := e.teamOrg(tm)
			return req{method: "POST", path: "/orgs/" + org + "/members", token: tm.owner.Token,
				body: map[string]any{"user_id": tm.member.ID, "role": "admin"}}
		}},
		{"DemoteLastOwner", http.StatusConflict, saasapi.MsgLastOwner, func(e *env) req {
			tm := e.newTeam()
			org := e.teamOrg(tm)
			return req{method: "PATCH", path: "/orgs/" + org + "/members/" + tm.owner.ID, token: tm.owner.Token,
				body: map[string]any{"role": "admin"}}
		}},
		{"RemoveLastOwner", http.StatusConflict, saasapi.MsgLastOwner, func(e *env) req {
			tm := e.newTeam()
			org := e.teamOrg(tm)
			return req{method: "DELETE", path: "/orgs/" + org + "/members/" + tm.owner.ID, token: tm.owner.Token}
		}},
		{"AdminGrantsOwner", http.StatusForbidden, saasapi.MsgInsufficientPerms, func(e *env) req {
			tm := e.newTeam()
			org := e.teamOrg(tm)
			return req{method: "POST", path: "/orgs/" + org + "/members", token: tm.admin.Token,
				body: map[string]any{"user_id": tm.outsider.ID, "role": "owner"}}
		}},
		{"StaleMemberUpdate", http.StatusPreconditionFailed, saasapi.MsgStale, func(e *env) req {
			tm := e.newTeam()
			org := e.teamOrg(tm)
			return req{method: "PATCH", path: "/orgs/" + org + "/members/" + tm.member.ID, token: tm.owner.Token,
				body: map[string]any{"role": "viewer"}, header: map[string]string{"If-Match": `"7"`}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			r := tt.act(e)
			before := e.counts()
			wantProblem(t, e.do(r), tt.status, tt.detail)
			if after := e.counts(); !maps.Equal(before, after) {
				t.Fatalf("row counts went from %v to %v on a refused command, want no change", before, after)
			}
		})
	}
}
