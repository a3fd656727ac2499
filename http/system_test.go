package http_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/commands"
	apihttp "github.com/saasapi/saasapi/http"
	"github.com/saasapi/saasapi/internal/dbpool"
	"github.com/saasapi/saasapi/observability"
)

// wantJSON fails the test unless r is a JSON response whose body equals
// body exactly, no field more or less.
func wantJSON(t *testing.T, r response, status int, body string) {
	t.Helper()
	want(t, r, status)
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	var wantBody map[string]any
	if err := json.Unmarshal([]byte(body), &wantBody); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Body, wantBody) {
		t.Fatalf("body = %s, want exactly %s", r.Raw, body)
	}
}

// downEnv returns a copy of e whose server is built with the same
// dependencies except the pool, which points at a port where no database
// listens.
func downEnv(t *testing.T, e *env) *env {
	t.Helper()
	pool, err := dbpool.Open(context.Background(), "postgres://saasapi@127.0.0.1:1/saasapi?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	svc := commands.New(pool, commands.Config{
		Keys:   saasapi.EphemeralDataKeyring(),
		Hasher: auth.NewHasher(auth.TestParams, 0), Tokens: e.tokens, PasswordMinLength: 12,
	})
	t.Cleanup(svc.Close)
	d := *e
	d.t = t
	d.metrics = observability.NewMetrics()
	d.server = apihttp.NewServer(apihttp.Deps{
		Info:     apihttp.Info{AppName: "multi-tenant-saas-api", Version: "0.1.0", Environment: "test"},
		Commands: svc,
		Pool:     pool,
		Tokens:   e.tokens,
		Metrics:  d.metrics,
		Logger:   slog.New(slog.DiscardHandler),
	})
	d.srv = httptest.NewServer(d.server)
	t.Cleanup(d.srv.Close)
	return &d
}

const (
	healthyBody  = `{"status":"ok","app_name":"multi-tenant-saas-api","version":"0.1.0","environment":"test"}`
	readyBody    = `{"status":"ready","checks":{"postgresql":{"status":"ok","detail":"PostgreSQL responded successfully"}}}`
	notReadyBody = `{"status":"not_ready","checks":{"postgresql":{"status":"unavailable","detail":"PostgreSQL readiness check failed"}}}`
)

func TestHealthz(t *testing.T) {
	t.Parallel()
	e := setup(t)

	t.Run("ReportsServiceInfo", func(t *testing.T) {
		t.Parallel()
		wantJSON(t, e.forT(t).do(req{method: "GET", path: "/healthz"}), http.StatusOK, healthyBody)
	})

	t.Run("DoesNotCheckTheDatabase", func(t *testing.T) {
		t.Parallel()
		wantJSON(t, downEnv(t, e).do(req{method: "GET", path: "/healthz"}), http.StatusOK, healthyBody)
	})
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	e := setup(t)

	t.Run("ReadyWhenDatabaseAnswers", func(t *testing.T) {
		t.Parallel()
		wantJSON(t, e.forT(t).do(req{method: "GET", path: "/readyz"}), http.StatusOK, readyBody)
	})

	t.Run("NotReadyWhenDatabaseIsDown", func(t *testing.T) {
		t.Parallel()
		wantJSON(t, downEnv(t, e).do(req{method: "GET", path: "/readyz"}), http.StatusServiceUnavailable, notReadyBody)
	})
}

