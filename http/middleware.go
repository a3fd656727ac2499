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
	"github.com/saasapi/saasapi/projections"
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
		w.Header().Set("X-Request-ID", st.requestID)
		ctx := context.WithValue(r.Context(), requestStateKey, st)
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(ctx))

		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		route := "unmatched"
		if rc := chi.RouteContext(ctx); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		elapsed := time.Since(start)
		method := methodLabel(r.Method)
		s.deps.Metrics.ObserveRequest(method, route, rec.status, elapsed)
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

// secureHeaders marks every response as not cacheable and not sniffable:
// they carry tenant data.
func (s *Server) secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
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

// requireUser admits only callers with a valid user access token; an API
// key here is just an invalid token.
func (s *Server) requireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r)
		if !ok {
			writeProblem(w, r, http.StatusUnauthorized, saasapi.MsgAuthRequired, nil)
			return
		}
		userID, err := s.verifyUser(r.Context(), token)
		if err != nil {
			s.writeAuthError(w, r, err, saasapi.MsgInvalidToken)
			return
		}
		stateOf(r.Context()).principal = saasapi.UserPrincipal(userID)
		next.ServeHTTP(w, r)
	})
}

// verifyUser checks an access token and that its user still exists and is
// active: a token outlives nothing.
func (s *Server) verifyUser(ctx context.Context, token string) (saasapi.ID, error) {
	userID, err := s.deps.Tokens.Verify(token)
	if err != nil {
		s.deps.Metrics.AuthAttempt(observability.AuthToken, observability.OutcomeFailure)
		return "", err
	}
	active, err := s.userActive(ctx, userID)
	if err != nil {
		return "", err
	}
	if !active {
		s.deps.Metrics.AuthAttempt(observability.AuthToken, observability.OutcomeFailure)
		return "", saasapi.Errorf(saasapi.EUNAUTHENTICATED, saasapi.MsgInvalidToken)
	}
	s.deps.Metrics.AuthAttempt(observability.AuthToken, observability.OutcomeSuccess)
	return userID, nil
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

func (s *Server) userActive(ctx context.Context, userID saasapi.ID) (bool, error) {
	u, err := projections.GetUser(ctx, s.deps.Pool, userID)
	if saasapi.ErrorCode(err) == saasapi.ENOTFOUND {
		return false, nil
	}
	return u.IsActive, err
}

// principalOf returns the authenticated caller.
func principalOf(r *http.Request) saasapi.Principal { return stateOf(r.Context()).principal }
