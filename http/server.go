// Package http is the HTTP transport: the chi router with every route in
// routes.go, thin handlers that decode, call a command or a read query and
// encode, the middleware, and problem-details errors. Callers import it as
// apihttp.
package http

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/observability"
)

// Info describes the running service, for /healthz.
type Info struct {
	AppName     string
	Version     string
	Environment string
}

// Deps is everything the handlers need. There are no globals: tests build
// as many servers as they like.
type Deps struct {
	Info        Info
	Commands    *commands.Service
	Pool        *pgxpool.Pool
	Tokens      *auth.TokenIssuer
	Metrics     *observability.Metrics
	Logger      *slog.Logger
	DocsEnabled bool
	// Ledger signs checkpoints of the ledgers' trees; nil gives a key
	// generated for this server alone (tests), which serve never does.
	Ledger *eventstore.LedgerSigner
	// Ready reports whether the database answers and its schema is current;
	// nil means only a ping.
	Ready func(ctx context.Context) error
	// Throttle sets the abuse limits; nil means DefaultThrottle.
	Throttle *Throttle
	// TrustedProxies are the peers whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
}

// Server is the HTTP handler of the API.
type Server struct {
	deps   Deps
	router chi.Router
	limits limiters
}

// NewServer returns the API's handler.
func NewServer(deps Deps) *Server {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Metrics == nil {
		deps.Metrics = observability.NewMetrics()
	}
	if deps.Ledger == nil {
		deps.Ledger = ephemeralLedgerSigner(deps.Info.AppName)
	}
	throttle := DefaultThrottle
	if deps.Throttle != nil {
		throttle = *deps.Throttle
	}
	s := &Server{deps: deps, router: chi.NewRouter(), limits: newLimiters(throttle)}
	s.routes()
	return s
}

// ServeHTTP serves a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// Routes returns the route templates the router serves, as "METHOD /path".
func (s *Server) Routes() []string {
	var out []string
	_ = chi.Walk(s.router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		out = append(out, method+" "+route)
		return nil
	})
	return out
}
