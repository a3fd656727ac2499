package auth

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/saasapi/saasapi"
)

// MinSecretLen is the shortest HS256 secret NewTokenIssuer accepts: RFC 7518
// §3.2 requires a key at least as long as the hash output (256 bits).
const MinSecretLen = 32

// TokenTypeAccess is the token_type claim of access tokens. Checking it keeps
// any other token signed with the same secret in future (refresh, email
// verification) from being accepted as an access token.
const TokenTypeAccess = "access"

// clockLeeway absorbs clock skew between the instances that issue and verify
// tokens; a few seconds is far below any useful token lifetime.
const clockLeeway = 5 * time.Second

// maxTokenLen bounds the work done on garbage: our tokens are ~250 bytes.
const maxTokenLen = 4096

// accessClaims are the claims of an access token. golang-jwt's
// RegisteredClaims would take a JSON string that holds a number as a time
// ("exp": "9999999999"); no issuer of ours writes one, so here every time
// must be a JSON number and every other claim a JSON string, and a claim
// of another type fails decoding.
type accessClaims struct {
	Issuer    string       `json:"iss,omitempty"`
	Subject   string       `json:"sub,omitempty"`
	ExpiresAt *numericDate `json:"exp,omitempty"`
	NotBefore *numericDate `json:"nbf,omitempty"`
	IssuedAt  *numericDate `json:"iat,omitempty"`
	TokenType string       `json:"token_type"`
}

// numericDate is a jwt.NumericDate that only a JSON number can set.
type numericDate struct{ jwt.NumericDate }

var errNotNumeric = errors.New("a time claim must be a JSON number")

func newNumericDate(t time.Time) *numericDate { return &numericDate{*jwt.NewNumericDate(t)} }

// UnmarshalJSON accepts a JSON number only.
func (d *numericDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return errNotNumeric
	}
	return d.NumericDate.UnmarshalJSON(b)
}

func (d *numericDate) date() *jwt.NumericDate {
	if d == nil {
		return nil
	}
	return &d.NumericDate
}

// The jwt.Claims methods, through which the parser validates.

func (c *accessClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.date(), nil }
func (c *accessClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt.date(), nil }
func (c *accessClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore.date(), nil }
func (c *accessClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *accessClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *accessClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// TokenIssuer issues and verifies HS256 access tokens. It is safe for
// concurrent use once configured.
type TokenIssuer struct {
	// Now returns the current time. Nil means time.Now; tests set it to a
	// fixed clock. Set it before the issuer is shared between goroutines.
	Now func() time.Time

	secret []byte
	issuer string
	ttl    time.Duration
	parser *jwt.Parser

	// verified remembers tokens that passed every check but the times
	// (token string -> verifiedToken): a signature, an issuer, a type and
	// a subject do not change, so only the times are checked again.
	verified  sync.Map
	verifiedN atomic.Int64
}

// verifiedToken is a token whose time-independent checks passed: it is
// valid from notBefore to notAfter (its iat and exp, widened by the
// leeway), for userID.
type verifiedToken struct {
	userID              saasapi.ID
	notBefore, notAfter time.Time
}

// maxVerifiedTokens bounds the tokens an issuer remembers; past it, it
// forgets them all and starts again.
const maxVerifiedTokens = 100_000

// NewTokenIssuer returns an issuer that signs with secret, stamps iss with
// issuer and makes tokens valid for ttl.
//
// It panics if secret is shorter than [MinSecretLen], issuer is empty or ttl
// is not positive: each would silently weaken every token, so they are
// configuration errors that must stop startup.
func NewTokenIssuer(secret []byte, issuer string, ttl time.Duration) *TokenIssuer {
	switch {
	case len(secret) < MinSecretLen:
		panic(fmt.Sprintf("auth: NewTokenIssuer: secret must be at least %d bytes", MinSecretLen))
	case issuer == "":
		panic("auth: NewTokenIssuer: empty issuer")
	case ttl <= 0:
		panic("auth: NewTokenIssuer: ttl must be positive")
	}
	t := &TokenIssuer{
		secret: append([]byte(nil), secret...), // the caller may reuse its slice
		issuer: issuer,
		ttl:    ttl,
	}
	t.parser = jwt.NewParser(
		// An allow-list of one algorithm is what defeats alg=none and
		// RS256/HS256 confusion; the token header is never trusted.
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(clockLeeway),
		jwt.WithTimeFunc(t.now),
		jwt.WithStrictDecoding(),
	)
	return t
}

// TTL returns how long issued tokens stay valid.
func (t *TokenIssuer) TTL() time.Duration { return t.ttl }

func (t *TokenIssuer) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// Issue returns a signed access token for userID and its lifetime (the
// OAuth expires_in). userID must be a valid ID.
func (t *TokenIssuer) Issue(userID saasapi.ID) (token string, expiresIn time.Duration, err error) {
	id, err := saasapi.ParseID(string(userID))
	if err != nil {
		return "", 0, fmt.Errorf("auth: issue token: invalid user ID %q", userID)
	}
	// JWT times have one-second resolution; truncating first makes
	// exp - iat exactly ttl, matching the expiresIn we report.
	now := t.now().Truncate(time.Second)
	claims := &accessClaims{
		Issuer:    t.issuer,
		Subject:   id.String(),
		IssuedAt:  newNumericDate(now),
		ExpiresAt: newNumericDate(now.Add(t.ttl)),
		TokenType: TokenTypeAccess,
	}
	token, err = jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.secret)
	if err != nil {
		return "", 0, fmt.Errorf("auth: sign token: %w", err)
	}
	return token, t.ttl, nil
}

