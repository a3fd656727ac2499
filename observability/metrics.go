package observability

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/saasapi/saasapi"
)

// namespace prefixes every family; dashboards of the original service query
// these exact names.
const namespace = "saas_api"

// UnmatchedPath is the path label of requests that matched no route. Labelling
// them with the raw URL would let any caller create series without bound.
const UnmatchedPath = "unmatched"

// Operations of the auth_attempts_total family.
const (
	AuthRegister = "register"
	AuthLogin    = "login"
	AuthToken    = "token"   // access token verification
	AuthAPIKey   = "api_key" // API key verification
)

// Outcomes of the auth_attempts_total family.
const (
	OutcomeSuccess   = "success"
	OutcomeFailure   = "failure"
	OutcomeConflict  = "conflict"  // registration with an email already taken
	OutcomeThrottled = "throttled" // refused by a rate limit before any check
)

// requestBuckets span a cache-warm read (about a millisecond) to a request
// that is about to hit a client's timeout.
var requestBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Metrics holds the service's metric families in a registry of its own. The
// recording methods are safe for concurrent use and do nothing on a nil
// *Metrics, so tests of packages that record metrics may pass nil.
type Metrics struct {
	registry *prometheus.Registry
	handler  http.Handler
	pool     *poolCollector

	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	// series remembers the two series of each (method, route, status), so
	// that a request is counted without a label lookup (requestKey ->
	// requestSeries); the set is bounded as the labels are.
	series          sync.Map
	authAttempts    *prometheus.CounterVec
	authSeries      sync.Map // [2]string{operation, outcome} -> prometheus.Counter, as series
	orgsCreated     prometheus.Counter
	projectsCreated prometheus.Counter
	apiKeysCreated  prometheus.Counter
	apiKeysRevoked  prometheus.Counter
	auditEvents     *prometheus.CounterVec
	idemReplays     prometheus.Counter
	idemConflicts   prometheus.Counter
	ledgerIntegrity prometheus.Counter
}

// NewMetrics returns the service's metric families, with the Go runtime and
// process collectors, registered in a new registry. The database pool
// families appear once RegisterPool has been called.
func NewMetrics() *Metrics {
	requestLabels := []string{"method", "path", "status_code"}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	}
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		pool:     newPoolCollector(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "requests_total",
			Help: "HTTP requests by method, route template and status code.",
		}, requestLabels),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "request_duration_seconds",
			Help:    "HTTP request duration in seconds by method, route template and status code.",
			Buckets: requestBuckets,
		}, requestLabels),
		authAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "auth_attempts_total",
			Help: "Authentication attempts by operation (register, login, token, api_key) and outcome.",
		}, []string{"operation", "outcome"}),
		orgsCreated:     counter("organisations_created_total", "Organisations created."),
		projectsCreated: counter("projects_created_total", "Projects created."),
		apiKeysCreated:  counter("api_keys_created_total", "API keys created."),
		apiKeysRevoked:  counter("api_keys_revoked_total", "API keys revoked."),
		auditEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "audit_events_recorded_total",
			Help: "Audit events recorded by action.",
		}, []string{"action"}),
		idemReplays:   counter("idempotency_replays_total", "Requests answered by replaying a stored idempotent response."),
		idemConflicts: counter("idempotency_conflicts_total", "Idempotency keys reused with a different request body."),
		ledgerIntegrity: counter("ledger_integrity_failures_total",
			"Checkpoints refused because a ledger's stored tree does not extend the last checkpoint signed for it."),
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.pool,
		m.requests, m.requestDuration, m.authAttempts,
		m.orgsCreated, m.projectsCreated, m.apiKeysCreated, m.apiKeysRevoked,
		m.auditEvents, m.idemReplays, m.idemConflicts, m.ledgerIntegrity,
	)
	m.preinitialise()
	// ContinueOnError: a failing collector (say, procfs unreadable in a
	// sandbox) should cost its own series, not the whole scrape.
	m.handler = promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return m
}

