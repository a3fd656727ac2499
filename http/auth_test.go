package http_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
)

// registerBody is a valid registration body for email.
func registerBody(email string) map[string]any {
	return map[string]any{"email": email, "password": testPassword, "display_name": "Some One"}
}

// wantUser fails the test unless u is the public shape of a user.
func wantUser(t *testing.T, u map[string]any, email, displayName string) {
	t.Helper()
	wantKeys(t, "user", u, "id", "email", "display_name", "is_active", "created_at", "updated_at")
	wantULID(t, "user.id", u["id"])
	if u["email"] != email || u["display_name"] != displayName || u["is_active"] != true {
		t.Fatalf("user = %v, want email %q, display_name %q, is_active true", u, email, displayName)
	}
	created := wantTimestamp(t, "user.created_at", u["created_at"])
	updated := wantTimestamp(t, "user.updated_at", u["updated_at"])
	if updated.Before(created) {
		t.Fatalf("user.updated_at %v is before created_at %v", updated, created)
	}
}

func TestRegister(t *testing.T) {
	t.Parallel()

	t.Run("CreatesUserWithTrimmedLowerCasedEmail", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		r := e.do(req{method: "POST", path: "/auth/register", body: map[string]any{
			"email": "  Alice.Smith@Example.COM ", "password": testPassword, "display_name": "Alice Smith",
		}})
		want(t, r, http.StatusCreated)
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type = %q, want application/json", ct)
		}
		wantKeys(t, "register response", r.Body, "user")
		wantUser(t, r.obj("user"), "alice.smith@example.com", "Alice Smith")
		if got := r.obj("user")["created_at"]; got != r.obj("user")["updated_at"] {
			t.Fatalf("a new user's created_at %v and updated_at %v differ, want them equal", got, r.obj("user")["updated_at"])
		}
		if n := e.count("users"); n != 1 {
			t.Fatalf("users has %d rows after one registration, want 1", n)
		}
	})

	t.Run("DuplicateEmailIsConflict", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		want(t, e.do(req{method: "POST", path: "/auth/register", body: registerBody("bob@example.com")}), http.StatusCreated)
		for _, email := range []string{"bob@example.com", "BOB@Example.com", "  bob@EXAMPLE.COM  "} {
			r := e.do(req{method: "POST", path: "/auth/register", body: registerBody(email)})
			wantProblem(t, r, http.StatusConflict, saasapi.MsgEmailTaken)
		}
		if n := e.count("users"); n != 1 {
			t.Fatalf("users has %d rows after duplicate registrations, want 1", n)
		}
	})

	t.Run("RejectsInvalidInput", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		tests := []struct {
			name, field string
			edit        func(body map[string]any)
		}{
			{"EmailWithoutAt", "email", func(b map[string]any) { b["email"] = "not-an-email" }},
			{"EmailWithoutDottedDomain", "email", func(b map[string]any) { b["email"] = "a@localhost" }},
			{"EmailWithDisplayName", "email", func(b map[string]any) { b["email"] = "Alice <a@example.com>" }},
			{"EmailEmpty", "email", func(b map[string]any) { b["email"] = "" }},
			{"PasswordShorterThan12", "password", func(b map[string]any) { b["password"] = "elevenchars" }},
			{"PasswordLongerThan256", "password", func(b map[string]any) { b["password"] = strings.Repeat("p", 257) }},
			{"PasswordOnlySpaces", "password", func(b map[string]any) { b["password"] = strings.Repeat(" ", 16) }},
			{"PasswordOnlyWhitespace", "password", func(b map[string]any) { b["password"] = " \t\n \t\n \t\n \t\n" }},
			{"DisplayNameEmpty", "display_name", func(b map[string]any) { b["display_name"] = "" }},
			{"DisplayName121Chars", "display_name", func(b map[string]any) { b["display_name"] = strings.Repeat("d", 121) }},
			{"EmailMissing", "email", func(b map[string]any) { delete(b, "email") }},
			{"PasswordMissing", "password", func(b map[string]any) { delete(b, "password") }},
			{"DisplayNameMissing", "display_name", func(b map[string]any) { delete(b, "display_name") }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				body := registerBody(strings.ToLower(tt.name) + "@example.com")
				tt.edit(body)
				wantInvalid(t, e.forT(t).do(req{method: "POST", path: "/auth/register", body: body}), tt.field)
			})
		}
		t.Cleanup(func() {
			if n := e.count("users"); n != 0 {
				t.Errorf("users has %d rows after rejected registrations, want 0", n)
			}
		})
	})

	t.Run("AcceptsBoundaryLengths", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		tests := []struct {
			name string
			edit func(body map[string]any)
		}{
			{"Password12Chars", func(b map[string]any) { b["password"] = "twelve-chars" }},
			{"Password256Chars", func(b map[string]any) { b["password"] = strings.Repeat("p", 256) }},
			{"Password12MultiByteChars", func(b map[string]any) { b["password"] = strings.Repeat("é", 12) }},
			{"DisplayName1Char", func(b map[string]any) { b["display_name"] = "d" }},
			{"DisplayName120Chars", func(b map[string]any) { b["display_name"] = strings.Repeat("d", 120) }},
			{"DisplayName120MultiByteChars", func(b map[string]any) { b["display_name"] = strings.Repeat("ü", 120) }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				email := strings.ToLower(tt.name) + "@example.com"
				body := registerBody(email)
				tt.edit(body)
				r := e.forT(t).do(req{method: "POST", path: "/auth/register", body: body})
				want(t, r, http.StatusCreated)
				wantUser(t, r.obj("user"), email, body["display_name"].(string))
				r = e.forT(t).do(req{method: "POST", path: "/auth/login", body: map[string]any{"email": email, "password": body["password"]}})
				want(t, r, http.StatusOK)
			})
		}
	})
}

