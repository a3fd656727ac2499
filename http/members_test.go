package http_test

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/saasapi/saasapi"
)

func membersURL(org string) string        { return "/orgs/" + org + "/members" }
func memberURL(org, userID string) string { return "/orgs/" + org + "/members/" + userID }

// wantMembership fails the test unless m is the public shape of u's
// membership of org with the role.
func wantMembership(t *testing.T, m map[string]any, org string, u user, displayName, role string) {
	t.Helper()
	wantKeys(t, "membership", m, "id", "organisation_id", "user", "role", "created_at", "updated_at")
	wantULID(t, "membership.id", m["id"])
	mu, _ := m["user"].(map[string]any)
	wantKeys(t, "membership.user", mu, "id", "email", "display_name", "is_active")
	if m["organisation_id"] != org || m["role"] != role || mu["id"] != u.ID || mu["email"] != u.Email ||
		mu["display_name"] != displayName || mu["is_active"] != true {
		t.Fatalf("membership = %v, want %s (%s, %s, active) in %s as %s", m, u.ID, u.Email, displayName, org, role)
	}
	created := wantTimestamp(t, "membership.created_at", m["created_at"])
	if updated := wantTimestamp(t, "membership.updated_at", m["updated_at"]); updated.Before(created) {
		t.Fatalf("membership.updated_at %v is before created_at %v", updated, created)
	}
}

// roles returns user ID -> role of the organisation's members list.
func (e *env) roles(by user, org string) map[string]string {
	e.t.Helper()
	r := e.do(req{method: "GET", path: membersURL(org) + "?limit=100", token: by.Token})
	want(e.t, r, http.StatusOK)
	out := map[string]string{}
	for _, it := range r.items() {
		out[it["user"].(map[string]any)["id"].(string)] = it["role"].(string)
	}
	return out
}

func TestListMembers(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.teamOrg(tm)

	t.Run("ListsMembersOldestFirst", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		for _, caller := range []user{tm.owner, tm.admin} {
			r := e.do(req{method: "GET", path: membersURL(org), token: caller.Token})
			want(t, r, http.StatusOK)
			wantPagination(t, r, 50, 0, 4, 4)
			items := r.items()
			wantMembership(t, items[0], org, tm.owner, "Owner", "owner")
			wantMembership(t, items[1], org, tm.admin, "Admin", "admin")
			wantMembership(t, items[2], org, tm.member, "Member", "member")
			wantMembership(t, items[3], org, tm.viewer, "Viewer", "viewer")
		}
		me := e.do(req{method: "GET", path: "/me", token: tm.member.Token})
		want(t, me, http.StatusOK)
		list := e.do(req{method: "GET", path: membersURL(org), token: tm.owner.Token})
		if got := me.Body["memberships"].([]any)[0].(map[string]any)["membership_id"]; got != list.items()[2]["id"] {
			t.Fatalf("/me membership_id %v differs from the members list id %v", got, list.items()[2]["id"])
		}
	})

	t.Run("Paginates", func(t *testing.T) {
		t.Parallel()
		r := e.forT(t).do(req{method: "GET", path: membersURL(org) + "?limit=2&offset=1", token: tm.owner.Token})
		want(t, r, http.StatusOK)
		wantPagination(t, r, 2, 1, 4, 2)
		wantMembership(t, r.items()[0], org, tm.admin, "Admin", "admin")
		wantMembership(t, r.items()[1], org, tm.member, "Member", "member")
		r = e.forT(t).do(req{method: "GET", path: membersURL(org) + "?offset=10", token: tm.owner.Token})
		want(t, r, http.StatusOK)
		wantPagination(t, r, 50, 10, 4, 0)
	})

	t.Run("RejectsBadQueryAndPath", func(t *testing.T) {
		t.Parallel()
		wantInvalid(t, e.forT(t).do(req{method: "GET", path: membersURL(org) + "?limit=0", token: tm.owner.Token}), "limit")
		wantInvalid(t, e.forT(t).do(req{method: "GET", path: membersURL(org) + "?offset=-5", token: tm.owner.Token}), "offset")
		wantInvalid(t, e.forT(t).do(req{method: "GET", path: membersURL("x"), token: tm.owner.Token}), "organisation_id")
		wantProblem(t, e.forT(t).do(req{method: "GET", path: membersURL(saasapi.NewID().String()), token: tm.owner.Token}),
			http.StatusNotFound, saasapi.MsgOrgNotFound)
	})
}

