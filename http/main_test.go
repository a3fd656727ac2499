package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/commands"
	apihttp "github.com/saasapi/saasapi/http"
	"github.com/saasapi/saasapi/internal/dbpool"
	"github.com/saasapi/saasapi/internal/testdb"
	"github.com/saasapi/saasapi/observability"
)

func TestMain(m *testing.M) {
	code := testdb.Run(m)
	// Every response of the run went through checkResponse (openapi_test.go).
	reportOpenAPI(os.Stderr)
	os.Exit(code)
}

const (
	testSecret   = "test-secret-that-is-long-enough-for-hs256!"
	testIssuer   = "saasapi-test"
	testPassword = "correct horse battery staple"
)

// env is one test's service: a fresh database, the real router behind a
// real HTTP server, and helpers to drive it.
type env struct {
	t       testing.TB
	db      *testdb.DB
	srv     *httptest.Server
	server  *apihttp.Server
	metrics *observability.Metrics
	tokens  *auth.TokenIssuer
	logs    *syncBuffer
	// svc is the command service behind server, for tests that call
	// service-level operations such as PruneIdempotency.
	svc *commands.Service
}

// syncBuffer collects log output from concurrent requests.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// setup builds the env; opts adjust the server's dependencies (docs
// enabled, for one).
func setup(t testing.TB, opts ...func(*apihttp.Deps)) *env {
	t.Helper()
	return setupPool(t, nil, opts...)
}