// claimsOf parses a token the service issued with the test secret.
func claimsOf(t *testing.T, token string) jwt.MapClaims {
	t.Helper()
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return []byte(testSecret), nil },
		jwt.WithValidMethods([]string{"HS256"}))
	if err != nil {
		t.Fatalf("access token %q does not verify with the test secret: %v", token, err)
	}
	return claims
}

func TestLogin(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const email = "carol@example.com"
	want(t, e.do(req{method: "POST", path: "/auth/register", body: registerBody(email)}), http.StatusCreated)

	t.Run("ReturnsBearerToken", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		r := e.do(req{method: "POST", path: "/auth/login", body: map[string]any{"email": email, "password": testPassword}})
		want(t, r, http.StatusOK)
		wantKeys(t, "login response", r.Body, "access_token", "token_type", "expires_in_seconds")
		if r.Body["token_type"] != "bearer" || r.Body["expires_in_seconds"] != float64(900) {
			t.Fatalf("login response = %s, want token_type bearer and expires_in_seconds 900", r.Raw)
		}
		claims := claimsOf(t, r.str("access_token"))
		me := e.do(req{method: "GET", path: "/me", token: r.str("access_token")})
		want(t, me, http.StatusOK)
		if claims["sub"] != me.obj("user")["id"] || claims["iss"] != testIssuer || claims["token_type"] != "access" {
			t.Fatalf("token claims = %v, want sub %v, iss %q, token_type access", claims, me.obj("user")["id"], testIssuer)
		}
		if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 900 {
			t.Fatalf("token exp - iat = %v, want 900", exp-iat)
		}
	})

	t.Run("MatchesEmailCaseInsensitively", func(t *testing.T) {
		t.Parallel()
		r := e.forT(t).do(req{method: "POST", path: "/auth/login", body: map[string]any{"email": "  CAROL@Example.com", "password": testPassword}})
		want(t, r, http.StatusOK)
	})

	t.Run("FailsAlikeWithoutChallenge", func(t *testing.T) {
		t.Parallel()
		tests := []struct{ name, email, password string }{
			{"WrongPassword", email, testPassword + "!"},
			{"PasswordOfOtherCase", email, strings.ToUpper(testPassword)},
			{"UnknownEmail", "nobody@example.com", testPassword},
			{"MalformedEmail", "not-an-email", testPassword},
			{"OverlongPassword", email, strings.Repeat("p", 257)},
			{"EmptyPassword", email, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := e.forT(t).do(req{method: "POST", path: "/auth/login", body: map[string]any{"email": tt.email, "password": tt.password}})
				wantProblem(t, r, http.StatusUnauthorized, saasapi.MsgInvalidCredentials)
			})
		}
	})

	t.Run("RejectsMissingField", func(t *testing.T) {
		t.Parallel()
		r := e.forT(t).do(req{method: "POST", path: "/auth/login", body: map[string]any{"email": email}})
		wantInvalid(t, r, "password")
	})
}

