package http_test

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/saasapi/saasapi"
)

func projectsURL(org string) string    { return "/orgs/" + org + "/projects" }
func projectURL(org, id string) string { return projectsURL(org) + "/" + id }

// projectWant is the expected content of a project; description,
// createdBy and updatedBy are nil for JSON null, else strings.
type projectWant struct {
	org, name, status                 string
	description, createdBy, updatedBy any
}

// wantProject fails the test unless p is exactly the public shape of a
// project with the expected content.
func wantProject(t *testing.T, p map[string]any, w projectWant) {
	t.Helper()
	wantKeys(t, "project", p, "id", "organisation_id", "name", "status", "description",
		"created_by_user_id", "updated_by_user_id", "created_at", "updated_at")
	wantULID(t, "project.id", p["id"])
	if p["organisation_id"] != w.org || p["name"] != w.name || p["status"] != w.status || p["description"] != w.description ||
		p["created_by_user_id"] != w.createdBy || p["updated_by_user_id"] != w.updatedBy {
		t.Fatalf("project = %v, want organisation_id %s, name %q, status %s, description %#v, created_by_user_id %#v, updated_by_user_id %#v",
			p, w.org, w.name, w.status, w.description, w.createdBy, w.updatedBy)
	}
	created := wantTimestamp(t, "project.created_at", p["created_at"])
	if updated := wantTimestamp(t, "project.updated_at", p["updated_at"]); updated.Before(created) {
		t.Fatalf("project.updated_at %v is before created_at %v", updated, created)
	}
}

// getProject reads a project and fails unless it is there.
func (e *env) getProject(token, org, id string) response {
	e.t.Helper()
	r := e.do(req{method: "GET", path: projectURL(org, id), token: token})
	want(e.t, r, http.StatusOK)
	return r
}

// listIDs lists projects with the query and returns the ids in order.
func (e *env) listIDs(token, org, query string) []string {
	e.t.Helper()
	r := e.do(req{method: "GET", path: projectsURL(org) + "?" + query, token: token})
	want(e.t, r, http.StatusOK)
	return idsOf(r)
}

func idsOf(r response) []string {
	ids := []string{}
	for _, it := range r.items() {
		ids = append(ids, it["id"].(string))
	}
	return ids
}

func TestCreateProject(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.teamOrg(tm)

	t.Run("CreatesActiveProjectWithVersionOne", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		r := e.do(req{method: "POST", path: projectsURL(org), token: tm.member.Token, body: map[string]any{"name": "Apollo"}})
		want(t, r, http.StatusCreated)
		wantProject(t, r.Body, projectWant{org: org, name: "Apollo", status: "active",
			createdBy: tm.member.ID, updatedBy: tm.member.ID})
		wantETag(t, r, "1")
		if r.Body["created_at"] != r.Body["updated_at"] {
			t.Fatalf("a new project has created_at %v and updated_at %v, want them equal", r.Body["created_at"], r.Body["updated_at"])
		}
		if got := e.getProject(tm.viewer.Token, org, r.str("id")); string(got.Raw) != string(r.Raw) {
			t.Fatalf("GET after create = %s, want the creation response %s", got.Raw, r.Raw)
		}
	})

	t.Run("KeepsDescriptionAndStatus", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		long := strings.Repeat("é", 2000)
		tests := []struct {
			name string
			body map[string]any
			want projectWant
		}{
			{"Archived", map[string]any{"name": "Old", "status": "archived", "description": "done"},
				projectWant{org: org, name: "Old", status: "archived", description: "done"}},
			{"NullDescription", map[string]any{"name": "Plain", "description": nil},
				projectWant{org: org, name: "Plain", status: "active"}},
			{"EmptyDescription", map[string]any{"name": "Empty", "description": ""},
				projectWant{org: org, name: "Empty", status: "active", description: ""}},
			{"LongestValues", map[string]any{"name": strings.Repeat("ü", 160), "description": long},
				projectWant{org: org, name: strings.Repeat("ü", 160), status: "active", description: long}},
		}
		for _, tt := range tests {
			p := e.createProject(tm.admin.Token, org, tt.body)
			tt.want.createdBy, tt.want.updatedBy = tm.admin.ID, tm.admin.ID
			wantProject(t, p, tt.want)
		}
	})

	t.Run("APIKeyCreatesWithoutUser", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		key := e.createAPIKey(tm.owner, org)
		p := e.createProject(key.Raw, org, map[string]any{"name": "Automated"})
		wantProject(t, p, projectWant{org: org, name: "Automated", status: "active"})
		wantProject(t, e.getProject(tm.owner.Token, org, p["id"].(string)).Body,
			projectWant{org: org, name: "Automated", status: "active"})
	})

	t.Run("RejectsInvalidBodies", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name  string
			body  any
			field string
		}{
			{"EmptyName", map[string]any{"name": ""}, "name"},
			{"NameOf161", map[string]any{"name": strings.Repeat("n", 161)}, "name"},
			{"MissingName", map[string]any{"status": "active"}, "name"},
			{"NullName", map[string]any{"name": nil}, "name"},
			{"DescriptionOf2001", map[string]any{"name": "x", "description": strings.Repeat("d", 2001)}, "description"},
			{"DeletedStatus", map[string]any{"name": "x", "status": "deleted"}, "status"},
			{"UpperCaseStatus", map[string]any{"name": "x", "status": "ACTIVE"}, "status"},
			{"UnknownField", map[string]any{"name": "x", "owner": "me"}, "owner"},
			{"CaseVariantKey", `{"NAME":"x"}`, "NAME"},
			{"CaseVariantNextToName", `{"name":"x","Status":"archived"}`, "Status"},
			{"WrongType", map[string]any{"name": 7}, "name"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				wantInvalid(t, e.forT(t).do(req{method: "POST", path: projectsURL(org), token: tm.owner.Token, body: tt.body}), tt.field)
			})
		}
	})

	t.Run("RefusedCreationsRecordNothing", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		tm := e.newTeam()
		org := e.teamOrg(tm)
		before := e.snapshot()
		wantInvalid(t, e.do(req{method: "POST", path: projectsURL(org), token: tm.owner.Token, body: map[string]any{"name": ""}}), "name")
		wantProblem(t, e.do(req{method: "POST", path: projectsURL(org), token: tm.viewer.Token, body: map[string]any{"name": "x"}}),
			http.StatusForbidden, saasapi.MsgInsufficientPerms)
		wantProblem(t, e.do(req{method: "POST", path: projectsURL(saasapi.NewID().String()), token: tm.owner.Token, body: map[string]any{"name": "x"}}),
			http.StatusNotFound, saasapi.MsgOrgNotFound)
		wantInvalid(t, e.do(req{method: "POST", path: projectsURL("not-an-id"), token: tm.owner.Token, body: map[string]any{"name": "x"}}), "organisation_id")
		if after := e.snapshot(); !maps.Equal(after, before) {
			t.Fatalf("tables changed on refused creations: %v -> %v", before, after)
		}
	})
}

