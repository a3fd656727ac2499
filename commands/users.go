package commands

import (
	"context"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/projections"
)

// maxPasswordLength bounds the work one login can cause.
const maxPasswordLength = 256

// RegisterInput is the body of a registration.
type RegisterInput struct {
	Email       string
	Password    string
	DisplayName string
}

// normaliseEmail trims and lower-cases an address, brings it to NFC (so
// that one address has one spelling, for uniqueness and sign-in alike) and
// checks that it is a plain address (no display name, a dotted domain, no
// control or format characters).
func normaliseEmail(raw string) (string, bool) {
	if !utf8.ValidString(raw) {
		return "", false
	}
	email, ok := saasapi.IdentityText(strings.ToLower(strings.TrimSpace(raw)))
	if !ok || email == "" || len(email) > 254 {
		return "", false
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		return "", false
	}
	at := strings.LastIndexByte(email, '@')
	local, domain := email[:at], email[at+1:]
	if local == "" || len(local) > 64 || !strings.Contains(domain, ".") ||
		strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") {
		return "", false
	}
	return email, true
}

// maxSignInKey bounds the bytes of a sign-in throttling key, whatever the
// caller sent as an email.
const maxSignInKey = 320

// SignInKey is the form of an email that sign-in throttling counts by: the
// address as Login normalises it, so that spellings of one account's address
// share one budget; anything that is not an address is lower-cased, trimmed
// and cut short.
func SignInKey(email string) string {
	if normalised, ok := normaliseEmail(email); ok {
		return normalised
	}
	key := strings.ToLower(strings.TrimSpace(email))
	if len(key) > maxSignInKey {
		key = key[:maxSignInKey]
	}
	return key
}

func lengthBetween(s string, lo, hi int) bool {
	n := utf8.RuneCountInString(s)
	return n >= lo && n <= hi
}

// validateRegistration is the pure part of registration: it checks the
// input and returns it with the email and display name normalised.
func validateRegistration(in RegisterInput, minPassword int) (RegisterInput, error) {
	var fields []saasapi.FieldError
	email, ok := normaliseEmail(in.Email)
	if !ok {
		fields = append(fields, saasapi.FieldError{Field: "email", Message: "value is not a valid email address"})
	}
	displayName, readable := saasapi.IdentityText(in.DisplayName)
	switch {
	case !lengthBetween(in.Password, minPassword, maxPasswordLength):
		fields = append(fields, saasapi.FieldError{Field: "password",
			Message: "password must be between " + strconv.Itoa(minPassword) + " and " + strconv.Itoa(maxPasswordLength) + " characters"})
	case strings.TrimFunc(in.Password, unicode.IsSpace) == "":
		fields = append(fields, saasapi.FieldError{Field: "password", Message: "password must not be only whitespace"})
	}
	// The length is that of what is stored: NFC can lengthen a name.
	switch {
	case !readable:
		fields = append(fields, unreadable("display_name"))
	case !lengthBetween(displayName, 1, 120):
		fields = append(fields, saasapi.FieldError{Field: "display_name", Message: "display_name must be between 1 and 120 characters"})
	}
	if len(fields) > 0 {
		return RegisterInput{}, saasapi.Invalid(saasapi.MsgValidation, fields...)
	}
	in.Email, in.DisplayName = email, displayName
	return in, nil
}

// Register creates a user account: the user's own ledger with a
// user.registered event, and the password hash in user_credentials (never in
// an event).
func (s *Service) Register(ctx context.Context, meta Meta, in RegisterInput) (projections.User, error) {
	in, err := validateRegistration(in, s.passwordMinLength)
	if err != nil {
		return projections.User{}, err
	}
	// Hash before the transaction: Argon2 takes tens of milliseconds, which
	// must not be spent holding a connection.
	hash, err := s.hasher.Hash(ctx, in.Password)
	if err != nil {
		return projections.User{}, err
	}
	userID := saasapi.NewID()
	// The new user is the actor of their own registration.
	meta.Principal = saasapi.UserPrincipal(userID)
	var user projections.Lookup[projections.User]
	// The person's data key seals their email and display name in the
	// event; it is stored wrapped, beside (never inside) the events.
	c := command{meta: meta, ledger: userID, newLedger: saasapi.LedgerUser, dataKey: saasapi.NewDataKey()}
	c.decide = func(_ saasapi.Access, head eventstore.Head, b *pgx.Batch) ([]saasapi.NewEvent, error) {
		b.Queue(`INSERT INTO user_credentials (user_id, password_hash) VALUES ($1, $2)`, userID, hash)
		queueStoreDataKey(b, s.keys, userID, c.dataKey)
		return one(s.newEvent(meta, head, saasapi.StreamUser, userID, 1, saasapi.EventUserRegistered,
			saasapi.UserRegistered{Email: in.Email, DisplayName: in.DisplayName}))
	}
	c.result = func(b *pgx.Batch, _ saasapi.Access) error {
		projections.QueueUser(b, userID, &user)
		return nil
	}
	if _, _, err := s.run(ctx, c); err != nil {
		return projections.User{}, err
	}
	return user.Value, nil
}