// preinitialise creates, at zero, the labelled series that are known up
// front. A labelled family without series is absent from the exposition, so
// dashboards and alerts (rate(), absent()) would see no data rather than zero
// until the first matching event.
func (m *Metrics) preinitialise() {
	// Every router serves GET /healthz, so the request families can be
	// seeded with a series that will be real without inventing a route.
	m.requests.WithLabelValues(http.MethodGet, "/healthz", "200")
	m.requestDuration.WithLabelValues(http.MethodGet, "/healthz", "200")
	for _, op := range []string{AuthRegister, AuthLogin, AuthToken, AuthAPIKey} {
		for _, outcome := range []string{OutcomeSuccess, OutcomeFailure} {
			m.authAttempts.WithLabelValues(op, outcome)
		}
	}
	m.authAttempts.WithLabelValues(AuthRegister, OutcomeConflict)
	m.authAttempts.WithLabelValues(AuthRegister, OutcomeThrottled)
	m.authAttempts.WithLabelValues(AuthLogin, OutcomeThrottled)
	// Audit actions are the event catalogue's type names.
	for _, action := range saasapi.EventTypes() {
		m.auditEvents.WithLabelValues(action)
	}
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler { return m.handler }

// RegisterPool makes the db_pool families report the statistics that stats
// returns; it is called at every scrape, so it must be cheap and safe for
// concurrent use (pgxpool's Stat is both). A later call replaces the
// function; nil removes the families again.
func (m *Metrics) RegisterPool(stats func() PoolStat) { m.pool.set(stats) }

// ObserveRequest records a finished HTTP request. path must be the route
// template (such as /orgs/{organisation_id}) or UnmatchedPath, never the raw
// URL path, to keep the number of series bounded.
func (m *Metrics) ObserveRequest(method, path string, status int, d time.Duration) {
	if m == nil {
		return
	}
	k := requestKey{method: method, path: path, status: status}
	v, ok := m.series.Load(k)
	if !ok {
		code := strconv.Itoa(status)
		v, _ = m.series.LoadOrStore(k, requestSeries{count: m.requests.WithLabelValues(method, path, code),
			duration: m.requestDuration.WithLabelValues(method, path, code)})
	}
	series := v.(requestSeries)
	series.count.Inc()
	series.duration.Observe(d.Seconds())
}

type requestKey struct {
	method, path string
	status       int
}

type requestSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// AuthAttempt records an authentication attempt; operation is one of the
// Auth constants and outcome one of the Outcome constants.
func (m *Metrics) AuthAttempt(operation, outcome string) {
	if m == nil {
		return
	}
	k := [2]string{operation, outcome}
	c, ok := m.authSeries.Load(k)
	if !ok {
		c, _ = m.authSeries.LoadOrStore(k, m.authAttempts.WithLabelValues(operation, outcome))
	}
	c.(prometheus.Counter).Inc()
}

// OrganisationCreated records a created organisation.
func (m *Metrics) OrganisationCreated() {
	if m != nil {
		m.orgsCreated.Inc()
	}
}

// ProjectCreated records a created project.
func (m *Metrics) ProjectCreated() {
	if m != nil {
		m.projectsCreated.Inc()
	}
}

// APIKeyCreated records a created API key.
func (m *Metrics) APIKeyCreated() {
	if m != nil {
		m.apiKeysCreated.Inc()
	}
}

// APIKeyRevoked records a revoked API key.
func (m *Metrics) APIKeyRevoked() {
	if m != nil {
		m.apiKeysRevoked.Inc()
	}
}

// IdempotencyReplay records a request answered from a stored response.
func (m *Metrics) IdempotencyReplay() {
	if m != nil {
		m.idemReplays.Inc()
	}
}

// IdempotencyConflict records an idempotency key reused with another body.
func (m *Metrics) IdempotencyConflict() {
	if m != nil {
		m.idemConflicts.Inc()
	}
}

// LedgerIntegrityFailure records a checkpoint refused because the stored
// tree does not extend the last signed one: the database was changed
// behind the service's back. Alert on any increase.
func (m *Metrics) LedgerIntegrityFailure() {
	if m != nil {
		m.ledgerIntegrity.Inc()
	}
}

// CountEvents counts the events of one committed command: each is an
// audit event, and creations and revocations feed the domain counters. It
// is called after commit only, so a rolled-back command counts nothing.
func (m *Metrics) CountEvents(evs []saasapi.Event) {
	for _, e := range evs {
		m.AuditEventRecorded(e.Type)
		switch e.Type {
		case saasapi.EventOrganisationCreated:
			m.OrganisationCreated()
		case saasapi.EventProjectCreated:
			m.ProjectCreated()
		case saasapi.EventAPIKeyCreated:
			m.APIKeyCreated()
		case saasapi.EventAPIKeyRevoked:
			m.APIKeyRevoked()
		}
	}
}

// AuditEventRecorded records an audit event; action is its event type, such
// as saasapi.EventProjectCreated.
func (m *Metrics) AuditEventRecorded(action string) {
	if m == nil {
		return
	}
	m.auditEvents.WithLabelValues(action).Inc()
}