func TestGetProject(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.teamOrg(tm)
	other := e.createOrg(tm.owner, uniqueName("Other"))
	p := e.createProject(tm.owner.Token, org, map[string]any{"name": "Readable", "description": "text"})
	id := p["id"].(string)

	t.Run("EveryRoleAndKeyReadsIt", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		key := e.createAPIKey(tm.owner, org)
		for _, token := range []string{tm.owner.Token, tm.admin.Token, tm.member.Token, tm.viewer.Token, key.Raw} {
			r := e.getProject(token, org, id)
			wantProject(t, r.Body, projectWant{org: org, name: "Readable", status: "active", description: "text",
				createdBy: tm.owner.ID, updatedBy: tm.owner.ID})
			wantETag(t, r, "1")
		}
		if r := e.getProject(tm.owner.Token, org, strings.ToLower(id)); r.Body["id"] != id {
			t.Fatalf("GET by lower-case id returned id %v, want %s", r.Body["id"], id)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		deleted := e.createProject(tm.owner.Token, org, map[string]any{"name": "Gone"})["id"].(string)
		want(t, e.do(req{method: "DELETE", path: projectURL(org, deleted), token: tm.owner.Token}), http.StatusNoContent)
		elsewhere := e.createProject(tm.owner.Token, other, map[string]any{"name": "Elsewhere"})["id"].(string)
		tests := []struct{ name, id string }{
			{"Missing", saasapi.NewID().String()},
			{"SoftDeleted", deleted},
			{"InAnotherOrganisation", elsewhere},
		}
		for _, tt := range tests {
			r := e.do(req{method: "GET", path: projectURL(org, tt.id), token: tm.owner.Token})
			if r.Status != http.StatusNotFound {
				t.Errorf("%s: got %d %s, want 404", tt.name, r.Status, r.Raw)
				continue
			}
			wantProblem(t, r, http.StatusNotFound, saasapi.MsgProjectNotFound)
		}
	})

	t.Run("MalformedIDsAreInvalid", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		wantInvalid(t, e.do(req{method: "GET", path: projectURL(org, "nope"), token: tm.owner.Token}), "project_id")
		wantInvalid(t, e.do(req{method: "GET", path: projectURL("nope", id), token: tm.owner.Token}), "organisation_id")
	})

	t.Run("UnknownOrganisationIsNotFound", func(t *testing.T) {
		t.Parallel()
		wantProblem(t, e.forT(t).do(req{method: "GET", path: projectURL(saasapi.NewID().String(), id), token: tm.owner.Token}),
			http.StatusNotFound, saasapi.MsgOrgNotFound)
	})
}

