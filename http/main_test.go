package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/commands"
	apihttp "github.com/saasapi/saasapi/http"
	"github.com/saasapi/saasapi/internal/dbpool"
	"github.com/saasapi/saasapi/internal/testdb"
	"github.com/saasapi/saasapi/observability"
)

func TestMain(m *testing.M) { os.Exit(testdb.Run(m)) }

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

func setup(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	db := testdb.New(t)
	pool, err := dbpool.Open(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	e := &env{t: t, db: db, metrics: observability.NewMetrics(), logs: &syncBuffer{}}
	e.tokens = auth.NewTokenIssuer([]byte(testSecret), testIssuer, 900e9)
	svc := commands.New(pool, commands.Config{
		Hasher:            auth.NewHasher(auth.TestParams, 0),
		Tokens:            e.tokens,
		PasswordMinLength: 12,
		OnCommit:          e.metrics.CountEvents,
	})
	e.server = apihttp.NewServer(apihttp.Deps{
		Info:     apihttp.Info{AppName: "multi-tenant-saas-api", Version: "0.1.0", Environment: "test"},
		Commands: svc,
		Pool:     pool,
		Tokens:   e.tokens,
		Metrics:  e.metrics,
		Logger:   slog.New(slog.NewJSONHandler(e.logs, nil)),
	})
	e.srv = httptest.NewServer(e.server)
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
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	out := response{Status: res.StatusCode, Header: res.Header, Raw: raw}
	if len(raw) > 0 && strings.Contains(res.Header.Get("Content-Type"), "json") {
		_ = json.Unmarshal(raw, &out.Body)
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

func TestRegisterAndLoginSmoke(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.register("Alice")
	r := e.do(req{method: "GET", path: "/me", token: u.Token})
	want(t, r, 200)
}