func TestAddMember(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.teamOrg(tm)

	t.Run("AddsAsMemberByDefault", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		u := e.register("Newcomer")
		r := e.do(req{method: "POST", path: membersURL(org), token: tm.owner.Token, body: map[string]any{"user_id": u.ID}})
		want(t, r, http.StatusCreated)
		wantMembership(t, r.Body, org, u, "Newcomer", "member")
		wantETag(t, r, "1")
		if got := e.roles(tm.owner, org)[u.ID]; got != "member" {
			t.Fatalf("members list shows role %q for the new member, want member", got)
		}
		me := e.do(req{method: "GET", path: "/me", token: u.Token})
		if ms := me.Body["memberships"].([]any); len(ms) != 1 || ms[0].(map[string]any)["membership_id"] != r.Body["id"] {
			t.Fatalf("/me memberships = %v, want the new membership %v", ms, r.Body["id"])
		}
	})

	t.Run("GrantsRequestedRole", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name  string
			actor user
			role  string
		}{
			{"OwnerGrantsOwner", tm.owner, "owner"},
			{"OwnerGrantsAdmin", tm.owner, "admin"},
			{"OwnerGrantsMember", tm.owner, "member"},
			{"OwnerGrantsViewer", tm.owner, "viewer"},
			{"AdminGrantsAdmin", tm.admin, "admin"},
			{"AdminGrantsMember", tm.admin, "member"},
			{"AdminGrantsViewer", tm.admin, "viewer"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := e.forT(t)
				u := e.register("Granted")
				r := e.do(req{method: "POST", path: membersURL(org), token: tt.actor.Token, body: map[string]any{"user_id": u.ID, "role": tt.role}})
				want(t, r, http.StatusCreated)
				wantMembership(t, r.Body, org, u, "Granted", tt.role)
			})
		}
	})

	t.Run("ChecksInContractOrder", func(t *testing.T) {
		t.Parallel()
		unknown := saasapi.NewID().String()
		newcomer := e.forT(t).register("Newcomer")
		tests := []struct {
			name         string
			actor        user
			org, user_id string
			role         string
			status       int
			detail       string
		}{
			{"UnknownOrganisation", tm.owner, saasapi.NewID().String(), unknown, "member", 404, saasapi.MsgOrgNotFound},
			{"OutsiderDenied", tm.outsider, org, newcomer.ID, "member", 403, saasapi.MsgOrgAccessDenied},
			{"MemberForbidden", tm.member, org, newcomer.ID, "member", 403, saasapi.MsgInsufficientPerms},
			{"ViewerForbidden", tm.viewer, org, newcomer.ID, "viewer", 403, saasapi.MsgInsufficientPerms},
			{"ViewerForbiddenBeforeUnknownUser", tm.viewer, org, unknown, "member", 403, saasapi.MsgInsufficientPerms},
			{"AdminCannotGrantOwner", tm.admin, org, newcomer.ID, "owner", 403, saasapi.MsgInsufficientPerms},
			{"AdminCannotGrantOwnerBeforeUnknownUser", tm.admin, org, unknown, "owner", 403, saasapi.MsgInsufficientPerms},
			{"AdminCannotGrantOwnerBeforeAlreadyMember", tm.admin, org, tm.member.ID, "owner", 403, saasapi.MsgInsufficientPerms},
			{"UnknownUserNotFound", tm.owner, org, unknown, "member", 404, saasapi.MsgUserNotFound},
			{"UnknownUserNotFoundForAdmin", tm.admin, org, unknown, "viewer", 404, saasapi.MsgUserNotFound},
			{"AlreadyMemberConflict", tm.owner, org, tm.viewer.ID, "admin", 409, saasapi.MsgAlreadyMember},
			{"AlreadyMemberSameRoleConflict", tm.admin, org, tm.member.ID, "member", 409, saasapi.MsgAlreadyMember},
			{"AddingSelfConflict", tm.owner, org, tm.owner.ID, "owner", 409, saasapi.MsgAlreadyMember},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := e.forT(t).do(req{method: "POST", path: membersURL(tt.org), token: tt.actor.Token,
					body: map[string]any{"user_id": tt.user_id, "role": tt.role}})
				wantProblem(t, r, tt.status, tt.detail)
			})
		}
	})

	t.Run("RejectsInvalidInput", func(t *testing.T) {
		t.Parallel()
		u := e.forT(t).register("Invalid")
		id := `"` + u.ID + `"`
		tests := []struct{ name, body, field string }{
			{"UnknownRole", `{"user_id":` + id + `,"role":"superuser"}`, "role"},
			{"UpperCaseRole", `{"user_id":` + id + `,"role":"OWNER"}`, "role"},
			{"EmptyRole", `{"user_id":` + id + `,"role":""}`, "role"},
			{"RoleWrongType", `{"user_id":` + id + `,"role":1}`, "role"},
			{"UpperCaseRoleKey", `{"user_id":` + id + `,"ROLE":"admin"}`, "ROLE"},
			{"DuplicateRoleKey", `{"user_id":` + id + `,"role":"viewer","role":"owner"}`, "role"},
			{"CaseVariantUserIDKey", `{"User_id":` + id + `}`, "User_id"},
			{"MissingUserID", `{"role":"member"}`, "user_id"},
			{"NullUserID", `{"user_id":null}`, "user_id"},
			{"MalformedUserID", `{"user_id":"nope"}`, "user_id"},
			{"NumericUserID", `{"user_id":123}`, "user_id"},
			{"UnknownField", `{"user_id":` + id + `,"email":"x@example.com"}`, "email"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				wantInvalid(t, e.forT(t).do(req{method: "POST", path: membersURL(org), token: tm.owner.Token, body: tt.body}), tt.field)
			})
		}
		t.Run("MalformedOrganisationID", func(t *testing.T) {
			t.Parallel()
			r := e.forT(t).do(req{method: "POST", path: membersURL("nope"), token: tm.owner.Token, body: map[string]any{"user_id": u.ID}})
			wantInvalid(t, r, "organisation_id")
		})
	})
}

