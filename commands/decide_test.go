package commands

import (
	"errors"
	"strings"
	"testing"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/projections"
)

func code(err error) string {
	if err == nil {
		return ""
	}
	return saasapi.ErrorCode(err) + ": " + saasapi.ErrorMessage(err)
}

func TestDeriveSlug(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"Acme Corp":                    "acme-corp",
		"  --Hello,   World!!-- ":      "hello-world",
		"AB":                           "ab-org",
		"x":                            "x-org",
		"":                             "org",
		"!!!":                          "org",
		"Ünïcödé Ltd":                  "n-c-d-ltd",
		strings.Repeat("ab-", 40):      strings.Repeat("ab-", 26) + "ab",
		strings.Repeat("a", 79) + " b": strings.Repeat("a", 79),
	}
	for name, want := range cases {
		if got := DeriveSlug(name); got != want {
			t.Errorf("DeriveSlug(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestValidateRegistration(t *testing.T) {
	t.Parallel()
	good := RegisterInput{Email: "  Alice@Example.COM ", Password: "correct horse battery", DisplayName: "Alice"}
	got, err := validateRegistration(good, 12)
	if err != nil || got.Email != "alice@example.com" {
		t.Fatalf("valid registration: email %q, err %v; want alice@example.com, nil", got.Email, err)
	}
	bad := []struct {
		name  string
		in    RegisterInput
		field string
	}{
		{"no at", RegisterInput{Email: "alice.example.com", Password: good.Password, DisplayName: "A"}, "email"},
		{"no dot in domain", RegisterInput{Email: "alice@localhost", Password: good.Password, DisplayName: "A"}, "email"},
		{"display name form", RegisterInput{Email: "Alice <alice@example.com>", Password: good.Password, DisplayName: "A"}, "email"},
		{"short password", RegisterInput{Email: "a@example.com", Password: "short", DisplayName: "A"}, "password"},
		{"long password", RegisterInput{Email: "a@example.com", Password: strings.Repeat("p", 257), DisplayName: "A"}, "password"},
		{"blank password", RegisterInput{Email: "a@example.com", Password: strings.Repeat(" ", 20), DisplayName: "A"}, "password"},
		{"empty display name", RegisterInput{Email: "a@example.com", Password: good.Password, DisplayName: ""}, "display_name"},
		{"long display name", RegisterInput{Email: "a@example.com", Password: good.Password, DisplayName: strings.Repeat("d", 121)}, "display_name"},
	}
	for _, tc := range bad {
		_, err := validateRegistration(tc.in, 12)
		var e *saasapi.Error
		if err == nil || !errors.As(err, &e) || e.Code != saasapi.EINVALID || len(e.Fields) != 1 || e.Fields[0].Field != tc.field {
			t.Errorf("%s: got %v, want one invalid field %q", tc.name, err, tc.field)
		}
	}
}

func TestDecideUpdateOrganisation(t *testing.T) {
	t.Parallel()
	cur := projections.Organisation{Name: "Acme", Slug: "acme"}
	str := func(s string) *string { return &s }

	if _, err := decideUpdateOrganisation(cur, UpdateOrganisationInput{}); code(err) != "invalid: "+saasapi.MsgOrgFieldRequired {
		t.Errorf("empty update: got %q", code(err))
	}
	if _, err := decideUpdateOrganisation(cur, UpdateOrganisationInput{Slug: str("Bad Slug")}); saasapi.ErrorCode(err) != saasapi.EINVALID {
		t.Errorf("bad slug: got %v", err)
	}
	upd, err := decideUpdateOrganisation(cur, UpdateOrganisationInput{Name: str("Acme"), Slug: str("acme")})
	if err != nil || upd != nil {
		t.Errorf("same values: got %+v, %v; want no event", upd, err)
	}
	upd, err = decideUpdateOrganisation(cur, UpdateOrganisationInput{Name: str("Acme Ltd"), Slug: str("acme")})
	if err != nil || upd == nil || strings.Join(upd.ChangedFields, ",") != "name" || *upd.Name != "Acme Ltd" || upd.Slug != nil {
		t.Errorf("rename: got %+v, %v; want changed_fields [name]", upd, err)
	}
}

func TestDecideAddMember(t *testing.T) {
	t.Parallel()
	cases := []struct {
		actor, role    saasapi.Role
		exists, member bool
		want           string
	}{
		{saasapi.RoleOwner, saasapi.RoleOwner, true, false, ""},
		{saasapi.RoleAdmin, saasapi.RoleOwner, true, false, "forbidden: " + saasapi.MsgInsufficientPerms},
		// The owner check comes before the user lookup, as the contract orders.
		{saasapi.RoleAdmin, saasapi.RoleOwner, false, false, "forbidden: " + saasapi.MsgInsufficientPerms},
		{saasapi.RoleAdmin, saasapi.RoleMember, false, false, "not_found: " + saasapi.MsgUserNotFound},
		{saasapi.RoleAdmin, saasapi.RoleMember, true, true, "conflict: " + saasapi.MsgAlreadyMember},
		{saasapi.RoleAdmin, saasapi.RoleAdmin, true, false, ""},
	}
	for _, tc := range cases {
		if got := code(decideAddMember(tc.actor, tc.role, tc.exists, tc.member)); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc, got, tc.want)
		}
	}
}