func TestUpdateProject(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.teamOrg(tm)

	// fresh creates a project owned by the owner, with a description.
	fresh := func(e *env) string {
		return e.createProject(tm.owner.Token, org, map[string]any{"name": "Draft", "description": "first"})["id"].(string)
	}
	patch := func(e *env, token, id string, body any, header map[string]string) response {
		return e.do(req{method: "PATCH", path: projectURL(org, id), token: token, body: body, header: header})
	}

	t.Run("ChangesFieldsAndBumpsETag", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		id := fresh(e)
		r := patch(e, tm.member.Token, id, map[string]any{"name": "Final", "status": "archived"}, nil)
		want(t, r, http.StatusOK)
		wantProject(t, r.Body, projectWant{org: org, name: "Final", status: "archived", description: "first",
			createdBy: tm.owner.ID, updatedBy: tm.member.ID})
		wantETag(t, r, "2")
		got := e.getProject(tm.viewer.Token, org, id)
		wantETag(t, got, "2")
		if string(got.Raw) != string(r.Raw) {
			t.Fatalf("GET after PATCH = %s, want the PATCH response %s", got.Raw, r.Raw)
		}
	})

	t.Run("ExplicitNullClearsDescription", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		id := fresh(e)
		r := patch(e, tm.owner.Token, id, `{"description": null}`, nil)
		want(t, r, http.StatusOK)
		wantProject(t, r.Body, projectWant{org: org, name: "Draft", status: "active", createdBy: tm.owner.ID, updatedBy: tm.owner.ID})
		// Leaving description out keeps it: set it, then patch another field.
		want(t, patch(e, tm.owner.Token, id, map[string]any{"description": "second"}, nil), http.StatusOK)
		r = patch(e, tm.owner.Token, id, map[string]any{"name": "Renamed"}, nil)
		want(t, r, http.StatusOK)
		wantProject(t, r.Body, projectWant{org: org, name: "Renamed", status: "active", description: "second",
			createdBy: tm.owner.ID, updatedBy: tm.owner.ID})
		wantETag(t, r, "4")
	})

	t.Run("APIKeyUpdatesWithoutUser", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		id := fresh(e)
		key := e.createAPIKey(tm.owner, org)
		r := patch(e, key.Raw, id, map[string]any{"status": "archived"}, nil)
		want(t, r, http.StatusOK)
		wantProject(t, r.Body, projectWant{org: org, name: "Draft", status: "archived", description: "first", createdBy: tm.owner.ID})
	})

	t.Run("UnchangedValuesRecordNothing", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		id := fresh(e)
		before := e.streamEvents(id)
		r := patch(e, tm.owner.Token, id, map[string]any{"name": "Draft", "description": "first", "status": "active"}, nil)
		want(t, r, http.StatusOK)
		wantETag(t, r, "1")
		wantProject(t, r.Body, projectWant{org: org, name: "Draft", status: "active", description: "first",
			createdBy: tm.owner.ID, updatedBy: tm.owner.ID})
		if after := e.streamEvents(id); after != before {
			t.Fatalf("the project's events went from %d to %d on a PATCH that changes nothing, want no new event", before, after)
		}
	})

	t.Run("RejectsInvalidBodies", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		id := fresh(e)
		wantProblem(t, patch(e, tm.owner.Token, id, map[string]any{}, nil), http.StatusUnprocessableEntity, saasapi.MsgProjectFieldRequired)
		tests := []struct {
			name  string
			body  any
			field string
		}{
			{"NullName", `{"name": null}`, "name"},
			{"NullStatus", `{"status": null}`, "status"},
			{"EmptyName", map[string]any{"name": ""}, "name"},
			{"NameOf161", map[string]any{"name": strings.Repeat("n", 161)}, "name"},
			{"DescriptionOf2001", map[string]any{"description": strings.Repeat("d", 2001)}, "description"},
			{"DeletedStatus", map[string]any{"status": "deleted"}, "status"},
			{"UnknownField", map[string]any{"name": "x", "deleted_at": nil}, "deleted_at"},
			{"CaseVariantKey", `{"Name":"x"}`, "Name"},
		}
		for _, tt := range tests {
			r := patch(e, tm.owner.Token, id, tt.body, nil)
			if r.Status != http.StatusUnprocessableEntity {
				t.Errorf("%s: got %d %s, want 422", tt.name, r.Status, r.Raw)
				continue
			}
			wantInvalid(t, r, tt.field)
		}
		got := e.getProject(tm.owner.Token, org, id)
		wantETag(t, got, "1")
		wantProject(t, got.Body, projectWant{org: org, name: "Draft", status: "active", description: "first",
			createdBy: tm.owner.ID, updatedBy: tm.owner.ID})
	})

	t.Run("StaleIfMatchChangesNothing", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		id := fresh(e)
		want(t, patch(e, tm.owner.Token, id, map[string]any{"name": "Second"}, map[string]string{"If-Match": `"1"`}), http.StatusOK)
		original := e.getProject(tm.owner.Token, org, id)
		events := e.streamEvents(id)
		for _, stale := range []string{`"1"`, `"3"`, `W/"1"`, `"x"`} {
			r := patch(e, tm.member.Token, id, map[string]any{"name": "Lost update", "description": nil}, map[string]string{"If-Match": stale})
			wantProblem(t, r, http.StatusPreconditionFailed, saasapi.MsgStale)
		}
		if n := e.streamEvents(id); n != events {
			t.Fatalf("the project's events went from %d to %d on stale PATCHes, want no change", events, n)
		}
		if now := e.getProject(tm.owner.Token, org, id); string(now.Raw) != string(original.Raw) || now.Header.Get("ETag") != `"2"` {
			t.Fatalf("after stale PATCHes the project is %s (ETag %s), want unchanged %s (ETag \"2\")", now.Raw, now.Header.Get("ETag"), original.Raw)
		}
	})

	t.Run("MatchingIfMatchSucceeds", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		id := fresh(e)
		etag := e.getProject(tm.owner.Token, org, id).Header.Get("ETag")
		for i, name := range []string{"One", "Two", "Three"} {
			r := patch(e, tm.owner.Token, id, map[string]any{"name": name}, map[string]string{"If-Match": etag})
			want(t, r, http.StatusOK)
			wantETag(t, r, fmt.Sprint(i+2))
			etag = r.Header.Get("ETag")
		}
		want(t, patch(e, tm.owner.Token, id, map[string]any{"name": "Any"}, map[string]string{"If-Match": "*"}), http.StatusOK)
	})

	t.Run("DeletedOrForeignProjectIsNotFound", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		id := fresh(e)
		want(t, e.do(req{method: "DELETE", path: projectURL(org, id), token: tm.owner.Token}), http.StatusNoContent)
		other := e.createOrg(tm.owner, uniqueName("Other"))
		foreign := e.createProject(tm.owner.Token, other, map[string]any{"name": "Foreign"})["id"].(string)
		for _, pid := range []string{id, foreign, saasapi.NewID().String()} {
			wantProblem(t, patch(e, tm.owner.Token, pid, map[string]any{"name": "Revived"}, nil), http.StatusNotFound, saasapi.MsgProjectNotFound)
		}
		if got := e.getProject(tm.owner.Token, other, foreign); got.str("name") != "Foreign" {
			t.Fatalf("the foreign project is named %q after a PATCH through another organisation, want Foreign", got.str("name"))
		}
	})
}

