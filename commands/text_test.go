package commands

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/projections"
)

// invisible are names that look like another name, or hide part of
// themselves: each holds one control or format character.
var invisible = map[string]string{
	"zero width space": "Acme\u200bCorp",
	"bidi override":    "Acme\u202eproC",
	"line break":       "Acme\nCorp",
}

// wantField fails unless err is a validation error naming exactly field.
func wantField(t *testing.T, what string, err error, field string) {
	t.Helper()
	var e *saasapi.Error
	if !errors.As(err, &e) || e.Code != saasapi.EINVALID || len(e.Fields) != 1 || e.Fields[0].Field != field {
		t.Errorf("%s: got %v, want one invalid field %q", what, err, field)
	}
}

func TestNamesRefuseControlAndFormatCharacters(t *testing.T) {
	t.Parallel()
	good := RegisterInput{Email: "alice@example.com", Password: "correct horse battery", DisplayName: "Alice"}
	for what, name := range invisible {
		reg := good
		reg.DisplayName = name
		_, err := validateRegistration(reg, 12)
		wantField(t, "display name with "+what, err, "display_name")

		_, err = decideCreateOrganisation(CreateOrganisationInput{Name: name})
		wantField(t, "organisation name with "+what, err, "name")
		_, err = decideUpdateOrganisation(projections.Organisation{Name: "Acme"}, UpdateOrganisationInput{Name: &name})
		wantField(t, "organisation rename with "+what, err, "name")

		_, err = decideCreateProject(CreateProjectInput{Name: name})
		wantField(t, "project name with "+what, err, "name")
		_, err = decideUpdateProject(projections.Project{Name: "P"}, UpdateProjectInput{Name: &name})
		wantField(t, "project rename with "+what, err, "name")

		_, err = (&Service{}).CreateAPIKey(t.Context(), Meta{}, saasapi.NewID(), name, nil, nil)
		wantField(t, "API key name with "+what, err, "name")
	}
	for _, email := range []string{"ali\u200bce@example.com", "alice@exam\u202eple.com", "alice\u00ad@example.com"} {
		reg := good
		reg.Email = email
		_, err := validateRegistration(reg, 12)
		wantField(t, "email "+email, err, "email")
		if _, ok := normaliseEmail(email); ok {
			t.Errorf("sign-in normalised %q instead of refusing it", email)
		}
	}
}

func TestEmailAndDisplayNameAreNFC(t *testing.T) {
	t.Parallel()
	decomposed := RegisterInput{Email: "Rene\u0301@Example.com", Password: "correct horse battery", DisplayName: "Rene\u0301"}
	got, err := validateRegistration(decomposed, 12)
	if err != nil {
		t.Fatal(err)
	}
	if got.Email != "ren\u00e9@example.com" || got.DisplayName != "Ren\u00e9" {
		t.Fatalf("normalised to %q / %q, want the composed ren\u00e9@example.com / Ren\u00e9", got.Email, got.DisplayName)
	}
	if e, ok := normaliseEmail("rene\u0301@example.com"); !ok || e != got.Email {
		t.Fatalf("sign-in normalises the decomposed form to %q, %v; want %q", e, ok, got.Email)
	}
}

func TestDisplayNameLengthIsThatOfItsNFC(t *testing.T) {
	t.Parallel()
	// U+0958 is excluded from composition: NFC spells it as two code
	// points, so 120 of them are 240 once normalised.
	in := RegisterInput{Email: "a@example.com", Password: "correct horse battery", DisplayName: strings.Repeat("\u0958", 120)}
	_, err := validateRegistration(in, 12)
	wantField(t, "a display name that NFC lengthens past 120", err, "display_name")
	in.DisplayName = strings.Repeat("\u0958", 60)
	if got, err := validateRegistration(in, 12); err != nil || utf8.RuneCountInString(got.DisplayName) != 120 {
		t.Fatalf("60 x U+0958: %v, %d code points; want accepted as 120", err, utf8.RuneCountInString(got.DisplayName))
	}
}