// signed returns an HS256 token with the given claims.
func signed(t *testing.T, secret string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMe(t *testing.T) {
	t.Parallel()

	t.Run("ShowsUserAndMemberships", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		u := e.register("Dana")
		r := e.do(req{method: "GET", path: "/me", token: u.Token})
		want(t, r, http.StatusOK)
		wantKeys(t, "/me", r.Body, "user", "memberships")
		wantUser(t, r.obj("user"), u.Email, "Dana")
		if r.obj("user")["id"] != u.ID {
			t.Fatalf("/me user.id = %v, want %s", r.obj("user")["id"], u.ID)
		}
		if ms, ok := r.Body["memberships"].([]any); !ok || len(ms) != 0 {
			t.Fatalf("/me memberships = %v, want an empty array for a user without organisations", r.Body["memberships"])
		}

		org := e.createOrg(u, "Acme Corp")
		r = e.do(req{method: "GET", path: "/me", token: u.Token})
		want(t, r, http.StatusOK)
		ms, _ := r.Body["memberships"].([]any)
		if len(ms) != 1 {
			t.Fatalf("/me memberships = %v, want the one organisation created", r.Body["memberships"])
		}
		m, _ := ms[0].(map[string]any)
		wantKeys(t, "membership", m, "membership_id", "organisation_id", "organisation_name", "organisation_slug", "role")
		wantULID(t, "membership_id", m["membership_id"])
		if m["organisation_id"] != org || m["organisation_name"] != "Acme Corp" ||
			m["organisation_slug"] != "acme-corp" || m["role"] != "owner" {
			t.Fatalf("membership = %v, want organisation %s (Acme Corp, acme-corp) with role owner", m, org)
		}
	})

	t.Run("RejectsMissingOrBadCredentials", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		u := e.register("Erin")
		now := time.Now()
		claims := func(sub string, iat, exp time.Time) jwt.MapClaims {
			return jwt.MapClaims{"sub": sub, "iss": testIssuer, "iat": iat.Unix(), "exp": exp.Unix(), "token_type": "access"}
		}
		unknownSubject, _, err := e.tokens.Issue(saasapi.NewID())
		if err != nil {
			t.Fatal(err)
		}
		apiKey, _, _, err := auth.MintAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, authorization, detail string
		}{
			{"NoHeader", "", saasapi.MsgAuthRequired},
			{"BasicScheme", "Basic ZXJpbjpwYXNzd29yZA==", saasapi.MsgAuthRequired},
			{"TokenScheme", "Token " + u.Token, saasapi.MsgAuthRequired},
			{"BearerWithoutToken", "Bearer", saasapi.MsgAuthRequired},
			{"BareToken", u.Token, saasapi.MsgAuthRequired},
			{"Garbage", "Bearer not-a-jwt", saasapi.MsgInvalidToken},
			{"OtherSecret", "Bearer " + signed(t, "another-secret-that-is-long-enough-for-hs256", claims(u.ID, now, now.Add(time.Hour))), saasapi.MsgInvalidToken},
			{"OtherIssuer", "Bearer " + signed(t, testSecret, jwt.MapClaims{"sub": u.ID, "iss": "someone-else", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "token_type": "access"}), saasapi.MsgInvalidToken},
			{"Expired", "Bearer " + signed(t, testSecret, claims(u.ID, now.Add(-2*time.Hour), now.Add(-time.Hour))), saasapi.MsgInvalidToken},
			{"UnknownSubject", "Bearer " + unknownSubject, saasapi.MsgInvalidToken},
			{"APIKey", "Bearer " + apiKey, saasapi.MsgInvalidToken},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				header := map[string]string{}
				if tt.authorization != "" {
					header["Authorization"] = tt.authorization
				}
				r := e.forT(t).do(req{method: "GET", path: "/me", header: header})
				wantProblem(t, r, http.StatusUnauthorized, tt.detail)
			})
		}
	})

	t.Run("AcceptsSchemeInAnyCase", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		u := e.register("Finn")
		r := e.do(req{method: "GET", path: "/me", header: map[string]string{"Authorization": "bearer " + u.Token}})
		want(t, r, http.StatusOK)
	})
}

