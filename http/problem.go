package http

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/saasapi/saasapi"
)

// statusOf maps domain error codes to HTTP statuses: the one table.
var statusOf = map[string]int{
	saasapi.EINVALID:         http.StatusUnprocessableEntity,
	saasapi.EUNAUTHENTICATED: http.StatusUnauthorized,
	saasapi.EFORBIDDEN:       http.StatusForbidden,
	saasapi.ENOTFOUND:        http.StatusNotFound,
	saasapi.ECONFLICT:        http.StatusConflict,
	saasapi.EPRECONDITION:    http.StatusPreconditionFailed,
	saasapi.EUNAVAILABLE:     http.StatusServiceUnavailable,
	saasapi.EINTERNAL:        http.StatusInternalServerError,
}

// problem is an RFC 9457 problem details body.
type problem struct {
	Type      string               `json:"type"`
	Title     string               `json:"title"`
	Status    int                  `json:"status"`
	Detail    string               `json:"detail"`
	RequestID string               `json:"request_id"`
	Errors    []saasapi.FieldError `json:"errors,omitzero"`
}

// writeProblem sends a problem details response with the given status.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, detail string, fields []saasapi.FieldError) {
	if status == http.StatusUnprocessableEntity && fields == nil {
		fields = []saasapi.FieldError{}
	}
	if status == http.StatusUnauthorized && detail != saasapi.MsgInvalidCredentials {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	w.Header().Set("Content-Type", "application/problem+json")
	encodeWithType(w, status, problem{
		Type:      "about:blank",
		Title:     http.StatusText(status),
		Status:    status,
		Detail:    detail,
		RequestID: requestIDOf(r.Context()),
		Errors:    fields,
	})
}

// writeError sends err as problem details. Domain errors carry the
// contract's message; anything else is logged and answered with a generic
// 500 so that internals never leak.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *saasapi.Error
	if !errors.As(err, &e) {
		if r.Context().Err() != nil {
			// The caller went away; nobody reads this answer.
			writeProblem(w, r, http.StatusServiceUnavailable, "request cancelled", nil)
			return
		}
		s.deps.Logger.ErrorContext(r.Context(), "internal error",
			slog.String("request_id", requestIDOf(r.Context())), slog.String("error", err.Error()))
		writeProblem(w, r, http.StatusInternalServerError, "internal server error", nil)
		return
	}
	status, ok := statusOf[e.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if detail := stateOf(r.Context()).authDetail; e.Code == saasapi.EUNAUTHENTICATED && detail != "" {
		// The gate refused the principal: the route's 401 detail.
		writeProblem(w, r, status, detail, nil)
		return
	}
	writeProblem(w, r, status, e.Message, e.Fields)
}

func (s *Server) handleNotFound() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, http.StatusNotFound, "not found", nil)
	}
}

// handleMethodNotAllowed answers 405 with the Allow header RFC 9110
// requires; chi sets it only for its own default handler.
func (s *Server) handleMethodNotAllowed() http.HandlerFunc {
	methods := []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
	return func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.RawPath
		if path == "" {
			path = r.URL.Path
		}
		var allowed []string
		for _, m := range methods {
			if s.router.Match(chi.NewRouteContext(), m, path) {
				allowed = append(allowed, m)
			}
		}
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
		}
		writeProblem(w, r, http.StatusMethodNotAllowed, "method not allowed", nil)
	}
}
