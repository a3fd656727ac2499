package observability_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/observability"
)

// scrape returns the text exposition the handler serves.
func scrape(t *testing.T, m *observability.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d, want 200; body:\n%s", rec.Code, rec.Body)
	}
	body, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// hasLine reports whether the exposition holds exactly this line.
func hasLine(exposition, line string) bool {
	for l := range strings.Lines(exposition) {
		if strings.TrimSuffix(l, "\n") == line {
			return true
		}
	}
	return false
}

func fixedPool() observability.PoolStat {
	return observability.PoolStat{
		TotalConns: 4, IdleConns: 3, AcquiredConns: 1, MaxConns: 10,
		AcquireCount: 42, EmptyAcquireCount: 2, AcquireDuration: 1500 * time.Millisecond,
	}
}

func TestMetrics_EveryFamilyIsExposedFromStart(t *testing.T) {
	t.Parallel()
	m := observability.NewMetrics()
	m.RegisterPool(fixedPool)
	out := scrape(t, m)

	families := map[string]string{
		"saas_api_requests_total":                     "counter",
		"saas_api_request_duration_seconds":           "histogram",
		"saas_api_auth_attempts_total":                "counter",
		"saas_api_organisations_created_total":        "counter",
		"saas_api_projects_created_total":             "counter",
		"saas_api_api_keys_created_total":             "counter",
		"saas_api_api_keys_revoked_total":             "counter",
		"saas_api_audit_events_recorded_total":        "counter",
		"saas_api_idempotency_replays_total":          "counter",
		"saas_api_idempotency_conflicts_total":        "counter",
		"saas_api_ledger_integrity_failures_total":    "counter",
		"saas_api_db_pool_total_connections":          "gauge",
		"saas_api_db_pool_idle_connections":           "gauge",
		"saas_api_db_pool_acquired_connections":       "gauge",
		"saas_api_db_pool_max_connections":            "gauge",
		"saas_api_db_pool_acquire_total":              "counter",
		"saas_api_db_pool_empty_acquire_total":        "counter",
		"saas_api_db_pool_acquire_wait_seconds_total": "counter",
		"go_goroutines":                               "gauge",
		"process_start_time_seconds":                  "gauge",
	}
	for name, typ := range families {
		if want := "# TYPE " + name + " " + typ; !hasLine(out, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	for _, line := range []string{
		`saas_api_auth_attempts_total{operation="login",outcome="success"} 0`,
		`saas_api_auth_attempts_total{operation="login",outcome="failure"} 0`,
		`saas_api_auth_attempts_total{operation="register",outcome="success"} 0`,
		`saas_api_auth_attempts_total{operation="register",outcome="failure"} 0`,
		`saas_api_audit_events_recorded_total{action="` + saasapi.EventProjectCreated + `"} 0`,
		`saas_api_db_pool_total_connections 4`,
		`saas_api_db_pool_idle_connections 3`,
		`saas_api_db_pool_acquired_connections 1`,
		`saas_api_db_pool_max_connections 10`,
		`saas_api_db_pool_acquire_total 42`,
		`saas_api_db_pool_empty_acquire_total 2`,
		`saas_api_db_pool_acquire_wait_seconds_total 1.5`,
	} {
		if !hasLine(out, line) {
			t.Errorf("exposition lacks %q", line)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", out)
	}
}

func TestMetrics_PoolFamiliesAbsentWithoutPool(t *testing.T) {
	t.Parallel()
	m := observability.NewMetrics()
	if out := scrape(t, m); strings.Contains(out, "saas_api_db_pool_") {
		t.Errorf("pool families exposed before RegisterPool; want none (zeros would claim an empty pool)")
	}
	m.RegisterPool(fixedPool)
	m.RegisterPool(nil)
	if out := scrape(t, m); strings.Contains(out, "saas_api_db_pool_") {
		t.Errorf("pool families exposed after RegisterPool(nil); want none")
	}
}

func TestMetrics_RecordedValuesCarryTheirLabels(t *testing.T) {
	t.Parallel()
	m := observability.NewMetrics()
	m.ObserveRequest(http.MethodPost, "/orgs/{organisation_id}/projects", http.StatusCreated, 30*time.Millisecond)
	m.ObserveRequest(http.MethodPost, "/orgs/{organisation_id}/projects", http.StatusCreated, 2*time.Second)
	m.AuthAttempt(observability.AuthLogin, observability.OutcomeFailure)
	m.OrganisationCreated()
	m.ProjectCreated()
	m.ProjectCreated()
	m.APIKeyCreated()
	m.APIKeyRevoked()
	m.AuditEventRecorded(saasapi.EventMemberAdded)
	m.IdempotencyReplay()
	m.IdempotencyConflict()
	out := scrape(t, m)

	const req = `{method="POST",path="/orgs/{organisation_id}/projects",status_code="201"}`
	for _, line := range []string{
		`saas_api_requests_total` + req + ` 2`,
		`saas_api_request_duration_seconds_count` + req + ` 2`,
		`saas_api_request_duration_seconds_sum` + req + ` 2.03`,
		`saas_api_request_duration_seconds_bucket{method="POST",path="/orgs/{organisation_id}/projects",status_code="201",le="0.05"} 1`,
		`saas_api_request_duration_seconds_bucket{method="POST",path="/orgs/{organisation_id}/projects",status_code="201",le="2.5"} 2`,
		`saas_api_auth_attempts_total{operation="login",outcome="failure"} 1`,
		`saas_api_organisations_created_total 1`,
		`saas_api_projects_created_total 2`,
		`saas_api_api_keys_created_total 1`,
		`saas_api_api_keys_revoked_total 1`,
		`saas_api_audit_events_recorded_total{action="member.added"} 1`,
		`saas_api_idempotency_replays_total 1`,
		`saas_api_idempotency_conflicts_total 1`,
	} {
		if !hasLine(out, line) {
			t.Errorf("exposition lacks %q", line)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", out)
	}
}

func TestMetrics_NilRecordsNothing(t *testing.T) {
	t.Parallel()
	var m *observability.Metrics
	// None of these may panic: packages under test pass a nil *Metrics.
	m.ObserveRequest(http.MethodGet, "/healthz", 200, time.Millisecond)
	m.AuthAttempt(observability.AuthLogin, observability.OutcomeSuccess)
	m.OrganisationCreated()
	m.ProjectCreated()
	m.APIKeyCreated()
	m.APIKeyRevoked()
	m.AuditEventRecorded(saasapi.EventAPIKeyRevoked)
	m.IdempotencyReplay()
	m.IdempotencyConflict()
}

func TestMetrics_ConcurrentRecordingAndScraping(t *testing.T) {
	t.Parallel()
	m := observability.NewMetrics()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				m.ObserveRequest(http.MethodGet, "/orgs", http.StatusOK, time.Millisecond)
				m.AuditEventRecorded(saasapi.EventProjectCreated)
				m.RegisterPool(fixedPool)
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			// Not scrape: t.Fatal must not be called off the test goroutine.
			rec := httptest.NewRecorder()
			m.Handler().ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/metrics", nil))
			if rec.Code != http.StatusOK {
				t.Errorf("concurrent scrape: status %d, want 200", rec.Code)
			}
		}
	})
	wg.Wait()
	if out := scrape(t, m); !hasLine(out, `saas_api_requests_total{method="GET",path="/orgs",status_code="200"} 800`) {
		t.Errorf("want 800 requests counted across goroutines; exposition:\n%s", out)
	}
}
