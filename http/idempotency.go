package http

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
)

// maxIdempotencyKey is the longest Idempotency-Key accepted.
const maxIdempotencyKey = 255

// idempotencyOf reads the Idempotency-Key header of a request whose JSON
// body was raw. It returns nil without the header, and a 422 for a key that
// is empty, longer than 255 characters or not text. The body is
// fingerprinted in a canonical form (keys sorted, white space dropped), so
// a retry that re-serialises the same JSON still matches.
func idempotencyOf(r *http.Request, raw []byte) (*commands.Idempotency, error) {
	values, present := r.Header[http.CanonicalHeaderKey("Idempotency-Key")]
	if !present {
		return nil, nil
	}
	key := ""
	if len(values) > 0 {
		key = values[0]
	}
	if len(values) != 1 || key == "" || len([]rune(key)) > maxIdempotencyKey {
		return nil, saasapi.Invalid(saasapi.MsgValidation, saasapi.FieldError{Field: "Idempotency-Key",
			Message: "Idempotency-Key must be between 1 and 255 characters"})
	}
	if !saasapi.ValidText(key) {
		return nil, saasapi.Invalid(saasapi.MsgValidation, saasapi.FieldError{Field: "Idempotency-Key", Message: textMessage})
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	canonical, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(canonical)
	return &commands.Idempotency{Key: key, Method: r.Method, Path: canonicalPath(r), RequestHash: sum[:]}, nil
}

// canonicalPath is the request's path with every ID parameter in canonical
// form, so that a retry that spells an ID in lower case is the same scope.
func canonicalPath(r *http.Request) string {
	rc := chi.RouteContext(r.Context())
	if rc == nil || rc.RoutePattern() == "" {
		return r.URL.Path
	}
	path := rc.RoutePattern()
	for i, key := range rc.URLParams.Keys {
		value := rc.URLParams.Values[i]
		if id, err := saasapi.ParseID(value); err == nil {
			value = id.String()
		}
		path = strings.Replace(path, "{"+key+"}", value, 1)
	}
	return path
}

// renderJSON is a Render for results whose replay is the same JSON.
func renderJSON[T, R any](status int, shape func(T) R) commands.Render[T] {
	return func(v T) (commands.Rendered, error) {
		body, err := marshalBody(shape(v))
		return commands.Rendered{Status: status, Body: body}, err
	}
}

// marshalBody encodes a response body the way encode does.
func marshalBody(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	return append(b, '\n'), err
}

// decodeIdempotent decodes a creation's body into dst and reads its
// Idempotency-Key, answering a failure itself; it reports whether the
// handler may go on.
func (s *Server) decodeIdempotent(w http.ResponseWriter, r *http.Request, dst any, required ...string) (*commands.Idempotency, bool) {
	raw, ok := s.decodeBody(w, r, dst, required...)
	if !ok {
		return nil, false
	}
	idem, err := idempotencyOf(r, raw)
	if err != nil {
		s.writeError(w, r, err)
		return nil, false
	}
	return idem, true
}

// replyOutcome ends a creation: err as problem details (counting an
// idempotency conflict), or else the rendered outcome; a replay is marked
// and counted, a fresh creation carries ETag "1" when version1 is set (a
// new entity is version 1 of its stream; a replay cannot know the current
// version).
func (s *Server) replyOutcome(w http.ResponseWriter, r *http.Request, out commands.Outcome, err error, version1 bool) {
	if err != nil {
		s.writeCommandError(w, r, err)
		return
	}
	if out.Replayed {
		w.Header().Set("Idempotency-Replayed", "true")
		s.deps.Metrics.IdempotencyReplay()
	} else if version1 {
		setETag(w, 1)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(out.Status)
	_, _ = w.Write(out.Body)
}

// writeCommandError is writeError that also counts idempotency conflicts.
func (s *Server) writeCommandError(w http.ResponseWriter, r *http.Request, err error) {
	var e *saasapi.Error
	if errors.As(err, &e) && e.Message == saasapi.MsgIdempotencyMismatch {
		s.deps.Metrics.IdempotencyConflict()
	}
	s.writeError(w, r, err)
}
