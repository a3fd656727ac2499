package http_test

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/saasapi/saasapi"
)

// principals are the callers of the role matrix, in the order of the
// expected statuses below. "api-key" is an active API key of the
// organisation.
var principals = []string{"owner", "admin", "member", "viewer", "non-member", "anonymous", "api-key"}

// matrixFixture is the fresh state one matrix case runs against: an
// organisation in which owner, admin, member and viewer hold their roles and
// target is a plain member; newcomer belongs to no organisation. project is a
// live project of the organisation and apiKey the id of one of its active
// keys (not the key that calls as "api-key").
type matrixFixture struct {
	org              string
	target, newcomer user
	project, apiKey  string
}

// roleMatrix is the expected status of every authenticated route for every
// principal (contract A.10, A.5, A.1). Paths are built from the route
// templates themselves, so an entry always exercises the route it names.
var roleMatrix = map[string]struct {
	body   func(f matrixFixture) any
	status [7]int // owner, admin, member, viewer, non-member, anonymous, api-key
}{
	"GET /me":              {nil, [7]int{200, 200, 200, 200, 200, 401, 401}},
	"GET /me/audit-events": {nil, [7]int{200, 200, 200, 200, 200, 401, 401}},
	// No password, so that the matrix erases nobody (erase_test.go).
	"DELETE /me": {func(matrixFixture) any { return map[string]any{} },
		[7]int{422, 422, 422, 422, 422, 401, 401}},
	"GET /me/audit-events/checkpoint": {nil, [7]int{200, 200, 200, 200, 200, 401, 401}},
	"GET /orgs":                       {nil, [7]int{200, 200, 200, 200, 200, 401, 401}},
	"POST /orgs": {func(matrixFixture) any { return map[string]any{"name": uniqueName("Matrix Created")} },
		[7]int{201, 201, 201, 201, 201, 401, 401}},
	"GET /orgs/{organisation_id}": {nil, [7]int{200, 200, 200, 200, 403, 401, 401}},
	"PATCH /orgs/{organisation_id}": {func(matrixFixture) any { return map[string]any{"name": "Renamed"} },
		[7]int{200, 200, 403, 403, 403, 401, 401}},
	"GET /orgs/{organisation_id}/members": {nil, [7]int{200, 200, 403, 403, 403, 401, 401}},
	"POST /orgs/{organisation_id}/members": {func(f matrixFixture) any { return map[string]any{"user_id": f.newcomer.ID} },
		[7]int{201, 201, 403, 403, 403, 401, 401}},
	"PATCH /orgs/{organisation_id}/members/{user_id}": {func(matrixFixture) any { return map[string]any{"role": "viewer"} },
		[7]int{200, 200, 403, 403, 403, 401, 401}},
	"DELETE /orgs/{organisation_id}/members/{user_id}": {nil, [7]int{204, 204, 403, 403, 403, 401, 401}},

	"GET /orgs/{organisation_id}/projects": {nil, [7]int{200, 200, 200, 200, 403, 401, 200}},
	"POST /orgs/{organisation_id}/projects": {func(matrixFixture) any { return map[string]any{"name": "Matrix Project"} },
		[7]int{201, 201, 201, 403, 403, 401, 201}},
	"GET /orgs/{organisation_id}/projects/{project_id}": {nil, [7]int{200, 200, 200, 200, 403, 401, 200}},
	"PATCH /orgs/{organisation_id}/projects/{project_id}": {func(matrixFixture) any { return map[string]any{"name": "Renamed"} },
		[7]int{200, 200, 200, 403, 403, 401, 200}},
	"DELETE /orgs/{organisation_id}/projects/{project_id}": {nil, [7]int{204, 204, 204, 403, 403, 401, 204}},

	"GET /orgs/{organisation_id}/api-keys": {nil, [7]int{200, 200, 403, 403, 403, 401, 401}},
	"POST /orgs/{organisation_id}/api-keys": {func(matrixFixture) any { return map[string]any{"name": "Matrix Key"} },
		[7]int{201, 201, 403, 403, 403, 401, 401}},
	"DELETE /orgs/{organisation_id}/api-keys/{api_key_id}": {nil, [7]int{200, 200, 403, 403, 403, 401, 401}},

	"GET /orgs/{organisation_id}/audit-events":            {nil, [7]int{200, 200, 403, 403, 403, 401, 401}},
	"GET /orgs/{organisation_id}/audit-events/head":       {nil, [7]int{200, 200, 403, 403, 403, 401, 401}},
	"GET /orgs/{organisation_id}/audit-events/export":     {nil, [7]int{200, 200, 403, 403, 403, 401, 401}},
	"GET /orgs/{organisation_id}/audit-events/checkpoint": {nil, [7]int{200, 200, 403, 403, 403, 401, 401}},
	// The matrix sends no query, so a caller who gets past authorization
	// meets the missing sizes: 422 (ledger_test.go covers the 200s).
	"GET /orgs/{organisation_id}/audit-events/proof/inclusion":   {nil, [7]int{422, 422, 403, 403, 403, 401, 401}},
	"GET /orgs/{organisation_id}/audit-events/proof/consistency": {nil, [7]int{422, 422, 403, 403, 403, 401, 401}},
}

