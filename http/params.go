package http

import (
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/projections"
)

// pathID parses a ULID path parameter; a malformed one is 422.
func pathID(r *http.Request, name string) (saasapi.ID, error) {
	id, err := saasapi.ParseID(chi.URLParam(r, name))
	if err != nil {
		return "", saasapi.Invalid(saasapi.MsgValidation, saasapi.FieldError{Field: name, Message: "value is not a valid ULID"})
	}
	return id, nil
}

// pageParams reads limit (1..100, default 50) and offset (>= 0, default 0).
func pageParams(r *http.Request) (projections.Page, error) {
	q, err := readQuery(r, "limit", "offset")
	if err != nil {
		return projections.Page{}, err
	}
	limit, err := intParam(q.Get("limit"), "limit", 50, 1, 100)
	if err != nil {
		return projections.Page{}, err
	}
	offset, err := intParam(q.Get("offset"), "offset", 0, 0, 1<<31-1)
	if err != nil {
		return projections.Page{}, err
	}
	return projections.Page{Limit: limit, Offset: offset}, nil
}

func intParam(raw, name string, def, lo, hi int) (int, error) {
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < lo || n > hi {
		return 0, saasapi.Invalid(saasapi.MsgValidation, saasapi.FieldError{Field: name,
			Message: name + " must be an integer from " + strconv.Itoa(lo) + " to " + strconv.Itoa(hi)})
	}
	return n, nil
}

// pagination is the pagination block of every list response.
type pagination struct {
	Limit      int     `json:"limit"`
	Offset     int     `json:"offset"`
	Total      int     `json:"total"`
	Count      int     `json:"count"`
	NextCursor *string `json:"next_cursor,omitempty"`
}

// list is the body of every list endpoint.
type list[T any] struct {
	Items      []T        `json:"items"`
	Pagination pagination `json:"pagination"`
}

func newList[T any](items []T, page projections.Page, total int) list[T] {
	if items == nil {
		items = []T{}
	}
	return list[T]{Items: items, Pagination: pagination{Limit: page.Limit, Offset: page.Offset, Total: total, Count: len(items)}}
}

// mapSlice converts read models into response items.
func mapSlice[A, B any](in []A, f func(A) B) []B {
	out := make([]B, len(in))
	for i, a := range in {
		out[i] = f(a)
	}
	return out
}

// setETag sends the entity's stream version as a strong ETag.
func setETag(w http.ResponseWriter, version int64) {
	// The canonical key as Set would store it ("Etag"), without Set's
	// canonicalisation of "ETag" on every response.
	w.Header()["Etag"] = []string{`"` + strconv.FormatInt(version, 10) + `"`}
}

// ifMatch is the version the request's If-Match expects (parseIfMatch);
// checkIfMatch has already refused a value that is not text.
func ifMatch(r *http.Request) *int64 {
	v, _ := parseIfMatch(r.Header.Get("If-Match"))
	return v
}

// meta builds the command metadata of a request.
func meta(r *http.Request) commands.Meta {
	st := stateOf(r.Context())
	return commands.Meta{Principal: st.principal, RequestID: st.requestID, ServerRequestID: st.serverRequestID, IfMatch: ifMatch(r)}
}

// pathIDs parses the named ULID path parameters, in order; the first
// malformed one is 422.
func pathIDs(r *http.Request, names ...string) ([]saasapi.ID, error) {
	ids := make([]saasapi.ID, len(names))
	for i, name := range names {
		id, err := pathID(r, name)
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	return ids, nil
}

// reply ends a handler: err as problem details, or else body with status
// and, when version is positive, the entity's ETag.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, err error, status int, version int64, body any) {
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if version > 0 {
		setETag(w, version)
	}
	encode(w, status, body)
}

// replyNoContent ends a handler with err as problem details or 204.
func (s *Server) replyNoContent(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// gated authorizes the request for perm in the organisation of its path
// and runs the reads that queue adds, all in one round trip: the gate's
// statement and the reads, each guarded by the gate's predicate. It
// answers a refusal itself (401, 404, 403 in the contract's order) and
// reports whether the handler may go on.
func (s *Server) gated(w http.ResponseWriter, r *http.Request, perm saasapi.Permission,
	queue func(b *pgx.Batch, g *projections.Gate) error,
) (saasapi.Access, bool) {
	orgID, err := pathID(r, "organisation_id")
	if err != nil {
		s.writeError(w, r, err)
		return saasapi.Access{}, false
	}
	g := projections.NewGate(principalOf(r), orgID, perm)
	a, err := projections.GatedRead(r.Context(), s.deps.Pool, g, func(b *pgx.Batch) error { return queue(b, g) })
	if err != nil {
		s.writeError(w, r, err)
		return saasapi.Access{}, false
	}
	return a, true
}

// userRead runs the reads of a route that belongs to the signed-in user
// with the check that the user is still active, in one round trip; it
// answers a refusal itself.
func (s *Server) userRead(w http.ResponseWriter, r *http.Request, queue func(b *pgx.Batch, userID saasapi.ID) error) bool {
	userID := principalOf(r).UserID
	var active bool
	b := &pgx.Batch{}
	projections.QueueUserActive(b, userID, &active)
	err := queue(b, userID)
	if err == nil {
		err = s.deps.Pool.SendBatch(r.Context(), b).Close()
	}
	if err == nil && !active {
		err = saasapi.Errorf(saasapi.EUNAUTHENTICATED, saasapi.MsgInvalidToken)
	}
	if err != nil {
		s.writeError(w, r, err)
		return false
	}
	return true
}

// handleOrgList serves an offset-paged list of one organisation's read
// model to callers holding perm.
func handleOrgList[T, R any](s *Server, perm saasapi.Permission,
	list func(*pgx.Batch, projections.Scope, projections.Page, *projections.PageOf[T]) error,
	shape func(T) R,
) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		page, err := pageParams(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var items projections.PageOf[T]
		if _, ok := s.gated(w, r, perm, func(b *pgx.Batch, g *projections.Gate) error {
			return list(b, g, page, &items)
		}); !ok {
			return
		}
		s.reply(w, r, nil, http.StatusOK, 0, newList(mapSlice(items.Items, shape), page, items.Total))
	}
}