// Verify checks token and returns the user ID in its sub claim.
//
// The token must be HS256-signed with the issuer's secret, carry this
// issuer's iss, an exp in the future, an iat not in the future (both JSON
// numbers, as is nbf when present), token_type "access" and a ULID sub. Times are compared with a leeway of 5 seconds to
// tolerate clock skew between instances. Every failure returns the same
// saasapi.Errorf(EUNAUTHENTICATED, MsgInvalidToken), so callers cannot learn
// which check failed.
func (t *TokenIssuer) Verify(token string) (saasapi.ID, error) {
	// Built only on a failure: the success path is every request's.
	invalid := func() error { return saasapi.Errorf(saasapi.EUNAUTHENTICATED, saasapi.MsgInvalidToken) }
	if token == "" || len(token) > maxTokenLen {
		return "", invalid()
	}
	if v, ok := t.verified.Load(token); ok {
		// The same answer a full verification gives, without its HMAC
		// and JSON decoding: only the times can have changed.
		vt := v.(verifiedToken)
		if now := t.now(); now.Before(vt.notBefore) || now.After(vt.notAfter) {
			return "", invalid()
		}
		return vt.userID, nil
	}
	var claims accessClaims
	tok, err := t.parser.ParseWithClaims(token, &claims, func(tok *jwt.Token) (any, error) {
		// Redundant with WithValidMethods, kept so that the secret can never
		// be handed to a non-HMAC verifier even if the options change.
		if tok.Method != jwt.SigningMethodHS256 {
			return nil, fmt.Errorf("unexpected signing method %v", tok.Header["alg"])
		}
		return t.secret, nil
	})
	if err != nil || !tok.Valid {
		return "", invalid()
	}
	// The library verifies iat only when present; a token without it could
	// not be aged or revoked by issue time, so it is refused.
	if claims.IssuedAt == nil || claims.TokenType != TokenTypeAccess {
		return "", invalid()
	}
	id, err := saasapi.ParseID(claims.Subject)
	if err != nil {
		return "", invalid()
	}
	if t.verifiedN.Add(1)%maxVerifiedTokens == 0 {
		t.verified.Clear()
	}
	t.verified.Store(token, verifiedToken{userID: id,
		notBefore: claims.IssuedAt.Add(-clockLeeway), notAfter: claims.ExpiresAt.Add(clockLeeway)})
	return id, nil
}