func TestChangeMemberRole(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	patch := func(e *env, by user, org, userID, role string, header map[string]string) response {
		return e.do(req{method: "PATCH", path: memberURL(org, userID), token: by.Token, body: map[string]any{"role": role}, header: header})
	}

	t.Run("OwnerAndAdminChangeRoles", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		org := e.teamOrg(tm)
		r := patch(e, tm.owner, org, tm.member.ID, "admin", nil)
		want(t, r, http.StatusOK)
		wantMembership(t, r.Body, org, tm.member, "Member", "admin")
		wantETag(t, r, "2")
		r = patch(e, tm.admin, org, tm.viewer.ID, "member", nil)
		want(t, r, http.StatusOK)
		wantMembership(t, r.Body, org, tm.viewer, "Viewer", "member")
		r = patch(e, tm.admin, org, tm.admin.ID, "viewer", nil)
		want(t, r, http.StatusOK)
		wantMembership(t, r.Body, org, tm.admin, "Admin", "viewer")
		got := e.roles(tm.owner, org)
		wantRoles := map[string]string{tm.owner.ID: "owner", tm.admin.ID: "viewer", tm.member.ID: "admin", tm.viewer.ID: "member"}
		if !maps.Equal(got, wantRoles) {
			t.Fatalf("roles = %v, want %v", got, wantRoles)
		}
	})

	t.Run("ChecksInContractOrder", func(t *testing.T) {
		t.Parallel()
		// Its own database: it compares row counts, which parallel
		// subtests would move.
		e := setup(t)
		tm := e.newTeam()
		org := e.teamOrg(tm)
		unknown := saasapi.NewID().String()
		tests := []struct {
			name        string
			actor       user
			org, target string
			role        string
			status      int
			detail      string
		}{
			{"UnknownOrganisation", tm.owner, saasapi.NewID().String(), tm.member.ID, "viewer", 404, saasapi.MsgOrgNotFound},
			{"OutsiderDenied", tm.outsider, org, tm.member.ID, "viewer", 403, saasapi.MsgOrgAccessDenied},
			{"MemberForbidden", tm.member, org, tm.viewer.ID, "member", 403, saasapi.MsgInsufficientPerms},
			{"ViewerForbidden", tm.viewer, org, tm.viewer.ID, "admin", 403, saasapi.MsgInsufficientPerms},
			{"MemberForbiddenBeforeNoMembership", tm.member, org, unknown, "viewer", 403, saasapi.MsgInsufficientPerms},
			{"NoMembershipNotFound", tm.owner, org, tm.outsider.ID, "viewer", 404, saasapi.MsgMembershipNotFound},
			{"UnknownUserNotFound", tm.owner, org, unknown, "viewer", 404, saasapi.MsgMembershipNotFound},
			{"NoMembershipBeforeAdminGrantingOwner", tm.admin, org, tm.outsider.ID, "owner", 404, saasapi.MsgMembershipNotFound},
			{"AdminCannotChangeOwner", tm.admin, org, tm.owner.ID, "admin", 403, saasapi.MsgInsufficientPerms},
			{"AdminCannotTouchOwnerEvenWithoutChange", tm.admin, org, tm.owner.ID, "owner", 403, saasapi.MsgInsufficientPerms},
			{"AdminCannotGrantOwner", tm.admin, org, tm.member.ID, "owner", 403, saasapi.MsgInsufficientPerms},
			{"AdminCannotMakeSelfOwner", tm.admin, org, tm.admin.ID, "owner", 403, saasapi.MsgInsufficientPerms},
			{"LastOwnerCannotStepDown", tm.owner, org, tm.owner.ID, "admin", 409, saasapi.MsgLastOwner},
			{"LastOwnerCannotBecomeViewer", tm.owner, org, tm.owner.ID, "viewer", 409, saasapi.MsgLastOwner},
		}
		before := e.counts()
		for _, tt := range tests {
			r := patch(e, tt.actor, tt.org, tt.target, tt.role, nil)
			if r.Status != tt.status || r.str("detail") != tt.detail {
				t.Errorf("%s: got %d %q, want %d %q", tt.name, r.Status, r.str("detail"), tt.status, tt.detail)
				continue
			}
			wantProblem(t, r, tt.status, tt.detail)
		}
		if after := e.counts(); !maps.Equal(before, after) {
			t.Fatalf("row counts went from %v to %v on refused role changes, want no change", before, after)
		}
	})

	t.Run("OwnerMayStepDownWhileAnotherOwnerRemains", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		org := e.teamOrg(tm)
		want(t, patch(e, tm.owner, org, tm.admin.ID, "owner", nil), http.StatusOK)
		r := patch(e, tm.owner, org, tm.owner.ID, "member", nil)
		want(t, r, http.StatusOK)
		wantMembership(t, r.Body, org, tm.owner, "Owner", "member")
		// The former owner is a plain member now and may no longer manage members.
		wantProblem(t, patch(e, tm.owner, org, tm.admin.ID, "member", nil), http.StatusForbidden, saasapi.MsgInsufficientPerms)
		wantProblem(t, patch(e, tm.admin, org, tm.admin.ID, "admin", nil), http.StatusConflict, saasapi.MsgLastOwner)
	})

	t.Run("SameRoleRecordsNothing", func(t *testing.T) {
		t.Parallel()
		// Its own database: it compares row counts, which parallel
		// subtests would move.
		e := setup(t)
		tm := e.newTeam()
		org := e.teamOrg(tm)
		before := e.counts()
		r := patch(e, tm.owner, org, tm.member.ID, "member", nil)
		want(t, r, http.StatusOK)
		wantMembership(t, r.Body, org, tm.member, "Member", "member")
		wantETag(t, r, "1")
		if after := e.counts(); !maps.Equal(before, after) {
			t.Fatalf("row counts went from %v to %v on a change to the same role, want no change", before, after)
		}
	})

	t.Run("RejectsInvalidInput", func(t *testing.T) {
		t.Parallel()
		org := e.forT(t).teamOrg(tm)
		tests := []struct{ name, body, field string }{
			{"UnknownRole", `{"role":"superuser"}`, "role"},
			{"CapitalisedRole", `{"role":"Admin"}`, "role"},
			{"EmptyRole", `{"role":""}`, "role"},
			{"NullRole", `{"role":null}`, "role"},
			{"RoleWrongType", `{"role":["admin"]}`, "role"},
			{"MissingRole", `{}`, "role"},
			{"UpperCaseRoleKey", `{"ROLE":"admin"}`, "ROLE"},
			{"UnknownField", `{"role":"admin","user_id":"` + tm.member.ID + `"}`, "user_id"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := e.forT(t).do(req{method: "PATCH", path: memberURL(org, tm.member.ID), token: tm.owner.Token, body: tt.body})
				wantInvalid(t, r, tt.field)
			})
		}
		t.Run("MalformedUserID", func(t *testing.T) {
			t.Parallel()
			wantInvalid(t, patch(e.forT(t), tm.owner, org, "nope", "admin", nil), "user_id")
		})
		t.Run("MalformedOrganisationID", func(t *testing.T) {
			t.Parallel()
			wantInvalid(t, patch(e.forT(t), tm.owner, "nope", tm.member.ID, "admin", nil), "organisation_id")
		})
	})

	t.Run("IfMatchGuardsAgainstLostUpdates", func(t *testing.T) {
		t.Parallel()
		// Its own database: it compares row counts, which parallel
		// subtests would move.
		e := setup(t)
		tm := e.newTeam()
		org := e.teamOrg(tm)
		u := e.register("Versioned")
		r := e.do(req{method: "POST", path: membersURL(org), token: tm.owner.Token, body: map[string]any{"user_id": u.ID, "role": "viewer"}})
		want(t, r, http.StatusCreated)
		wantETag(t, r, "1")

		r = patch(e, tm.owner, org, u.ID, "member", map[string]string{"If-Match": `"1"`})
		want(t, r, http.StatusOK)
		wantETag(t, r, "2")

		before := e.counts()
		stale := map[string]string{"If-Match": `"1"`}
		wantProblem(t, patch(e, tm.admin, org, u.ID, "admin", stale), http.StatusPreconditionFailed, saasapi.MsgStale)
		// A stale write that would change nothing is refused all the same.
		wantProblem(t, patch(e, tm.admin, org, u.ID, "member", stale), http.StatusPreconditionFailed, saasapi.MsgStale)
		wantProblem(t, e.do(req{method: "DELETE", path: memberURL(org, u.ID), token: tm.admin.Token, header: stale}),
			http.StatusPreconditionFailed, saasapi.MsgStale)
		// Permissions are checked before the version.
		wantProblem(t, patch(e, tm.member, org, u.ID, "admin", stale), http.StatusForbidden, saasapi.MsgInsufficientPerms)
		if after := e.counts(); !maps.Equal(before, after) {
			t.Fatalf("row counts went from %v to %v on stale writes, want no change", before, after)
		}
		if got := e.roles(tm.owner, org)[u.ID]; got != "member" {
			t.Fatalf("role = %q after stale writes, want member", got)
		}

		r = patch(e, tm.admin, org, u.ID, "admin", map[string]string{"If-Match": `"2"`})
		want(t, r, http.StatusOK)
		wantETag(t, r, "3")
		r = e.do(req{method: "DELETE", path: memberURL(org, u.ID), token: tm.owner.Token, header: map[string]string{"If-Match": `"3"`}})
		want(t, r, http.StatusNoContent)
		if _, ok := e.roles(tm.owner, org)[u.ID]; ok {
			t.Fatalf("user %s is still listed after the delete with a current If-Match", u.ID)
		}
	})
}

