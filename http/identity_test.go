package http_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/saasapi/saasapi"
)

// TestOneIdentityPerEmail: an address typed with a combining accent and
// one typed precomposed are one account, whichever registered first, and
// either signs in.
func TestOneIdentityPerEmail(t *testing.T) {
	t.Parallel()
	e := setup(t)
	suffix := "-" + strings.ToLower(saasapi.NewID().String()) + "@example.com"
	decomposed, composed := "rene\u0301"+suffix, "ren\u00e9"+suffix
	r := e.do(req{method: "POST", path: "/auth/register", body: map[string]any{
		"email": decomposed, "password": testPassword, "display_name": "Rene\u0301",
	}})
	want(t, r, http.StatusCreated)
	if got := r.obj("user"); got["email"] != composed || got["display_name"] != "Ren\u00e9" {
		t.Fatalf("stored email %q and display name %q, want the NFC forms %q and %q",
			got["email"], got["display_name"], composed, "Ren\u00e9")
	}
	wantProblem(t, e.do(req{method: "POST", path: "/auth/register", body: map[string]any{
		"email": composed, "password": testPassword, "display_name": "Other",
	}}), http.StatusConflict, saasapi.MsgEmailTaken)
	wantProblem(t, e.do(req{method: "POST", path: "/auth/register", body: map[string]any{
		"email": strings.ToUpper(decomposed), "password": testPassword, "display_name": "Other",
	}}), http.StatusConflict, saasapi.MsgEmailTaken)
	if n := e.countEvents(saasapi.EventUserRegistered); n != 1 {
		t.Fatalf("%d registrations recorded, want 1", n)
	}
	for _, email := range []string{decomposed, composed, " REN\u00c9" + strings.ToUpper(suffix)} {
		r := e.do(req{method: "POST", path: "/auth/login", body: map[string]any{"email": email, "password": testPassword}})
		want(t, r, http.StatusOK)
	}
}

// TestNamesRefuseInvisibleCharacters: zero-width and bidi characters in
// an identity or a name are a 422 naming the field, and change nothing.
func TestNamesRefuseInvisibleCharacters(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner := e.register("Owner")
	org := e.createOrg(owner, uniqueName("Visible"))
	project, _ := e.createProject(owner.Token, org, map[string]any{"name": "P"})["id"].(string)
	email := func(local string) string {
		return local + "-" + strings.ToLower(saasapi.NewID().String()) + "@example.com"
	}
	for _, ch := range []struct{ name, r string }{{"zero width space", "\u200b"}, {"right-to-left override", "\u202e"}} {
		cases := []struct {
			name, method, path, field string
			body                      map[string]any
		}{
			{"email", "POST", "/auth/register", "email",
				map[string]any{"email": email("ali" + ch.r + "ce"), "password": testPassword, "display_name": "Alice"}},
			{"display name", "POST", "/auth/register", "display_name",
				map[string]any{"email": email("alice"), "password": testPassword, "display_name": "Ali" + ch.r + "ce"}},
			{"organisation name", "POST", "/orgs", "name", map[string]any{"name": "Acme" + ch.r}},
			{"organisation rename", "PATCH", "/orgs/" + org, "name", map[string]any{"name": ch.r + "Acme"}},
			{"project name", "POST", "/orgs/" + org + "/projects", "name", map[string]any{"name": "P" + ch.r}},
			{"project rename", "PATCH", "/orgs/" + org + "/projects/" + project, "name", map[string]any{"name": "P" + ch.r}},
			{"API key name", "POST", "/orgs/" + org + "/api-keys", "name", map[string]any{"name": "K" + ch.r}},
		}
		for _, tc := range cases {
			t.Run(ch.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				e.forT(t).wantRefused(req{method: tc.method, path: tc.path, token: owner.Token, body: tc.body}, tc.field)
			})
		}
	}
}

// TestTokenClaimsOfTheWrongJSONType: a correctly signed token whose exp,
// iat or nbf is a JSON string (which golang-jwt's NumericDate would read)
// is an invalid token.
func TestTokenClaimsOfTheWrongJSONType(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.register("Claims")
	org := e.createOrg(u, uniqueName("Claims"))
	now := time.Now()
	token := func(edit func(jwt.MapClaims)) string {
		c := jwt.MapClaims{"sub": u.ID, "iss": testIssuer, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "token_type": "access"}
		edit(c)
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// The forged tokens are otherwise good: this one is accepted.
	want(t, e.do(req{method: "GET", path: "/me", token: token(func(jwt.MapClaims) {})}), http.StatusOK)
	asString := func(claim string) func(jwt.MapClaims) {
		return func(c jwt.MapClaims) {
			v, ok := c[claim].(int64)
			if !ok {
				v = now.Unix()
			}
			c[claim] = strconv.FormatInt(v, 10)
		}
	}
	for name, edit := range map[string]func(jwt.MapClaims){
		"exp a string":  asString("exp"),
		"iat a string":  asString("iat"),
		"nbf a string":  asString("nbf"),
		"exp a boolean": func(c jwt.MapClaims) { c["exp"] = true },
		"sub a number":  func(c jwt.MapClaims) { c["sub"] = 7 },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := e.forT(t)
			tok := token(edit)
			wantProblem(t, e.do(req{method: "GET", path: "/me", token: tok}), http.StatusUnauthorized, saasapi.MsgInvalidToken)
			wantProblem(t, e.do(req{method: "GET", path: "/orgs/" + org + "/projects", token: tok}),
				http.StatusUnauthorized, saasapi.MsgInvalidTokenOrKey)
		})
	}
}