func TestDeleteProject(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.teamOrg(tm)

	t.Run("SoftDeletesWithEmptyBody", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		keep := e.createProject(tm.owner.Token, org, map[string]any{"name": "Keep"})["id"].(string)
		id := e.createProject(tm.owner.Token, org, map[string]any{"name": "Doomed"})["id"].(string)
		r := e.do(req{method: "DELETE", path: projectURL(org, id), token: tm.member.Token})
		want(t, r, http.StatusNoContent)
		if len(r.Raw) != 0 {
			t.Fatalf("DELETE body = %q, want empty", r.Raw)
		}
		wantProblem(t, e.do(req{method: "GET", path: projectURL(org, id), token: tm.owner.Token}), http.StatusNotFound, saasapi.MsgProjectNotFound)
		if ids := e.listIDs(tm.owner.Token, org, "limit=100"); slices.Contains(ids, id) || !slices.Contains(ids, keep) {
			t.Fatalf("list after delete = %v, want %s without %s", ids, keep, id)
		}
		wantProblem(t, e.do(req{method: "DELETE", path: projectURL(org, id), token: tm.owner.Token}), http.StatusNotFound, saasapi.MsgProjectNotFound)
		var deletedAt *time.Time
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT deleted_at FROM projects WHERE id = $1`, id).Scan(&deletedAt); err != nil || deletedAt == nil {
			t.Fatalf("projects row of a deleted project: deleted_at %v, err %v; want a kept row with deleted_at set", deletedAt, err)
		}
	})

	t.Run("APIKeyDeletes", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		key := e.createAPIKey(tm.owner, org)
		id := e.createProject(key.Raw, org, map[string]any{"name": "Machine made"})["id"].(string)
		want(t, e.do(req{method: "DELETE", path: projectURL(org, id), token: key.Raw}), http.StatusNoContent)
		want(t, e.do(req{method: "GET", path: projectURL(org, id), token: key.Raw}), http.StatusNotFound)
	})

	t.Run("StaleIfMatchKeepsProject", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		id := e.createProject(tm.owner.Token, org, map[string]any{"name": "Guarded"})["id"].(string)
		want(t, e.do(req{method: "PATCH", path: projectURL(org, id), token: tm.owner.Token, body: map[string]any{"name": "Guarded 2"}}), http.StatusOK)
		events := e.streamEvents(id)
		r := e.do(req{method: "DELETE", path: projectURL(org, id), token: tm.owner.Token, header: map[string]string{"If-Match": `"1"`}})
		wantProblem(t, r, http.StatusPreconditionFailed, saasapi.MsgStale)
		if n := e.streamEvents(id); n != events {
			t.Fatalf("the project's events went from %d to %d on a stale DELETE, want no change", events, n)
		}
		wantETag(t, e.getProject(tm.owner.Token, org, id), "2")
		want(t, e.do(req{method: "DELETE", path: projectURL(org, id), token: tm.owner.Token, header: map[string]string{"If-Match": `"2"`}}), http.StatusNoContent)
	})
}

// seedProjects creates projects of org with the names and statuses, in
// order, and returns their bodies.
func seedProjects(e *env, token, org string, specs [][2]string) []map[string]any {
	e.t.Helper()
	out := make([]map[string]any, len(specs))
	for i, s := range specs {
		out[i] = e.createProject(token, org, map[string]any{"name": s[0], "status": s[1]})
	}
	return out
}

func TestListProjects(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()

	t.Run("PaginatesWithTotals", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		org := e.teamOrg(tm)
		seeded := seedProjects(e, tm.owner.Token, org, [][2]string{{"p1", "active"}, {"p2", "active"}, {"p3", "archived"}})
		r := e.do(req{method: "GET", path: projectsURL(org), token: tm.viewer.Token})
		want(t, r, http.StatusOK)
		wantPagination(t, r, 50, 0, 3, 3)
		// Default order: newest first.
		for i, it := range r.items() {
			s := seeded[len(seeded)-1-i]
			wantProject(t, it, projectWant{org: org, name: s["name"].(string), status: s["status"].(string),
				createdBy: tm.owner.ID, updatedBy: tm.owner.ID})
			if it["id"] != s["id"] {
				t.Fatalf("item %d is %v, want %v (newest first)", i, it["id"], s["id"])
			}
		}
		r = e.do(req{method: "GET", path: projectsURL(org) + "?limit=2&offset=1", token: tm.viewer.Token})
		want(t, r, http.StatusOK)
		wantPagination(t, r, 2, 1, 3, 2)
		r = e.do(req{method: "GET", path: projectsURL(org) + "?limit=100&offset=3", token: tm.viewer.Token})
		want(t, r, http.StatusOK)
		wantPagination(t, r, 100, 3, 3, 0)
		r = e.do(req{method: "GET", path: projectsURL(org) + "?limit=1", token: tm.viewer.Token})
		want(t, r, http.StatusOK)
		if p := r.obj("pagination"); p["count"] != 1.0 || p["total"] != 3.0 {
			t.Fatalf("limit=1 pagination = %v, want count 1 of total 3", p)
		}
	})

	t.Run("EmptyListIsAnArray", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		org := e.createOrg(tm.owner, uniqueName("Empty"))
		r := e.do(req{method: "GET", path: projectsURL(org), token: tm.owner.Token})
		want(t, r, http.StatusOK)
		wantPagination(t, r, 50, 0, 0, 0)
	})

	t.Run("RejectsBadParameters", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		org := e.createOrg(tm.owner, uniqueName("Params"))
		tests := []struct{ query, field string }{
			{"limit=0", "limit"}, {"limit=101", "limit"}, {"limit=-1", "limit"}, {"limit=x", "limit"}, {"limit=1.5", "limit"},
			{"offset=-1", "offset"}, {"offset=x", "offset"},
			{"status=deleted", "status"}, {"status=ACTIVE", "status"},
			{"sort_by=updated_at", "sort_by"}, {"sort_by=NAME", "sort_by"}, {"sort_by=id", "sort_by"},
			{"sort_direction=up", "sort_direction"}, {"sort_direction=ASC", "sort_direction"},
			{"name=" + strings.Repeat("n", 161), "name"},
		}
		for _, tt := range tests {
			t.Run(tt.query[:min(len(tt.query), 20)], func(t *testing.T) {
				t.Parallel()
				wantInvalid(t, e.forT(t).do(req{method: "GET", path: projectsURL(org) + "?" + tt.query, token: tm.owner.Token}), tt.field)
			})
		}
	})

	t.Run("FiltersByStatusAndName", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		org := e.teamOrg(tm)
		p := seedProjects(e, tm.owner.Token, org, [][2]string{
			{"Apollo Launch", "active"}, {"apollo-tools", "archived"}, {"Zeus", "active"}, {"SATURN apollo", "active"},
			{"100% done", "active"}, {"100 done", "active"}, {"a_b", "active"}, {"axb", "active"}, {`back\slash`, "active"},
		})
		id := func(i int) string { return p[i]["id"].(string) }
		tests := []struct {
			query string
			want  []string // newest first
		}{
			{"status=archived", []string{id(1)}},
			{"status=active", []string{id(8), id(7), id(6), id(5), id(4), id(3), id(2), id(0)}},
			{"name=APOLLO", []string{id(3), id(1), id(0)}},
			{"name=pollo+l", []string{id(0)}},
			{"name=apollo&status=active", []string{id(3), id(0)}},
			{"name=apollo&status=archived", []string{id(1)}},
			{"name=" + url.QueryEscape("%"), []string{id(4)}},
			{"name=" + url.QueryEscape("0%"), []string{id(4)}},
			{"name=_", []string{id(6)}},
			{"name=a_", []string{id(6)}},
			{"name=" + url.QueryEscape(`\`), []string{id(8)}},
			{"name=" + url.QueryEscape(`k\s`), []string{id(8)}},
			{"name=nothing+like+it", []string{}},
		}
		for _, tt := range tests {
			r := e.do(req{method: "GET", path: projectsURL(org) + "?" + tt.query, token: tm.member.Token})
			want(t, r, http.StatusOK)
			if got := idsOf(r); !slices.Equal(got, tt.want) || r.obj("pagination")["total"] != float64(len(tt.want)) {
				t.Errorf("?%s lists %v with total %v, want %v", tt.query, got, r.obj("pagination")["total"], tt.want)
			}
		}
		// total counts every match, not just the page.
		r := e.do(req{method: "GET", path: projectsURL(org) + "?status=active&limit=2", token: tm.member.Token})
		want(t, r, http.StatusOK)
		if p := r.obj("pagination"); p["limit"] != 2.0 || p["offset"] != 0.0 || p["total"] != 8.0 || p["count"] != 2.0 || len(r.items()) != 2 {
			t.Fatalf("?status=active&limit=2 pagination = %v with %d items, want limit 2, offset 0, total 8, count 2", p, len(r.items()))
		}
	})

	t.Run("NameFilterFindsNonASCIINames", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		org := e.createOrg(tm.owner, uniqueName("Unicode"))
		p := seedProjects(e, tm.owner.Token, org, [][2]string{{"Ärger", "active"}, {"Ωmega", "active"}, {"plain", "active"}})
		// Whether "ärger" also matches "Ärger" depends on the database's
		// locale; a name's own text must always find it.
		tests := []struct {
			filter string
			match  map[string]any
		}{{"Ärger", p[0]}, {"rger", p[0]}, {"Ωmega", p[1]}, {"mega", p[1]}}
		for _, tt := range tests {
			got := e.listIDs(tm.owner.Token, org, "name="+url.QueryEscape(tt.filter))
			if !slices.Contains(got, tt.match["id"].(string)) || slices.Contains(got, p[2]["id"].(string)) {
				t.Errorf("?name=%s lists %v, want it to include %s (%s) and not %s (plain)", tt.filter, got, tt.match["id"], tt.match["name"], p[2]["id"])
			}
		}
	})

	t.Run("NeverCountsDeletedProjects", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		org := e.teamOrg(tm)
		p := seedProjects(e, tm.owner.Token, org, [][2]string{{"Keep", "active"}, {"Drop", "active"}, {"Drop archived", "archived"}})
		for _, i := range []int{1, 2} {
			want(t, e.do(req{method: "DELETE", path: projectURL(org, p[i]["id"].(string)), token: tm.owner.Token}), http.StatusNoContent)
		}
		for _, q := range []string{"", "status=archived", "name=drop", "sort_by=name", "sort_by=status&sort_direction=asc"} {
			r := e.do(req{method: "GET", path: projectsURL(org) + "?" + q, token: tm.owner.Token})
			want(t, r, http.StatusOK)
			wantIDs := []string{}
			if !strings.Contains(q, "archived") && !strings.Contains(q, "drop") {
				wantIDs = []string{p[0]["id"].(string)}
			}
			if got := idsOf(r); !slices.Equal(got, wantIDs) || r.obj("pagination")["total"] != float64(len(wantIDs)) {
				t.Errorf("?%s after deletes lists %v with total %v, want %v", q, got, r.obj("pagination")["total"], wantIDs)
			}
		}
	})

	t.Run("SortsCaseInsensitivelyByName", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		org := e.createOrg(tm.owner, uniqueName("Greek"))
		seedProjects(e, tm.owner.Token, org, [][2]string{{"gamma", "active"}, {"Beta", "active"}, {"alpha", "active"}})
		names := func(query string) []string {
			r := e.do(req{method: "GET", path: projectsURL(org) + "?" + query, token: tm.owner.Token})
			want(t, r, http.StatusOK)
			var out []string
			for _, it := range r.items() {
				out = append(out, it["name"].(string))
			}
			return out
		}
		if got := names("sort_by=name&sort_direction=asc"); !slices.Equal(got, []string{"alpha", "Beta", "gamma"}) {
			t.Fatalf("sort_by=name asc = %v, want [alpha Beta gamma]", got)
		}
		if got := names("sort_by=name&sort_direction=desc"); !slices.Equal(got, []string{"gamma", "Beta", "alpha"}) {
			t.Fatalf("sort_by=name desc = %v, want [gamma Beta alpha]", got)
		}
		if got := names("sort_by=name"); !slices.Equal(got, []string{"gamma", "Beta", "alpha"}) {
			t.Fatalf("sort_by=name without direction = %v, want the default desc [gamma Beta alpha]", got)
		}
	})

	t.Run("SortsByEveryKeyWithIDTieBreaker", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		org := e.createOrg(tm.owner, uniqueName("Ties"))
		// Equal names (up to case) and equal statuses, so that only the id
		// can order them.
		seeded := seedProjects(e, tm.owner.Token, org, [][2]string{
			{"same", "active"}, {"Same", "archived"}, {"other", "active"}, {"SAME", "active"},
			{"other", "archived"}, {"same", "archived"}, {"zed", "active"},
		})
		type row struct {
			id, name, status string
			created          time.Time
		}
		rows := make([]row, len(seeded))
		for i, p := range seeded {
			rows[i] = row{p["id"].(string), strings.ToLower(p["name"].(string)), p["status"].(string),
				wantTimestamp(t, "created_at", p["created_at"])}
		}
		keys := map[string]func(a, b row) int{
			"created_at": func(a, b row) int { return a.created.Compare(b.created) },
			"name":       func(a, b row) int { return cmp.Compare(a.name, b.name) },
			"status":     func(a, b row) int { return cmp.Compare(a.status, b.status) },
		}
		for sortBy, key := range keys {
			for _, dir := range []string{"asc", "desc"} {
				expected := slices.Clone(rows)
				slices.SortFunc(expected, func(a, b row) int {
					c := cmp.Or(key(a, b), cmp.Compare(a.id, b.id))
					if dir == "desc" {
						c = -c
					}
					return c
				})
				var wantIDs []string
				for _, r := range expected {
					wantIDs = append(wantIDs, r.id)
				}
				query := "sort_by=" + sortBy + "&sort_direction=" + dir
				if got := e.listIDs(tm.owner.Token, org, query); !slices.Equal(got, wantIDs) {
					t.Errorf("?%s = %v, want %v", query, got, wantIDs)
				}
				// Paging by offset walks the same order one item at a time.
				var paged []string
				for offset := range len(rows) {
					paged = append(paged, e.listIDs(tm.owner.Token, org, fmt.Sprintf("%s&limit=1&offset=%d", query, offset))...)
				}
				if !slices.Equal(paged, wantIDs) {
					t.Errorf("?%s paged by offset = %v, want %v", query, paged, wantIDs)
				}
			}
		}
		// The ids in the name ties follow creation: ULIDs made in one process
		// increase, so "same" < "Same" < "SAME" < "same" by id.
		if got := e.listIDs(tm.owner.Token, org, "sort_by=name&sort_direction=asc&name=same"); !slices.Equal(got,
			[]string{seeded[0]["id"].(string), seeded[1]["id"].(string), seeded[3]["id"].(string), seeded[5]["id"].(string)}) {
			t.Errorf("name ties sorted asc = %v, want creation order", got)
		}
	})
}

// walkCursor pages through the list with limit and next_cursor, starting
// from query, and returns every id in order. It fails on a repeated id and
// checks that every page but the last carries a cursor.
func walkCursor(t *testing.T, e *env, token, org, query string, limit int) []string {
	t.Helper()
	var all []string
	seen := map[string]bool{}
	path := fmt.Sprintf("%s?%s&limit=%d", projectsURL(org), query, limit)
	for page := 0; ; page++ {
		if page > 100 {
			t.Fatalf("cursor walk of ?%s did not end after 100 pages", query)
		}
		r := e.do(req{method: "GET", path: path, token: token})
		want(t, r, http.StatusOK)
		p := r.obj("pagination")
		if p["offset"] != 0.0 || p["limit"] != float64(limit) || p["count"] != float64(len(r.items())) {
			t.Fatalf("page %d of ?%s has pagination %v, want offset 0, limit %d and the item count", page, query, p, limit)
		}
		for _, id := range idsOf(r) {
			if seen[id] {
				t.Fatalf("cursor walk of ?%s repeats %s on page %d", query, id, page)
			}
			seen[id] = true
			all = append(all, id)
		}
		next, hasNext := p["next_cursor"].(string)
		if !hasNext {
			if _, present := p["next_cursor"]; present {
				t.Fatalf("page %d of ?%s has next_cursor %v, want a string or no key", page, query, p["next_cursor"])
			}
			if int(p["total"].(float64)) != len(all) {
				t.Fatalf("cursor walk of ?%s ended after %d items, total says %v", query, len(all), p["total"])
			}
			return all
		}
		if len(r.items()) != limit {
			t.Fatalf("page %d of ?%s has %d items and a next_cursor, want a full page of %d", page, query, len(r.items()), limit)
		}
		path = fmt.Sprintf("%s?cursor=%s&limit=%d", projectsURL(org), url.QueryEscape(next), limit)
	}
}

func TestListProjectsCursor(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner := e.register("Owner")
	org := e.createOrg(owner, uniqueName("Cursor"))
	// Ties on every key, mixed case, and letters outside ASCII whose lower
	// case the database and Go might see differently.
	seedProjects(e, owner.Token, org, [][2]string{
		{"same", "active"}, {"Same", "archived"}, {"other", "active"}, {"SAME", "active"},
		{"other", "archived"}, {"Ärger", "active"}, {"ärger", "archived"}, {"Äpfel", "active"},
		{"zed", "active"}, {"Ωmega", "active"}, {"ωmega", "archived"}, {"İstanbul", "active"}, {"same", "active"},
	})

	for _, sortBy := range []string{"created_at", "name", "status"} {
		for _, dir := range []string{"asc", "desc"} {
			for _, filter := range []string{"", "&status=active", "&name=e"} {
				query := "sort_by=" + sortBy + "&sort_direction=" + dir + filter
				t.Run(query, func(t *testing.T) {
					t.Parallel()
					e := e.forT(t)
					full := e.listIDs(owner.Token, org, query+"&limit=100")
					if len(full) < 5 {
						t.Fatalf("?%s lists only %d projects; the walk needs several pages", query, len(full))
					}
					for _, limit := range []int{1, 2, 3, len(full)} {
						if got := walkCursor(t, e, owner.Token, org, query, limit); !slices.Equal(got, full) {
							t.Fatalf("cursor walk of ?%s with limit %d = %v, want the offset order %v", query, limit, got, full)
						}
					}
				})
			}
		}
	}

	t.Run("DefaultQueryWalks", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		full := e.listIDs(owner.Token, org, "limit=100")
		if got := walkCursor(t, e, owner.Token, org, "", 4); !slices.Equal(got, full) {
			t.Fatalf("cursor walk of the default order = %v, want %v", got, full)
		}
	})

	// cursor returns the next_cursor of the first page of query.
	cursor := func(t *testing.T, query string) string {
		t.Helper()
		r := e.forT(t).do(req{method: "GET", path: projectsURL(org) + "?limit=2&" + query, token: owner.Token})
		want(t, r, http.StatusOK)
		c, ok := r.obj("pagination")["next_cursor"].(string)
		if !ok || c == "" {
			t.Fatalf("?limit=2&%s has no next_cursor: %s", query, r.Raw)
		}
		return c
	}

	t.Run("RejectsBadCursors", func(t *testing.T) {
		t.Parallel()
		byName := url.QueryEscape(cursor(t, "sort_by=name&sort_direction=asc"))
		tests := []struct{ name, query string }{
			{"Garbage", "cursor=garbage!!"},
			{"NotBase64JSON", "cursor=" + base64.RawURLEncoding.EncodeToString([]byte("not json"))},
			{"EmptyObject", "cursor=" + base64.RawURLEncoding.EncodeToString([]byte("{}"))},
			{"BadID", "cursor=" + base64.RawURLEncoding.EncodeToString([]byte(`{"s":"name","i":"nope","k":"a"}`))},
			{"Truncated", "cursor=" + byName[:len(byName)/2]},
			{"ConflictingSortBy", "cursor=" + byName + "&sort_by=status"},
			{"ConflictingSortDirection", "cursor=" + byName + "&sort_direction=desc"},
			{"ConflictingStatus", "cursor=" + byName + "&status=archived"},
			{"ConflictingName", "cursor=" + byName + "&name=x"},
			{"WithOffset", "cursor=" + byName + "&offset=1"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				wantInvalid(t, e.forT(t).do(req{method: "GET", path: projectsURL(org) + "?" + tt.query, token: owner.Token}), "cursor")
			})
		}
	})

	t.Run("AcceptsAgreeingParameters", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		c := url.QueryEscape(cursor(t, "sort_by=name&sort_direction=asc&status=active"))
		plain := e.listIDs(owner.Token, org, "limit=2&cursor="+c)
		agreeing := e.listIDs(owner.Token, org, "limit=2&offset=0&sort_by=name&sort_direction=asc&status=active&cursor="+c)
		if len(plain) != 2 || !slices.Equal(plain, agreeing) {
			t.Fatalf("the cursor alone gives %v, with agreeing parameters %v; want the same full page", plain, agreeing)
		}
	})
}