func TestRemoveMember(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	del := func(e *env, by user, org, userID string) response {
		return e.do(req{method: "DELETE", path: memberURL(org, userID), token: by.Token})
	}

	t.Run("RemovesMembership", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		org := e.teamOrg(tm)
		r := del(e, tm.owner, org, tm.member.ID)
		want(t, r, http.StatusNoContent)
		if len(r.Raw) != 0 || r.Header.Get("Content-Type") != "" {
			t.Fatalf("204 has body %q and Content-Type %q, want neither", r.Raw, r.Header.Get("Content-Type"))
		}
		wantRoles := map[string]string{tm.owner.ID: "owner", tm.admin.ID: "admin", tm.viewer.ID: "viewer"}
		if got := e.roles(tm.owner, org); !maps.Equal(got, wantRoles) {
			t.Fatalf("roles = %v after removing the member, want %v", got, wantRoles)
		}
		wantProblem(t, e.do(req{method: "GET", path: "/orgs/" + org, token: tm.member.Token}), http.StatusForbidden, saasapi.MsgOrgAccessDenied)
		wantProblem(t, del(e, tm.owner, org, tm.member.ID), http.StatusNotFound, saasapi.MsgMembershipNotFound)
	})

	t.Run("AdminRemovesNonOwners", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		org := e.teamOrg(tm)
		want(t, del(e, tm.admin, org, tm.viewer.ID), http.StatusNoContent)
		want(t, del(e, tm.admin, org, tm.member.ID), http.StatusNoContent)
		want(t, del(e, tm.admin, org, tm.admin.ID), http.StatusNoContent)
		if got := e.roles(tm.owner, org); !maps.Equal(got, map[string]string{tm.owner.ID: "owner"}) {
			t.Fatalf("roles = %v, want the owner alone", got)
		}
	})

	t.Run("ChecksInContractOrder", func(t *testing.T) {
		t.Parallel()
		// Its own database: it compares row counts, which parallel
		// subtests would move.
		e := setup(t)
		tm := e.newTeam()
		org := e.teamOrg(tm)
		tests := []struct {
			name        string
			actor       user
			org, target string
			status      int
			detail      string
		}{
			{"UnknownOrganisation", tm.owner, saasapi.NewID().String(), tm.member.ID, 404, saasapi.MsgOrgNotFound},
			{"OutsiderDenied", tm.outsider, org, tm.member.ID, 403, saasapi.MsgOrgAccessDenied},
			{"MemberForbidden", tm.member, org, tm.viewer.ID, 403, saasapi.MsgInsufficientPerms},
			{"OutsiderCannotLeaveWhatTheyAreNotIn", tm.outsider, org, tm.outsider.ID, 403, saasapi.MsgOrgAccessDenied},
			{"ViewerForbidden", tm.viewer, org, tm.member.ID, 403, saasapi.MsgInsufficientPerms},
			{"ViewerForbiddenBeforeNoMembership", tm.viewer, org, tm.outsider.ID, 403, saasapi.MsgInsufficientPerms},
			{"NoMembershipNotFound", tm.owner, org, tm.outsider.ID, 404, saasapi.MsgMembershipNotFound},
			{"NoMembershipNotFoundForAdmin", tm.admin, org, saasapi.NewID().String(), 404, saasapi.MsgMembershipNotFound},
			{"AdminCannotRemoveOwner", tm.admin, org, tm.owner.ID, 403, saasapi.MsgInsufficientPerms},
			{"LastOwnerCannotLeave", tm.owner, org, tm.owner.ID, 409, saasapi.MsgLastOwner},
		}
		before := e.counts()
		for _, tt := range tests {
			r := del(e, tt.actor, tt.org, tt.target)
			if r.Status != tt.status || r.str("detail") != tt.detail {
				t.Errorf("%s: got %d %q, want %d %q", tt.name, r.Status, r.str("detail"), tt.status, tt.detail)
				continue
			}
			wantProblem(t, r, tt.status, tt.detail)
		}
		if after := e.counts(); !maps.Equal(before, after) {
			t.Fatalf("row counts went from %v to %v on refused removals, want no change", before, after)
		}
		wantInvalid(t, del(e, tm.owner, org, "nope"), "user_id")
		wantInvalid(t, del(e, tm.owner, "nope", tm.member.ID), "organisation_id")
	})

	t.Run("EveryRoleMayLeave", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		org := e.teamOrg(tm)
		for _, u := range []user{tm.viewer, tm.member, tm.admin} {
			want(t, del(e, u, org, u.ID), http.StatusNoContent)
			wantProblem(t, e.do(req{method: "GET", path: "/orgs/" + org, token: u.Token}), http.StatusForbidden, saasapi.MsgOrgAccessDenied)
		}
		// Audited like a removal, with the member who left as the actor.
		r := e.do(req{method: "GET", path: "/orgs/" + org + "/audit-events?action=member.removed", token: tm.owner.Token})
		want(t, r, http.StatusOK)
		items := r.items()
		if len(items) != 3 {
			t.Fatalf("member.removed events = %d, want 3", len(items))
		}
		for _, it := range items {
			md, _ := it["metadata"].(map[string]any)
			if it["actor_user_id"] != md["user_id"] || it["target_type"] != "membership" {
				t.Fatalf("leaving recorded as %v, want the leaving user as actor of member.removed", it)
			}
		}
		wantProblem(t, del(e, tm.owner, org, tm.owner.ID), http.StatusConflict, saasapi.MsgLastOwner)
		if got := e.roles(tm.owner, org); !maps.Equal(got, map[string]string{tm.owner.ID: "owner"}) {
			t.Fatalf("roles = %v, want the last owner, who may not leave", got)
		}
	})

	t.Run("OwnerMayLeaveWhileAnotherOwnerRemains", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		org := e.teamOrg(tm)
		want(t, e.do(req{method: "PATCH", path: memberURL(org, tm.admin.ID), token: tm.owner.Token, body: map[string]any{"role": "owner"}}), http.StatusOK)
		want(t, del(e, tm.owner, org, tm.owner.ID), http.StatusNoContent)
		wantProblem(t, del(e, tm.admin, org, tm.admin.ID), http.StatusConflict, saasapi.MsgLastOwner)
		want(t, del(e, tm.admin, org, tm.member.ID), http.StatusNoContent)
		wantRoles := map[string]string{tm.admin.ID: "owner", tm.viewer.ID: "viewer"}
		if got := e.roles(tm.admin, org); !maps.Equal(got, wantRoles) {
			t.Fatalf("roles = %v, want %v", got, wantRoles)
		}
	})
}