func TestDecideChangeRole(t *testing.T) {
	t.Parallel()
	owner := projections.Membership{UserID: "U1", Role: saasapi.RoleOwner}
	member := projections.Membership{UserID: "U2", Role: saasapi.RoleMember}
	cases := []struct {
		name    string
		actor   saasapi.Role
		current projections.Membership
		newRole saasapi.Role
		owners  int
		want    string
		event   bool
	}{
		{"owner demotes last owner", saasapi.RoleOwner, owner, saasapi.RoleAdmin, 1, "conflict: " + saasapi.MsgLastOwner, false},
		{"owner demotes one of two owners", saasapi.RoleOwner, owner, saasapi.RoleAdmin, 2, "", true},
		{"admin demotes owner", saasapi.RoleAdmin, owner, saasapi.RoleMember, 2, "forbidden: " + saasapi.MsgInsufficientPerms, false},
		{"admin grants owner", saasapi.RoleAdmin, member, saasapi.RoleOwner, 1, "forbidden: " + saasapi.MsgInsufficientPerms, false},
		{"admin promotes member to admin", saasapi.RoleAdmin, member, saasapi.RoleAdmin, 1, "", true},
		{"owner grants owner", saasapi.RoleOwner, member, saasapi.RoleOwner, 1, "", true},
		{"same role is a no-op", saasapi.RoleOwner, member, saasapi.RoleMember, 1, "", false},
		{"last owner keeps owner", saasapi.RoleOwner, owner, saasapi.RoleOwner, 1, "", false},
	}
	for _, tc := range cases {
		ev, err := decideChangeRole(tc.actor, tc.current, tc.newRole, tc.owners)
		if code(err) != tc.want || (ev != nil) != tc.event {
			t.Errorf("%s: got event %+v err %q; want event %v err %q", tc.name, ev, code(err), tc.event, tc.want)
		}
		if ev != nil && (ev.OldRole != tc.current.Role || ev.NewRole != tc.newRole || ev.UserID != tc.current.UserID) {
			t.Errorf("%s: payload %+v does not describe the change", tc.name, ev)
		}
	}
}

func TestDecideRemoveMember(t *testing.T) {
	t.Parallel()
	owner := projections.Membership{UserID: "U1", Role: saasapi.RoleOwner}
	viewer := projections.Membership{UserID: "U2", Role: saasapi.RoleViewer}
	cases := []struct {
		name    string
		actor   saasapi.Role
		current projections.Membership
		owners  int
		self    bool
		want    string
	}{
		{"last owner", saasapi.RoleOwner, owner, 1, false, "conflict: " + saasapi.MsgLastOwner},
		{"one of two owners", saasapi.RoleOwner, owner, 2, false, ""},
		{"admin removes owner", saasapi.RoleAdmin, owner, 2, false, "forbidden: " + saasapi.MsgInsufficientPerms},
		{"admin removes viewer", saasapi.RoleAdmin, viewer, 1, false, ""},
		{"viewer leaves", saasapi.RoleViewer, viewer, 1, true, ""},
		{"owner of two leaves", saasapi.RoleOwner, owner, 2, true, ""},
		{"last owner leaves", saasapi.RoleOwner, owner, 1, true, "conflict: " + saasapi.MsgLastOwner},
	}
	for _, tc := range cases {
		removed, err := decideRemoveMember(tc.actor, tc.current, tc.owners, tc.self)
		if code(err) != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, code(err), tc.want)
		}
		if err == nil && (removed.UserID != tc.current.UserID || removed.Role != tc.current.Role) {
			t.Errorf("%s: payload %+v", tc.name, removed)
		}
	}
}

func TestDecideCreateProject(t *testing.T) {
	t.Parallel()
	desc := "about"
	got, err := decideCreateProject(CreateProjectInput{Name: "Apollo", Description: &desc})
	if err != nil || got.Status != "active" || got.ProjectName != "Apollo" || got.Description != &desc {
		t.Fatalf("defaults: got %+v, %v; want status active", got, err)
	}
	long, deleted := strings.Repeat("d", 2001), "deleted"
	for name, in := range map[string]CreateProjectInput{
		"empty name":       {Name: ""},
		"long name":        {Name: strings.Repeat("n", 161)},
		"long description": {Name: "x", Description: &long},
		"unknown status":   {Name: "x", Status: &deleted},
	} {
		if _, err := decideCreateProject(in); saasapi.ErrorCode(err) != saasapi.EINVALID {
			t.Errorf("%s: got %v, want a validation error", name, err)
		}
	}
}

func TestDecideUpdateProject(t *testing.T) {
	t.Parallel()
	desc := "old"
	cur := projections.Project{Name: "Apollo", Status: "active", Description: &desc}
	str := func(s string) *string { return &s }

	if _, err := decideUpdateProject(cur, UpdateProjectInput{}); code(err) != "invalid: "+saasapi.MsgProjectFieldRequired {
		t.Errorf("empty update: got %q", code(err))
	}
	// An explicit null clears the description: a change.
	upd, err := decideUpdateProject(cur, UpdateProjectInput{Description: saasapi.OptionalString{Set: true}})
	if err != nil || upd == nil || strings.Join(upd.ChangedFields, ",") != "description" || !upd.Description.Set || upd.Description.Value != nil {
		t.Errorf("clear description: got %+v, %v", upd, err)
	}
	upd, err = decideUpdateProject(cur, UpdateProjectInput{Name: str("Apollo"), Status: str("active"),
		Description: saasapi.OptionalString{Set: true, Value: str("old")}})
	if err != nil || upd != nil {
		t.Errorf("same values: got %+v, %v; want no event", upd, err)
	}
	upd, err = decideUpdateProject(cur, UpdateProjectInput{Status: str("archived"), Name: str("Gemini")})
	if err != nil || upd == nil || strings.Join(upd.ChangedFields, ",") != "name,status" {
		t.Errorf("rename and archive: got %+v, %v", upd, err)
	}
	if _, err := decideUpdateProject(cur, UpdateProjectInput{Status: str("gone")}); saasapi.ErrorCode(err) != saasapi.EINVALID {
		t.Errorf("bad status: got %v", err)
	}
}