// selfRemoval is the expected status of DELETE
// /orgs/{organisation_id}/members/{user_id} with the caller's own user ID:
// every member may leave, except the last owner (the matrix organisation has
// one); the user-only route refuses API keys, and a non-member has nothing
// to leave.
var selfRemoval = [7]int{409, 204, 204, 204, 403, 401, 401}

const (
	selfRemovalRoute = "DELETE /orgs/{organisation_id}/members/{user_id}"
	selfSuffix       = " (own user_id)"
)

// publicRoutes need no credentials; every other route must be in roleMatrix.
var publicRoutes = []string{
	"GET /healthz", "GET /readyz", "GET /metrics", "POST /auth/register", "POST /auth/login",
	"GET /ledger/verifier-key",
}

// TestRouteTableIsCovered denies by default: a route that is neither public
// nor in the role matrix fails the suite until someone decides who may call it.
func TestRouteTableIsCovered(t *testing.T) {
	t.Parallel()
	e := setup(t)
	served := e.server.Routes()
	for _, route := range served {
		if _, ok := roleMatrix[route]; !ok && !slices.Contains(publicRoutes, route) {
			t.Errorf("route %q has no role matrix entry and is not listed as public", route)
		}
	}
	for route := range roleMatrix {
		if !slices.Contains(served, route) {
			t.Errorf("role matrix entry %q is not a route of the router", route)
		}
	}
	for _, route := range publicRoutes {
		if !slices.Contains(served, route) {
			t.Errorf("public route %q is not a route of the router", route)
		}
	}
}

func TestPublicRoutesNeedNoCredentials(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const email = "public@example.com"
	tests := []struct {
		route  string
		body   any
		status int
	}{
		{"GET /healthz", nil, 200},
		{"GET /readyz", nil, 200},
		{"GET /metrics", nil, 200},
		{"POST /auth/register", registerBody(email), 201},
		{"POST /auth/login", map[string]any{"email": email, "password": testPassword}, 200},
		{"GET /ledger/verifier-key", nil, 200},
	}
	if len(tests) != len(publicRoutes) {
		t.Fatalf("%d public routes checked, want all %d", len(tests), len(publicRoutes))
	}
	for _, tt := range tests { // in order: login needs the registration
		method, path, _ := strings.Cut(tt.route, " ")
		want(t, e.do(req{method: method, path: path, body: tt.body}), tt.status)
	}
}

func TestRoleMatrix(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	target, newcomer := e.register("Target"), e.register("Newcomer")
	routes := slices.Sorted(maps.Keys(roleMatrix))
	routes = append(routes, selfRemovalRoute+selfSuffix)
	for _, route := range routes {
		entry := roleMatrix[strings.TrimSuffix(route, selfSuffix)]
		t.Run(route, func(t *testing.T) {
			t.Parallel()
			for i, principal := range principals {
				t.Run(principal, func(t *testing.T) {
					t.Parallel()
					e := e.forT(t)
					// A fresh organisation per case: a removal or rename by one
					// principal must not change what the next one sees.
					org := e.teamOrg(tm)
					e.addMember(tm.owner, org, target, "member")
					project := e.createProject(tm.owner.Token, org, map[string]any{"name": "Matrix Target"})
					f := matrixFixture{org: org, target: target, newcomer: newcomer,
						project: project["id"].(string), apiKey: e.createAPIKey(tm.owner, org).ID}
					tokens := map[string]string{"owner": tm.owner.Token, "admin": tm.admin.Token, "member": tm.member.Token,
						"viewer": tm.viewer.Token, "non-member": tm.outsider.Token, "anonymous": "",
						"api-key": e.createAPIKey(tm.owner, org).Raw}

					method, template, _ := strings.Cut(route, " ")
					userID := target.ID
					status := entry.status[i]
					if self, ok := strings.CutSuffix(route, selfSuffix); ok {
						method, template, _ = strings.Cut(self, " ")
						if id := map[string]string{"owner": tm.owner.ID, "admin": tm.admin.ID, "member": tm.member.ID,
							"viewer": tm.viewer.ID, "non-member": tm.outsider.ID}[principal]; id != "" {
							userID = id
						}
						status = selfRemoval[i]
					}
					path := strings.NewReplacer("{organisation_id}", org, "{user_id}", userID,
						"{project_id}", f.project, "{api_key_id}", f.apiKey).Replace(template)
					if strings.Contains(path, "{") {
						t.Fatalf("path %s still has a parameter the matrix does not fill in", path)
					}
					var body any
					if entry.body != nil {
						body = entry.body(f)
					}
					r := e.do(req{method: method, path: path, token: tokens[principal], body: body})

					switch {
					case status == http.StatusUnauthorized && principal == "api-key":
						// An API key is no access token: user-only routes refuse it.
						wantProblem(t, r, status, saasapi.MsgInvalidToken)
					case status == http.StatusUnauthorized:
						wantProblem(t, r, status, saasapi.MsgAuthRequired)
					case status == http.StatusForbidden && principal == "non-member":
						wantProblem(t, r, status, saasapi.MsgOrgAccessDenied)
					case status == http.StatusForbidden:
						wantProblem(t, r, status, saasapi.MsgInsufficientPerms)
					case status == http.StatusConflict:
						wantProblem(t, r, status, saasapi.MsgLastOwner)
					default:
						want(t, r, status)
					}
				})
			}
		})
	}
}