// TestConcurrentOwnerChangesKeepAnOwner races owners demoting and removing
// each other and themselves: the ledger lock must serialise the last-owner
// check with the write, so the organisation always keeps an owner and its
// ledger stays gapless.
func TestConcurrentOwnerChangesKeepAnOwner(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const rounds, nOwners, nAdmins = 5, 6, 2
	owners := make([]user, nOwners)
	for i := range owners {
		owners[i] = e.register("Owner")
	}
	admins := make([]user, nAdmins)
	for i := range admins {
		admins[i] = e.register("Admin")
	}
	allowed := map[int]bool{200: true, 204: true, 403: true, 404: true, 409: true}
	ctx := context.Background()

	for round := 1; round <= rounds; round++ {
		org := e.createOrg(owners[0], uniqueName("Race"))
		for _, o := range owners[1:] {
			e.addMember(owners[0], org, o, "owner")
		}
		for _, a := range admins {
			e.addMember(owners[0], org, a, "admin")
		}

		var reqs []req
		for _, actor := range owners {
			for _, target := range owners {
				reqs = append(reqs,
					req{method: "PATCH", path: memberURL(org, target.ID), token: actor.Token, body: map[string]any{"role": "member"}},
					req{method: "DELETE", path: memberURL(org, target.ID), token: actor.Token})
			}
		}
		for _, actor := range admins {
			for _, target := range owners {
				reqs = append(reqs, req{method: "DELETE", path: memberURL(org, target.ID), token: actor.Token})
			}
		}

		results := make([]response, len(reqs))
		errs := make([]error, len(reqs))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, r := range reqs {
			wg.Go(func() {
				<-start
				results[i], errs[i] = e.send(r)
			})
		}
		close(start)
		wg.Wait()

		tally := map[int]int{}
		for i, res := range results {
			if errs[i] != nil {
				t.Fatalf("round %d: %v", round, errs[i])
			}
			if !allowed[res.Status] {
				t.Errorf("round %d: %s %s answered %d %s, want one of 200, 204, 403, 404, 409", round, reqs[i].method, reqs[i].path, res.Status, res.Raw)
			}
			if res.Status == http.StatusConflict && res.str("detail") != saasapi.MsgLastOwner {
				t.Errorf("round %d: 409 with detail %q, want %q", round, res.str("detail"), saasapi.MsgLastOwner)
			}
			tally[res.Status]++
		}

		var left []string
		rows, err := e.db.Pool.Query(ctx, `SELECT user_id FROM memberships WHERE organisation_id = $1 AND role = 'owner' ORDER BY user_id`, org)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			left = append(left, id)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 {
			t.Fatalf("round %d: the organisation has no owner left after the race", round)
		}
		var survivor user
		for _, o := range owners {
			if o.ID == left[0] {
				survivor = o
			}
		}
		var listed []string
		for id, role := range e.roles(survivor, org) {
			if role == "owner" {
				listed = append(listed, id)
			}
		}
		slices.Sort(listed)
		if !slices.Equal(listed, left) {
			t.Fatalf("round %d: GET members lists owners %v, the table holds %v", round, listed, left)
		}

		var seqs []int64
		rows, err = e.db.Pool.Query(ctx, `SELECT sequence FROM events WHERE ledger_id = $1 ORDER BY sequence`, org)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s int64
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		for i, s := range seqs {
			if s != int64(i+1) {
				t.Fatalf("round %d: ledger sequences %v are not 1..%d", round, seqs, len(seqs))
			}
		}
		var lastSeq int64
		var removed, stale int
		err = e.db.Pool.QueryRow(ctx, `SELECT last_sequence,
				(SELECT count(*) FROM events WHERE ledger_id = $1 AND event_type = 'member.removed'),
				(SELECT count(*) FROM memberships m WHERE m.organisation_id = $1 AND m.version <>
					(SELECT max(stream_version) FROM events WHERE stream_id = m.id))
			FROM ledgers WHERE ledger_id = $1`, org).Scan(&lastSeq, &removed, &stale)
		if err != nil {
			t.Fatal(err)
		}
		if lastSeq != int64(len(seqs)) {
			t.Fatalf("round %d: ledger head is at %d, events end at %d", round, lastSeq, len(seqs))
		}
		if removed != tally[http.StatusNoContent] {
			t.Fatalf("round %d: %d member.removed events for %d responses 204", round, removed, tally[http.StatusNoContent])
		}
		if stale != 0 {
			t.Fatalf("round %d: %d memberships whose version differs from their stream's last event", round, stale)
		}
		t.Logf("round %d: %d requests: %d×200 %d×204 %d×403 %d×404 %d×409; %d owner(s) left; ledger at %d",
			round, len(reqs), tally[200], tally[204], tally[403], tally[404], tally[409], len(left), lastSeq)
	}
}
