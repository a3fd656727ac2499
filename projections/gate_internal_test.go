package projections

import (
	"strings"
	"testing"

	"github.com/saasapi/saasapi"
)

// The roles of the hottest reads' gate are written into the statement's
// text, so only names that cannot change the SQL may get there.
func TestRoleArrayWritesOnlySafeNames(t *testing.T) {
	t.Parallel()
	if got, want := roleArray([]string{"owner", "admin"}), "ARRAY['owner','admin']::text[]"; got != want {
		t.Errorf("roleArray = %s, want %s", got, want)
	}
	if got, want := roleArray(nil), "ARRAY[]::text[]"; got != want {
		t.Errorf("roleArray(nil) = %s, want %s", got, want)
	}
	for _, bad := range []string{"", "o'wner", "Owner", "owner,admin"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("roleArray(%q) did not panic", bad)
				}
			}()
			roleArray([]string{bad})
		}()
	}
}

// One statement text per shape: the text is built once and then reused,
// and it differs where the gate differs (principal type, permission).
func TestGatedOneSQLIsBuiltOncePerShape(t *testing.T) {
	t.Parallel()
	user := NewGate(saasapi.UserPrincipal("01J00000000000000000000001"), "01J00000000000000000000002", saasapi.PermReadProjects)
	shape := gatedOneShape{perm: user.Perm, cols: "t.id", id: "id", on: "true", from: "(SELECT 1 AS id)"}
	a, b := gatedOneSQL(shape, user), gatedOneSQL(shape, user)
	if a != b || !strings.Contains(a, roleArray(user.holders())) {
		t.Errorf("statement not reused or without the roles of %s:\n%s\n%s", user.Perm, a, b)
	}
	key := shape
	key.apiKey = true
	apiKey := NewGate(saasapi.Principal{Type: saasapi.PrincipalAPIKey, APIKeyID: "01J00000000000000000000003",
		OrganisationID: "01J00000000000000000000002"}, user.OrgID, saasapi.PermReadProjects)
	if c := gatedOneSQL(key, apiKey); c == a || !strings.Contains(c, "api_keys") {
		t.Errorf("an API key's statement is the user's or does not check the key:\n%s", c)
	}
}
