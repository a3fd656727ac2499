package auth_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
)

const (
	testIssuer = "saasapi-test"
	testTTL    = 15 * time.Minute
)

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef")
	otherKey   = []byte("fedcba9876543210fedcba9876543210")
	testNow    = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	testUser   = saasapi.ID("01HZY8Q5W3J4K5M6N7P8Q9R0ST")
)

func newTestIssuer(now time.Time) *auth.TokenIssuer {
	ti := auth.NewTokenIssuer(testSecret, testIssuer, testTTL)
	ti.Now = func() time.Time { return now }
	return ti
}

// validClaims are the claims Issue would produce at testNow; cases remove or
// alter one of them.
func validClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub":        string(testUser),
		"iss":        testIssuer,
		"iat":        testNow.Unix(),
		"exp":        testNow.Add(testTTL).Unix(),
		"token_type": "access",
	}
}

func with(edit func(jwt.MapClaims)) jwt.MapClaims {
	c := validClaims()
	edit(c)
	return c
}

func sign(t *testing.T, m jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func seg(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// handMade builds a token from a raw header, claims and an HMAC-SHA256
// signature under key, for headers the library refuses to produce.
func handMade(header map[string]any, c jwt.MapClaims, key []byte) string {
	signing := seg(header) + "." + seg(c)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func TestVerifyAcceptsIssuedToken(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(testNow)
	tok, expiresIn, err := ti.Issue(testUser)
	if err != nil {
		t.Fatal(err)
	}
	if expiresIn != testTTL {
		t.Fatalf("expiresIn = %v, want %v", expiresIn, testTTL)
	}
	got, err := ti.Verify(tok)
	if err != nil {
		t.Fatalf("Verify(issued token) error: %v", err)
	}
	if got != testUser {
		t.Fatalf("Verify = %q, want %q", got, testUser)
	}

	// The claims are exactly those promised, signed with HS256.
	parts := strings.Split(tok, ".")
	var header map[string]any
	var claims map[string]any
	decodeSeg(t, parts[0], &header)
	decodeSeg(t, parts[1], &claims)
	if header["alg"] != "HS256" {
		t.Errorf("alg = %v, want HS256", header["alg"])
	}
	want := map[string]any{
		"sub":        string(testUser),
		"iss":        testIssuer,
		"iat":        float64(testNow.Unix()),
		"exp":        float64(testNow.Add(testTTL).Unix()),
		"token_type": "access",
	}
	if len(claims) != len(want) {
		t.Errorf("claims = %v, want exactly %v", claims, want)
	}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("claim %s = %v, want %v", k, claims[k], v)
		}
	}
}

func decodeSeg(t *testing.T, s string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyCanonicalisesSubject(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(testNow)
	tok := sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) {
		c["sub"] = strings.ToLower(string(testUser))
	}))
	got, err := ti.Verify(tok)
	if err != nil || got != testUser {
		t.Fatalf("Verify(lower-case sub) = %q, %v; want %q", got, err, testUser)
	}
}