// setupPool is setup with the pool's configuration adjusted by configure
// (when not nil).
func setupPool(t testing.TB, configure func(*pgxpool.Config), opts ...func(*apihttp.Deps)) *env {
	t.Helper()
	ctx := context.Background()
	db := testdb.New(t)
	var adjust []func(*pgxpool.Config)
	if configure != nil {
		adjust = append(adjust, configure)
	}
	pool, err := dbpool.Open(ctx, db.URL, adjust...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	e := &env{t: t, db: db, metrics: observability.NewMetrics(), logs: &syncBuffer{}}
	e.tokens = auth.NewTokenIssuer([]byte(testSecret), testIssuer, 900e9)
	svc := commands.New(pool, commands.Config{
		Keys:              saasapi.EphemeralDataKeyring(),
		Hasher:            auth.NewHasher(auth.TestParams, 0),
		Tokens:            e.tokens,
		PasswordMinLength: 12,
		OnCommit:          e.metrics.CountEvents,
	})
	e.svc = svc
	// Cleanups run last-in first-out: background writes finish before the
	// pool closes, and none outlives its test.
	t.Cleanup(svc.Close)
	deps := apihttp.Deps{
		Info:     apihttp.Info{AppName: "multi-tenant-saas-api", Version: "0.1.0", Environment: "test"},
		Commands: svc,
		Pool:     pool,
		Tokens:   e.tokens,
		Metrics:  e.metrics,
		Logger:   slog.New(slog.NewJSONHandler(e.logs, nil)),
	}
	for _, opt := range opts {
		opt(&deps)
	}
	// An option may bring a service of its own (other command settings).
	e.svc = deps.Commands
	e.server = apihttp.NewServer(deps)
	// Served as in production: on the listener that turns net/http's own
	// replies into problem details.
	e.srv = httptest.NewUnstartedServer(e.server)
	e.srv.Listener = apihttp.Listener(e.srv.Listener)
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

// response is a decoded HTTP response.
type response struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   map[string]any
}

// str returns a top-level string field of the body.
func (r response) str(key string) string { s, _ := r.Body[key].(string); return s }

// obj returns a nested object of the body.
func (r response) obj(key string) map[string]any { m, _ := r.Body[key].(map[string]any); return m }

// items returns the items of a list response.
func (r response) items() []map[string]any {
	raw, _ := r.Body["items"].([]any)
	out := make([]map[string]any, len(raw))
	for i, v := range raw {
		out[i], _ = v.(map[string]any)
	}
	return out
}

// req describes one request; body may be a string (sent verbatim) or any
// value (sent as JSON).
type req struct {
	method, path, token string
	body                any
	header              map[string]string
}

func (e *env) do(r req) response {
	e.t.Helper()
	var body io.Reader
	switch b := r.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		body = bytes.NewReader(raw)
	}
	hr, err := http.NewRequestWithContext(context.Background(), r.method, e.srv.URL+r.path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	res, err := e.srv.Client().Do(hr)
	if err != nil {
		e.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer func() { _ = res.Body.Close() }()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	out := response{Status: res.StatusCode, Header: res.Header, Raw: raw}
	if len(raw) > 0 && strings.Contains(res.Header.Get("Content-Type"), "json") {
		_ = json.Unmarshal(raw, &out.Body)
	}
	if err := checkResponse(hr, out); err != nil {
		e.t.Errorf("OpenAPI: %v", err)
	}
	if r.path == "/auth/login" && out.Status == http.StatusUnauthorized {
		// A failed sign-in is recorded after the answer; let it land so
		// that the test sees the ledger the request left behind.
		e.svc.Wait()
	}
	return out
}

// want fails the test unless the response has the status (and, for
// errors, the detail) expected.
func want(t testing.TB, r response, status int, detail ...string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got status %d, want %d; body %s", r.Status, status, r.Raw)
	}
	if len(detail) > 0 && r.str("detail") != detail[0] {
		t.Fatalf("got detail %q, want %q", r.str("detail"), detail[0])
	}
}

// user is a registered, signed-in user.
type user struct {
	ID    string
	Email string
	Token string
}

var userSeq struct {
	sync.Mutex
	n int
}

func (e *env) register(name string) user {
	e.t.Helper()
	email := strings.ToLower(name) + "-" + strings.ToLower(saasapi.NewID().String()) + "@example.com"
	r := e.do(req{method: "POST", path: "/auth/register", body: map[string]any{
		"email": email, "password": testPassword, "display_name": name,
	}})
	want(e.t, r, http.StatusCreated)
	id, _ := r.obj("user")["id"].(string)
	r = e.do(req{method: "POST", path: "/auth/login", body: map[string]any{"email": email, "password": testPassword}})
	want(e.t, r, http.StatusOK)
	return user{ID: id, Email: email, Token: r.str("access_token")}
}

func (e *env) createOrg(owner user, name string) string {
	e.t.Helper()
	r := e.do(req{method: "POST", path: "/orgs", token: owner.Token, body: map[string]any{"name": name}})
	want(e.t, r, http.StatusCreated)
	return r.str("id")
}

func (e *env) addMember(by user, org string, u user, role string) {
	e.t.Helper()
	r := e.do(req{method: "POST", path: "/orgs/" + org + "/members", token: by.Token,
		body: map[string]any{"user_id": u.ID, "role": role}})
	want(e.t, r, http.StatusCreated)
}

// count returns the row count of a table, read as the schema owner.
func (e *env) count(table string) int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// forT returns a copy of the env whose helpers fail t: parallel subtests
// that share one env must fail themselves, not the test that called setup.
func (e *env) forT(t testing.TB) *env {
	c := *e
	c.t = t
	return &c
}

// uniqueName returns prefix followed by a number that no other call in this
// test binary returns, for organisation names whose derived slugs must not
// clash.
func uniqueName(prefix string) string {
	userSeq.Lock()
	defer userSeq.Unlock()
	userSeq.n++
	return fmt.Sprintf("%s %d", prefix, userSeq.n)
}

// send is do for goroutines other than the test's own: a transport failure
// is returned, because only the test goroutine may call t.Fatal.
func (e *env) send(r req) (response, error) {
	var body io.Reader
	if r.body != nil {
		raw, err := json.Marshal(r.body)
		if err != nil {
			return response{}, err
		}
		body = bytes.NewReader(raw)
	}
	hr, err := http.NewRequestWithContext(context.Background(), r.method, e.srv.URL+r.path, body)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	res, err := e.srv.Client().Do(hr)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	defer func() { _ = res.Body.Close() }()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	out := response{Status: res.StatusCode, Header: res.Header, Raw: raw}
	if len(raw) > 0 && strings.Contains(res.Header.Get("Content-Type"), "json") {
		_ = json.Unmarshal(raw, &out.Body)
	}
	if err := checkResponse(hr, out); err != nil {
		e.t.Errorf("OpenAPI: %v", err) // Errorf, unlike Fatal, may be called from any goroutine
	}
	return out, nil
}

// wantKeys fails the test unless m has exactly the given keys.
func wantKeys(t testing.TB, what string, m map[string]any, keys ...string) {
	t.Helper()
	got := make([]string, 0, len(m))
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(keys))
	if !slices.Equal(got, want) {
		t.Fatalf("%s has keys %v, want exactly %v", what, got, want)
	}
}

var (
	ulidPattern      = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{26}$`)
	utcStampPattern  = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$`)
	problemMediaType = "application/problem+json"
)

// wantULID fails the test unless v is a canonical 26-character ULID string.
func wantULID(t testing.TB, what string, v any) string {
	t.Helper()
	s, _ := v.(string)
	if !ulidPattern.MatchString(s) {
		t.Fatalf("%s = %#v, want a 26-character upper-case ULID", what, v)
	}
	return s
}

// wantTimestamp fails the test unless v is an RFC 3339 UTC time ending in Z.
func wantTimestamp(t testing.TB, what string, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	ts, err := time.Parse(time.RFC3339Nano, s)
	if !utcStampPattern.MatchString(s) || err != nil {
		t.Fatalf("%s = %#v, want an RFC 3339 UTC timestamp ending in Z", what, v)
	}
	return ts
}