func TestStrictDecoding(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const valid = `"password":"correct horse battery staple","display_name":"Some One"`
	tests := []struct {
		name, contentType, body string
		status                  int
		detail, field           string
	}{
		{"UnknownField", "", `{"email":"a@example.com",` + valid + `,"nickname":"x"}`, 422, saasapi.MsgValidation, "nickname"},
		{"UpperCaseDuplicateKey", "", `{"email":"b@example.com","EMAIL":"c@example.com",` + valid + `}`, 422, saasapi.MsgValidation, "EMAIL"},
		{"CaseVariantKey", "", `{"Email":"d@example.com",` + valid + `}`, 422, saasapi.MsgValidation, "Email"},
		{"DuplicateKey", "", `{"email":"e@example.com","email":"f@example.com",` + valid + `}`, 422, saasapi.MsgValidation, "email"},
		{"WrongType", "", `{"email":"g@example.com","password":"correct horse battery staple","display_name":5}`, 422, saasapi.MsgValidation, "display_name"},
		{"NullForString", "", `{"email":null,` + valid + `}`, 422, saasapi.MsgValidation, "email"},
		{"InvalidJSON", "", `{"email":"h@example.com",`, 422, saasapi.MsgValidation, "body"},
		{"TrailingData", "", `{"email":"i@example.com",` + valid + `} {}`, 422, saasapi.MsgValidation, "body"},
		{"EmptyBody", "", ``, 422, saasapi.MsgValidation, "body"},
		{"JSONNull", "", `null`, 422, saasapi.MsgValidation, "body"},
		{"JSONArray", "", `[]`, 422, saasapi.MsgValidation, "body"},
		{"JSONString", "", `"j@example.com"`, 422, saasapi.MsgValidation, "body"},
		{"BodyOver1MiB", "", `{"email":"k@example.com",` + valid + `,"x":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "request body is too large", ""},
		{"TextPlain", "text/plain", `{"email":"l@example.com",` + valid + `}`, 415, "request body must be application/json", ""},
		{"FormEncoded", "application/x-www-form-urlencoded", `email=m@example.com`, 415, "request body must be application/json", ""},
		{"MalformedContentType", "application/json; charset", `{"email":"n@example.com",` + valid + `}`, 415, "request body must be application/json", ""},
		{"JSONWithCharset", "application/json; charset=utf-8", `{"email":"o@example.com",` + valid + `}`, 201, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			header := map[string]string{}
			if tt.contentType != "" {
				header["Content-Type"] = tt.contentType
			}
			r := e.forT(t).do(req{method: "POST", path: "/auth/register", body: tt.body, header: header})
			switch {
			case tt.status == http.StatusCreated:
				want(t, r, http.StatusCreated)
			case tt.field != "":
				wantInvalid(t, r, tt.field)
			default:
				wantProblem(t, r, tt.status, tt.detail)
			}
		})
	}
	t.Cleanup(func() {
		if n := e.count("users"); n != 1 {
			t.Errorf("users has %d rows, want 1: only the well-formed request may register", n)
		}
	})
}
