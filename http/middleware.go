package http

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/observability"
)

type ctxKey int

const requestStateKey ctxKey = iota

// requestState is per-request data that inner handlers fill in and the
// outer logging and metrics middleware read after the handler returned.
type requestState struct {
	requestID string
	// serverRequestID is generated for every request, whatever the caller
	// sent; events of anonymous actors carry it.
	serverRequestID string
	client          netip.Addr
	principal       saasapi.Principal
	// authOp is how the principal authenticated (observability.Auth*),
	// and authDetail the route's 401 detail when the gate refuses it.
	authOp, authDetail string
	// rec wraps the response writer; kept here to save an allocation.
	rec statusRecorder
}

func stateOf(ctx context.Context) *requestState {
	st, _ := ctx.Value(requestStateKey).(*requestState)
	if st == nil {
		return &requestState{}
	}
	return st
}

func requestIDOf(ctx context.Context) string { return stateOf(ctx).requestID }

// methodLabel maps a request method to the fixed set that metrics and logs
// show: a caller cannot add label values (or log bytes) by making methods up.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return method
	}
	return "other"
}

// maxLogField caps the bytes of a request-derived value in a log line.
const maxLogField = 256

// logField makes a request-derived value safe to log: valid UTF-8 and at
// most maxLogField bytes (cut at a character boundary, marked with "...").
func logField(v string) string {
	v = strings.ToValidUTF8(v, "\uFFFD")
	if len(v) <= maxLogField {
		return v
	}
	cut := maxLogField - len("...")
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut] + "..."
}

// saneRequestID accepts a caller's request ID when it is printable ASCII of
// at most 128 characters, so that it is safe to log and echo.
func saneRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := range len(id) {
		if id[i] < 0x20 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// requestContext assigns the request ID, and after the handler records the
// request's metrics and its one log line.
func (s *Server) requestContext(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		st := &requestState{
			requestID:       r.Header.Get("X-Request-ID"),
			serverRequestID: saasapi.NewID().String(),
			client:          clientAddress(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), s.deps.TrustedProxies),
		}
		if !saneRequestID(st.requestID) {
			st.requestID = st.serverRequestID
		}
		// Set would canonicalise the key anew on every response.
		w.Header()["X-Request-Id"] = []string{st.requestID}
		ctx := context.WithValue(r.Context(), requestStateKey, st)
		st.rec = statusRecorder{ResponseWriter: w}
		rec := &st.rec
		next.ServeHTTP(rec, r.WithContext(ctx))

		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		route := "unmatched"
		if rc := chi.RouteContext(ctx); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		if st.authOp != "" {
			outcome := observability.OutcomeSuccess
			if rec.status == http.StatusUnauthorized {
				outcome = observability.OutcomeFailure
			}
			s.deps.Metrics.AuthAttempt(st.authOp, outcome)
		}
		elapsed := time.Since(start)
		method := methodLabel(r.Method)
		s.deps.Metrics.ObserveRequest(method, route, rec.status, elapsed)
		if !s.deps.Logger.Enabled(ctx, slog.LevelInfo) {
			// Not even the line's fields are built when it is not written.
			return
		}
		attrs := []slog.Attr{
			slog.String("request_id", st.requestID),
			slog.String("server_request_id", st.serverRequestID),
			slog.String("method", method),
			slog.String("route", route),
			slog.String("path", logField(r.URL.EscapedPath())),
			slog.String("user_agent", logField(r.UserAgent())),
			slog.String("client_address", st.client.String()),
			slog.Int("status", rec.status),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
		}
		if st.principal.Type != "" {
			attrs = append(attrs, slog.String("principal_type", string(st.principal.Type)),
				slog.String("principal_id", st.principal.ID().String()))
		}
		s.deps.Logger.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
	})
}

// rejectUnknownMethods answers 501 to a method outside the fixed set that
// the service knows (RFC 9110, section 9.1), before routing.
func (s *Server) rejectUnknownMethods(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if methodLabel(r.Method) == "other" {
			writeProblem(w, r, http.StatusNotImplemented, "method not implemented", nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a panic into a logged 500 problem.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(v)
				}
				s.deps.Logger.ErrorContext(r.Context(), "panic", slog.String("request_id", requestIDOf(r.Context())),
					slog.Any("panic", v))
				writeProblem(w, r, http.StatusInternalServerError, "internal server error", nil)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// Header values every response carries, shared rather than allocated per
// response: a full slice (cap = len) is never written through, Add
// appends to a copy and Set replaces it.
var (
	noStore         = []string{"no-store"}[:1:1]
	noSniff         = []string{"nosniff"}[:1:1]
	jsonContentType = []string{"application/json"}[:1:1]
)

// secureHeaders marks every response as not cacheable and not sniffable:
// they carry tenant data.
func (s *Server) secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Cache-Control"] = noStore
		h["X-Content-Type-Options"] = noSniff
		next.ServeHTTP(w, r)
	})
}

// bearerToken extracts the token of a Bearer Authorization header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// requireUser admits only callers with a validly signed user access
// token; an API key here is just an invalid token. Whether the user still
// exists and is active is asked by the route's own statement (the gate),
// in the same round trip as its reads.
func (s *Server) requireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r)
		if !ok {
			writeProblem(w, r, http.StatusUnauthorized, saasapi.MsgAuthRequired, nil)
			return
		}
		userID, err := s.verifyToken(token)
		if err != nil {
			writeProblem(w, r, http.StatusUnauthorized, saasapi.MsgInvalidToken, nil)
			return
		}
		s.authenticated(r, saasapi.UserPrincipal(userID), observability.AuthToken, saasapi.MsgInvalidToken)
		next.ServeHTTP(w, r)
	})
}

// verifyToken checks an access token's signature and lifetime: no query.
func (s *Server) verifyToken(token string) (saasapi.ID, error) {
	userID, err := s.deps.Tokens.Verify(token)
	if err != nil {
		s.deps.Metrics.AuthAttempt(observability.AuthToken, observability.OutcomeFailure)
	}
	return userID, err
}

// authenticated records the request's principal, whose credential was
// verified, and the 401 detail of its route. The attempt is counted when
// the request ends: a success, unless the gate found that the principal
// may no longer act (401).
func (s *Server) authenticated(r *http.Request, p saasapi.Principal, op, detail string) {
	st := stateOf(r.Context())
	st.principal, st.authOp, st.authDetail = p, op, detail
}

// writeAuthError answers a failed authentication with the route's 401
// detail; anything else (the database being down) is not the caller's fault.
func (s *Server) writeAuthError(w http.ResponseWriter, r *http.Request, err error, detail string) {
	if saasapi.ErrorCode(err) == saasapi.EUNAUTHENTICATED {
		writeProblem(w, r, http.StatusUnauthorized, detail, nil)
		return
	}
	s.writeError(w, r, err)
}

// principalOf returns the authenticated caller.
func principalOf(r *http.Request) saasapi.Principal { return stateOf(r.Context()).principal }