// metricValue returns the value of one series of a text exposition; series
// is the metric name with its labels as the exposition writes them.
func metricValue(t *testing.T, exposition, series string) float64 {
	t.Helper()
	for line := range strings.SplitSeq(exposition, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("series %s has value %q: %v", series, rest, err)
			}
			return v
		}
	}
	t.Fatalf("series %s is not in the exposition", series)
	return 0
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := setup(t)
	scrape := func() string {
		t.Helper()
		r := e.do(req{method: "GET", path: "/metrics"})
		want(t, r, http.StatusOK)
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Fatalf("/metrics Content-Type = %q, want the text exposition format", ct)
		}
		return string(r.Raw)
	}

	if v := metricValue(t, scrape(), "saas_api_organisations_created_total"); v != 0 {
		t.Fatalf("organisations_created_total = %v before any creation, want 0", v)
	}
	u := e.register("Metered")
	want(t, e.do(req{method: "POST", path: "/auth/login", body: map[string]any{"email": u.Email, "password": "wrong password!"}}), http.StatusUnauthorized)
	org := e.createOrg(u, "Metered Org")
	want(t, e.do(req{method: "GET", path: "/orgs/" + org, token: u.Token}), http.StatusOK)
	want(t, e.do(req{method: "GET", path: "/orgs/" + strings.ToLower(org), token: u.Token}), http.StatusOK)
	want(t, e.do(req{method: "POST", path: "/orgs", token: u.Token, body: map[string]any{"name": "Metered Org"}}), http.StatusConflict)
	m := scrape()
	if v := metricValue(t, m, "saas_api_organisations_created_total"); v != 1 {
		t.Fatalf("organisations_created_total = %v after one creation and one refused, want 1", v)
	}
	e.createOrg(u, "Metered Org Two")
	want(t, e.do(req{method: "GET", path: "/no/such/route-xyz"}), http.StatusNotFound)
	m = scrape()

	tests := []struct {
		series string
		value  float64
	}{
		{`saas_api_organisations_created_total`, 2},
		{`saas_api_requests_total{method="GET",path="/orgs/{organisation_id}",status_code="200"}`, 2},
		{`saas_api_request_duration_seconds_count{method="GET",path="/orgs/{organisation_id}",status_code="200"}`, 2},
		{`saas_api_requests_total{method="POST",path="/orgs",status_code="201"}`, 2},
		{`saas_api_requests_total{method="POST",path="/orgs",status_code="409"}`, 1},
		{`saas_api_requests_total{method="POST",path="/auth/login",status_code="401"}`, 1},
		{`saas_api_requests_total{method="GET",path="unmatched",status_code="404"}`, 1},
		{`saas_api_request_duration_seconds_count{method="GET",path="unmatched",status_code="404"}`, 1},
		{`saas_api_requests_total{method="GET",path="/metrics",status_code="200"}`, 2},
		{`saas_api_auth_attempts_total{operation="register",outcome="success"}`, 1},
		{`saas_api_auth_attempts_total{operation="login",outcome="success"}`, 1},
		{`saas_api_auth_attempts_total{operation="login",outcome="failure"}`, 1},
	}
	for _, tt := range tests {
		if v := metricValue(t, m, tt.series); v != tt.value {
			t.Errorf("%s = %v, want %v", tt.series, v, tt.value)
		}
	}
	for _, raw := range []string{org, strings.ToLower(org), "/no/such/route-xyz", u.ID} {
		if strings.Contains(m, raw) {
			t.Errorf("the exposition contains %q; paths must be labelled by route template only", raw)
		}
	}
}

func TestUnknownRoute(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.register("Lost")
	for _, path := range []string{"/", "/nope", "/orgs/" + saasapi.NewID().String() + "/no-such-collection", "/me/", "/healthz/x"} {
		wantProblem(t, e.do(req{method: "GET", path: path, token: u.Token}), http.StatusNotFound, "not found")
	}
}