// LoginResult is a successful login.
type LoginResult struct {
	AccessToken string
	ExpiresIn   time.Duration
	UserID      saasapi.ID
}

// Login checks an email and password and issues an access token. Unknown
// email, inactive user and wrong password fail alike and cost the same: one
// Argon2 computation each. Known accounts record user.logged_in or
// user.login_failed in their own ledger. A failure is recorded after the
// answer (every 401 then costs one lookup and one hash, whether or not the
// account exists, and the caller cannot time the write to learn that it
// does), and failures are coalesced per account (loginfailures.go).
func (s *Service) Login(ctx context.Context, meta Meta, email, password string) (LoginResult, error) {
	fail := saasapi.Errorf(saasapi.EUNAUTHENTICATED, saasapi.MsgInvalidCredentials)
	normalised, okEmail := normaliseEmail(email)
	if !okEmail || utf8.RuneCountInString(password) > maxPasswordLength {
		s.hasher.VerifyDummy(ctx, password)
		return LoginResult{}, fail
	}
	cred, found, err := projections.GetCredentials(ctx, s.pool, normalised)
	if err != nil {
		return LoginResult{}, err
	}
	if !found {
		s.hasher.VerifyDummy(ctx, password)
		return LoginResult{}, fail
	}
	ok, err := s.hasher.Verify(ctx, password, cred.PasswordHash)
	if err != nil {
		return LoginResult{}, err
	}
	userID := cred.User.ID
	switch {
	case !ok:
		s.failures.add(userID, "invalid_password", meta)
		return LoginResult{}, fail
	case !cred.User.IsActive:
		s.failures.add(userID, "inactive_user", meta)
		return LoginResult{}, fail
	}
	meta.Principal = saasapi.UserPrincipal(userID)
	if err := s.appendToUser(ctx, meta, userID, saasapi.EventUserLoggedIn, saasapi.UserLoggedIn{}); err != nil {
		if saasapi.ErrorCode(err) == saasapi.ENOTFOUND {
			return LoginResult{}, fail // erased while signing in
		}
		return LoginResult{}, err
	}
	token, ttl, err := s.tokens.Issue(userID)
	if err != nil {
		return LoginResult{}, err
	}
	return LoginResult{AccessToken: token, ExpiresIn: ttl, UserID: userID}, nil
}

// appendToUser appends one event to the user's own ledger, through the
// write pipeline: the lock and the stream's version, then the event.
func (s *Service) appendToUser(ctx context.Context, meta Meta, userID saasapi.ID, eventType string, data any) error {
	return s.appendToUserWith(ctx, meta, userID, eventType, data, nil)
}

// appendToUserWith is appendToUser that also queues, when with is not nil,
// writes of its own in the event's transaction.
func (s *Service) appendToUserWith(ctx context.Context, meta Meta, userID saasapi.ID, eventType string, data any,
	with func(b *pgx.Batch),
) error {
	var (
		version projections.Lookup[int64]
		erased  bool
	)
	c := command{meta: meta, ledger: userID}
	c.load = func(b *pgx.Batch, _ projections.Scope) error {
		projections.QueueUserVersion(b, userID, &version)
		projections.QueueUserErased(b, userID, &erased)
		return nil
	}
	c.decide = func(_ saasapi.Access, head eventstore.Head, b *pgx.Batch) ([]saasapi.NewEvent, error) {
		// An erased user's ledger takes no more events: the erasure
		// committed first under the same lock.
		if !version.Found || erased {
			return nil, saasapi.Errorf(saasapi.ENOTFOUND, saasapi.MsgUserNotFound)
		}
		if with != nil {
			with(b)
		}
		return one(s.newEvent(meta, head, saasapi.StreamUser, userID, version.Value+1, eventType, data))
	}
	_, _, err := s.run(ctx, c)
	return err
}