func TestVerifyClockLeeway(t *testing.T) {
	t.Parallel()
	tok, _, err := newTestIssuer(testNow).Issue(testUser)
	if err != nil {
		t.Fatal(err)
	}
	// Within the 5 s leeway on both sides.
	for _, now := range []time.Time{testNow.Add(-4 * time.Second), testNow.Add(testTTL + 4*time.Second)} {
		if _, err := newTestIssuer(now).Verify(tok); err != nil {
			t.Errorf("Verify at %v: %v; want accepted within leeway", now, err)
		}
	}
	for _, now := range []time.Time{testNow.Add(-6 * time.Second), testNow.Add(testTTL + 6*time.Second)} {
		if _, err := newTestIssuer(now).Verify(tok); err == nil {
			t.Errorf("Verify at %v accepted; want rejected beyond leeway", now)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	valid := sign(t, jwt.SigningMethodHS256, testSecret, validClaims())
	parts := strings.Split(valid, ".")

	tampered := parts[0] + "." + seg(with(func(c jwt.MapClaims) {
		c["sub"] = "01HZY8Q5W3J4K5M6N7P8Q9R0SV"
	})) + "." + parts[2]

	cases := []struct {
		name  string
		token string
	}{
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, validClaims())},
		{"alg none without signature", seg(map[string]any{"alg": "none", "typ": "JWT"}) + "." + seg(validClaims()) + "."},
		{"HS256 with another key", sign(t, jwt.SigningMethodHS256, otherKey, validClaims())},
		{"HS384 with the right key", sign(t, jwt.SigningMethodHS384, testSecret, validClaims())},
		{"HS512 with the right key", sign(t, jwt.SigningMethodHS512, testSecret, validClaims())},
		// Algorithm confusion: RS256 in the header, HMAC-SHA256 under our
		// secret as the signature.
		{"RS256 header", handMade(map[string]any{"alg": "RS256", "typ": "JWT"}, validClaims(), testSecret)},
		{"missing exp", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { delete(c, "exp") }))},
		{"expired", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) {
			c["iat"] = testNow.Add(-2 * time.Hour).Unix()
			c["exp"] = testNow.Add(-time.Hour).Unix()
		}))},
		{"wrong issuer", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["iss"] = "someone-else" }))},
		{"missing iss", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { delete(c, "iss") }))},
		{"iat in the future", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) {
			c["iat"] = testNow.Add(time.Hour).Unix()
			c["exp"] = testNow.Add(2 * time.Hour).Unix()
		}))},
		{"missing iat", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { delete(c, "iat") }))},
		{"exp not a number", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["exp"] = "never" }))},
		// golang-jwt's NumericDate takes a string that holds a number;
		// claims of the wrong JSON type are refused here.
		{"exp a numeric string", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) {
			c["exp"] = strconv.FormatInt(testNow.Add(testTTL).Unix(), 10)
		}))},
		{"iat a numeric string", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) {
			c["iat"] = strconv.FormatInt(testNow.Unix(), 10)
		}))},
		{"nbf a numeric string", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) {
			c["nbf"] = strconv.FormatInt(testNow.Unix(), 10)
		}))},
		{"exp a boolean", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["exp"] = true }))},
		{"exp an array", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) {
			c["exp"] = []any{testNow.Add(testTTL).Unix()}
		}))},
		{"iat an object", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["iat"] = map[string]any{} }))},
		{"iss a number", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["iss"] = 1 }))},
		{"sub an array", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["sub"] = []any{string(testUser)} }))},
		{"token_type a boolean", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["token_type"] = true }))},
		{"tampered payload", tampered},
		{"wrong token_type", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["token_type"] = "refresh" }))},
		{"missing token_type", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { delete(c, "token_type") }))},
		{"sub not a ULID", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["sub"] = "user-42" }))},
		{"missing sub", sign(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { delete(c, "sub") }))},
		{"signature stripped", parts[0] + "." + parts[1] + "."},
		{"two segments", parts[0] + "." + parts[1]},
		{"garbage", "not.a.jwt"},
		{"random text", "hello"},
		{"API key", "sapi_abc"},
		{"empty", ""},
		{"oversized", valid + strings.Repeat("A", 5000)},
	}
	ti := newTestIssuer(testNow)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id, err := ti.Verify(tc.token)
			if err == nil {
				t.Fatalf("Verify accepted %q as %q", tc.token, id)
			}
			if id != "" {
				t.Errorf("Verify returned ID %q with an error", id)
			}
			if code, msg := saasapi.ErrorCode(err), saasapi.ErrorMessage(err); code != saasapi.EUNAUTHENTICATED || msg != saasapi.MsgInvalidToken {
				t.Errorf("error = %q/%q, want %q/%q", code, msg, saasapi.EUNAUTHENTICATED, saasapi.MsgInvalidToken)
			}
		})
	}
}

func TestIssueRejectsInvalidUserID(t *testing.T) {
	t.Parallel()
	for _, id := range []saasapi.ID{"", "not-an-id"} {
		if tok, _, err := newTestIssuer(testNow).Issue(id); err == nil {
			t.Errorf("Issue(%q) = %q, want error", id, tok)
		}
	}
}

func TestTokenExpiresAfterTTL(t *testing.T) {
	t.Parallel()
	now := testNow
	ti := auth.NewTokenIssuer(testSecret, testIssuer, testTTL)
	ti.Now = func() time.Time { return now }
	tok, _, err := ti.Issue(testUser)
	if err != nil {
		t.Fatal(err)
	}
	// The issuer reads its clock on every call, so a moved clock is honoured
	// by tokens issued earlier. Issue and Verify run sequentially here.
	now = testNow.Add(testTTL + time.Minute)
	if _, err := ti.Verify(tok); err == nil {
		t.Fatal("token accepted after its TTL")
	}
}

func TestNewTokenIssuerRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]func(){
		"short secret": func() { auth.NewTokenIssuer([]byte("short"), testIssuer, testTTL) },
		"empty issuer": func() { auth.NewTokenIssuer(testSecret, "", testTTL) },
		"zero ttl":     func() { auth.NewTokenIssuer(testSecret, testIssuer, 0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: NewTokenIssuer did not panic", name)
				}
			}()
			f()
		}()
	}
}

// TestVerifiedTokenStillExpires: a token that passed Verify is remembered
// (its signature need not be checked again), but a later Verify still
// applies the times: past exp and before iat, beyond the leeway, it fails
// as it would the first time.
func TestVerifiedTokenStillExpires(t *testing.T) {
	t.Parallel()
	now := testNow
	ti := auth.NewTokenIssuer(testSecret, testIssuer, testTTL)
	ti.Now = func() time.Time { return now }
	tok, _, err := ti.Issue(testUser)
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Duration{0, testTTL + 4*time.Second, -4 * time.Second} {
		now = testNow.Add(at)
		if id, err := ti.Verify(tok); err != nil || id != testUser {
			t.Fatalf("Verify at +%v = %q, %v; want %q", at, id, err, testUser)
		}
	}
	for _, at := range []time.Duration{testTTL + 6*time.Second, -6 * time.Second} {
		now = testNow.Add(at)
		if _, err := ti.Verify(tok); err == nil {
			t.Errorf("remembered token accepted at +%v; want rejected beyond the leeway", at)
		}
	}
	// A token of another secret is not accepted because one of this
	// issuer's was remembered.
	now = testNow
	forger := auth.NewTokenIssuer(append([]byte("x"), testSecret...), testIssuer, testTTL)
	forger.Now = ti.Now
	other, _, err := forger.Issue(testUser)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ti.Verify(other); err == nil {
		t.Error("token signed with another secret accepted")
	}
}