// wantProblem fails the test unless r is an RFC 9457 problem with the status
// and detail, the request's ID, and WWW-Authenticate exactly on the 401s
// that are not failed logins.
func wantProblem(t testing.TB, r response, status int, detail string) {
	t.Helper()
	want(t, r, status, detail)
	if ct := r.Header.Get("Content-Type"); ct != problemMediaType {
		t.Fatalf("Content-Type = %q, want %q; body %s", ct, problemMediaType, r.Raw)
	}
	keys := []string{"type", "title", "status", "detail", "request_id"}
	if status == http.StatusUnprocessableEntity {
		keys = append(keys, "errors")
	}
	wantKeys(t, "problem", r.Body, keys...)
	if _, ok := r.Body["errors"].([]any); status == http.StatusUnprocessableEntity && !ok {
		t.Fatalf("problem errors = %#v, want an array", r.Body["errors"])
	}
	if r.Body["type"] != "about:blank" || r.Body["title"] != http.StatusText(status) || r.Body["status"] != float64(status) {
		t.Fatalf("problem type/title/status = %v/%v/%v, want about:blank/%q/%d",
			r.Body["type"], r.Body["title"], r.Body["status"], http.StatusText(status), status)
	}
	if rid := r.str("request_id"); rid == "" || rid != r.Header.Get("X-Request-ID") {
		t.Fatalf("problem request_id = %q, want the X-Request-ID header %q", rid, r.Header.Get("X-Request-ID"))
	}
	wantChallenge := status == http.StatusUnauthorized && detail != saasapi.MsgInvalidCredentials
	if got := r.Header.Values("WWW-Authenticate"); wantChallenge && (len(got) != 1 || got[0] != "Bearer") {
		t.Fatalf("WWW-Authenticate = %q, want exactly Bearer on a %d %q", got, status, detail)
	} else if !wantChallenge && len(got) != 0 {
		t.Fatalf("WWW-Authenticate = %q, want none on a %d %q", got, status, detail)
	}
}

// wantInvalid fails the test unless r is a 422 validation problem whose
// errors name field.
func wantInvalid(t testing.TB, r response, field string) {
	t.Helper()
	wantProblem(t, r, http.StatusUnprocessableEntity, saasapi.MsgValidation)
	errs, _ := r.Body["errors"].([]any)
	for _, x := range errs {
		fe, _ := x.(map[string]any)
		if msg, _ := fe["message"].(string); fe["field"] == field && msg != "" && len(fe) == 2 {
			return
		}
	}
	t.Fatalf("errors %v do not name field %q with a message", r.Body["errors"], field)
}

// writeTables are the tables a command writes to.
var writeTables = []string{"events", "ledgers", "users", "organisations", "memberships"}

// counts returns the row count of every table a command writes to.
func (e *env) counts() map[string]int {
	e.t.Helper()
	out := map[string]int{}
	for _, table := range writeTables {
		out[table] = e.count(table)
	}
	return out
}

// team is a set of users with one of each relationship to an organisation.
type team struct{ owner, admin, member, viewer, outsider user }

func (e *env) newTeam() team {
	e.t.Helper()
	return team{owner: e.register("Owner"), admin: e.register("Admin"), member: e.register("Member"),
		viewer: e.register("Viewer"), outsider: e.register("Outsider")}
}

// teamOrg creates a fresh organisation owned by the team's owner, with its
// admin, member and viewer; the outsider stays out.
func (e *env) teamOrg(tm team) string {
	e.t.Helper()
	org := e.createOrg(tm.owner, uniqueName("Team"))
	e.addMember(tm.owner, org, tm.admin, "admin")
	e.addMember(tm.owner, org, tm.member, "member")
	e.addMember(tm.owner, org, tm.viewer, "viewer")
	return org
}

// apiKey is an API key created over HTTP: its id and its raw secret.
type apiKey struct{ ID, Raw string }

// createAPIKey creates an API key of org as by and returns it.
func (e *env) createAPIKey(by user, org string) apiKey {
	e.t.Helper()
	r := e.do(req{method: "POST", path: "/orgs/" + org + "/api-keys", token: by.Token,
		body: map[string]any{"name": uniqueName("Key")}})
	want(e.t, r, http.StatusCreated)
	id, _ := r.obj("api_key")["id"].(string)
	return apiKey{ID: id, Raw: r.str("raw_key")}
}

// createProject creates a project of org with the body, as the holder of
// token (a user's access token or a raw API key), and returns the project.
func (e *env) createProject(token, org string, body map[string]any) map[string]any {
	e.t.Helper()
	r := e.do(req{method: "POST", path: "/orgs/" + org + "/projects", token: token, body: body})
	want(e.t, r, http.StatusCreated)
	return r.Body
}

// countEvents returns how many recorded events have the type.
func (e *env) countEvents(eventType string) int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM events WHERE event_type = $1",
		eventType).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// exposition scrapes GET /metrics and returns the text exposition.
func (e *env) exposition() string {
	e.t.Helper()
	r := e.do(req{method: "GET", path: "/metrics"})
	want(e.t, r, http.StatusOK)
	return string(r.Raw)
}

// streamEvents returns how many events the stream of the entity id has
// recorded (its version, for a project or membership).
func (e *env) streamEvents(id string) int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM events WHERE stream_id = $1", id).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}