func TestWrongMethod(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.register("Wrong")
	org := e.createOrg(u, "Wrong Method")
	tests := []struct{ method, path, allow string }{
		{"DELETE", "/healthz", "GET"},
		{"POST", "/readyz", "GET"},
		{"PUT", "/metrics", "GET"},
		{"GET", "/auth/login", "POST"},
		{"POST", "/me", "GET, DELETE"},
		{"DELETE", "/orgs", "GET, POST"},
		{"PUT", "/orgs/" + org, "GET, PATCH"},
		{"DELETE", "/orgs/" + org, "GET, PATCH"},
		{"PUT", "/orgs/" + org + "/members", "GET, POST"},
		{"GET", "/orgs/" + org + "/members/" + u.ID, "PATCH, DELETE"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			r := e.forT(t).do(req{method: tt.method, path: tt.path, token: u.Token})
			wantProblem(t, r, http.StatusMethodNotAllowed, "method not allowed")
			if got := r.Header.Get("Allow"); got != tt.allow {
				t.Fatalf("Allow = %q, want %q", got, tt.allow)
			}
		})
	}
	// A wrong method has no route template: it is labelled like an unknown route.
	t.Cleanup(func() {
		r := e.do(req{method: "GET", path: "/metrics"})
		if strings.Contains(string(r.Raw), org) {
			t.Errorf("the exposition contains organisation ID %s of a 405 request", org)
		}
		for _, method := range []string{"GET", "POST", "PUT", "DELETE"} {
			n := 0
			for _, tt := range tests {
				if tt.method == method {
					n++
				}
			}
			series := `saas_api_requests_total{method="` + method + `",path="unmatched",status_code="405"}`
			if v := metricValue(t, string(r.Raw), series); v != float64(n) {
				t.Errorf("%s = %v, want %d", series, v, n)
			}
		}
	})
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	e := setup(t)
	long := strings.Repeat("r", 128)
	tests := []struct {
		name, sent string
		echoed     bool
	}{
		{"Absent", "", false},
		{"SaneToken", "req-123_abc.DEF:42", true},
		{"PrintableWithSpace", "trace 7 / span {9}", true},
		{"128Chars", long, true},
		{"129Chars", long + "r", false},
		{"ControlChar", "abc\tdef", false},
		{"NonASCII", "café-42", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := e.forT(t)
			header := map[string]string{}
			if tt.sent != "" {
				header["X-Request-ID"] = tt.sent
			}
			ok := e.do(req{method: "GET", path: "/healthz", header: header})
			problem := e.do(req{method: "GET", path: "/nope", header: header})
			for _, r := range []response{ok, problem} {
				got := r.Header.Get("X-Request-ID")
				if tt.echoed && got != tt.sent {
					t.Fatalf("X-Request-ID = %q, want the caller's %q echoed", got, tt.sent)
				}
				if !tt.echoed && (got == tt.sent || !ulidPattern.MatchString(got)) {
					t.Fatalf("X-Request-ID = %q for %q sent, want a generated ULID", got, tt.sent)
				}
			}
			wantProblem(t, problem, http.StatusNotFound, "not found")
			if !tt.echoed && ok.Header.Get("X-Request-ID") == problem.Header.Get("X-Request-ID") {
				t.Fatalf("two requests got the same generated ID %q", ok.Header.Get("X-Request-ID"))
			}
		})
	}

	t.Run("AppearsInTheRequestLog", func(t *testing.T) {
		t.Parallel()
		e.forT(t).do(req{method: "GET", path: "/healthz", header: map[string]string{"X-Request-ID": "log-me-please"}})
		if !strings.Contains(e.logs.String(), `"request_id":"log-me-please"`) {
			t.Fatalf("no log record carries request_id log-me-please:\n%s", e.logs.String())
		}
	})
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.teamOrg(tm)
	tests := []struct {
		name   string
		r      req
		status int
	}{
		{"Healthz", req{method: "GET", path: "/healthz"}, 200},
		{"Metrics", req{method: "GET", path: "/metrics"}, 200},
		{"Created", req{method: "POST", path: "/orgs", token: tm.owner.Token, body: map[string]any{"name": uniqueName("Headers")}}, 201},
		{"NoContent", req{method: "DELETE", path: memberURL(org, tm.viewer.ID), token: tm.owner.Token}, 204},
		{"Unauthorized", req{method: "GET", path: "/me"}, 401},
		{"Forbidden", req{method: "GET", path: "/orgs/" + org, token: tm.outsider.Token}, 403},
		{"NotFound", req{method: "GET", path: "/nope"}, 404},
		{"MethodNotAllowed", req{method: "DELETE", path: "/healthz"}, 405},
		{"TooLarge", req{method: "POST", path: "/auth/login", body: `{"email":"` + strings.Repeat("e", 1<<20) + `"}`}, 413},
		{"UnsupportedMediaType", req{method: "POST", path: "/auth/login", body: `x`, header: map[string]string{"Content-Type": "text/plain"}}, 415},
		{"Invalid", req{method: "POST", path: "/auth/login", body: `{}`}, 422},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := e.forT(t).do(tt.r)
			want(t, r, tt.status)
			got := map[string]string{"Cache-Control": r.Header.Get("Cache-Control"), "X-Content-Type-Options": r.Header.Get("X-Content-Type-Options")}
			if wantHeaders := map[string]string{"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}; !maps.Equal(got, wantHeaders) {
				t.Fatalf("headers = %v, want %v", got, wantHeaders)
			}
		})
	}
}

func TestDocsDisabled(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, path := range []string{"/docs", "/redoc", "/openapi.json"} {
		wantProblem(t, e.do(req{method: "GET", path: path}), http.StatusNotFound, "not found")
	}
}
