package http_test

import "testing"

// TestNullForDefaultedFieldsIs422: fields that have a default may be
// omitted, but an explicit null is invalid input, not "use the default".
func TestNullForDefaultedFieldsIs422(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner, other := e.register("Owner"), e.register("Other")
	org := e.createOrg(owner, uniqueName("Nulls"))
	project := e.createProject(owner.Token, org, map[string]any{"name": "P"})["id"].(string)
	cases := []struct {
		name, method, path, field string
		body                      map[string]any
	}{
		{"member role", "POST", "/orgs/" + org + "/members", "role", map[string]any{"user_id": other.ID, "role": nil}},
		{"project status on create", "POST", "/orgs/" + org + "/projects", "status", map[string]any{"name": "Q", "status": nil}},
		{"project name on update", "PATCH", "/orgs/" + org + "/projects/" + project, "name", map[string]any{"name": nil}},
		{"project status on update", "PATCH", "/orgs/" + org + "/projects/" + project, "status", map[string]any{"status": nil}},
		{"organisation name on update", "PATCH", "/orgs/" + org, "name", map[string]any{"name": nil}},
		{"organisation slug on update", "PATCH", "/orgs/" + org, "slug", map[string]any{"slug": nil}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := e.forT(t)
			before := e.count("events")
			wantInvalid(t, e.do(req{method: tc.method, path: tc.path, token: owner.Token, body: tc.body}), tc.field)
			if n := e.count("events"); n != before {
				t.Fatalf("a rejected request recorded %d events", n-before)
			}
		})
	}
}
