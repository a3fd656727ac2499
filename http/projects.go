package http

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/projections"
)

type projectResponse struct {
	ID              saasapi.ID  `json:"id"`
	OrganisationID  saasapi.ID  `json:"organisation_id"`
	Name            string      `json:"name"`
	Status          string      `json:"status"`
	Description     *string     `json:"description"`
	CreatedByUserID *saasapi.ID `json:"created_by_user_id"`
	UpdatedByUserID *saasapi.ID `json:"updated_by_user_id"`
	CreatedAt       time.Time   `json:"created_at"`
	UpdatedAt       time.Time   `json:"updated_at"`
}

func newProjectResponse(p projections.Project) projectResponse {
	return projectResponse{
		ID: p.ID, OrganisationID: p.OrganisationID, Name: p.Name, Status: p.Status, Description: p.Description,
		CreatedByUserID: p.CreatedByUserID, UpdatedByUserID: p.UpdatedByUserID,
		CreatedAt: p.CreatedAt.UTC(), UpdatedAt: p.UpdatedAt.UTC(),
	}
}

func (s *Server) handleCreateProject() http.HandlerFunc {
	type request struct {
		Name        string  `json:"name"`
		Description *string `json:"description"`
		Status      *string `json:"status" null:"no"`
	}
	render := renderJSON(http.StatusCreated, newProjectResponse)
	return func(w http.ResponseWriter, r *http.Request) {
		orgID, err := pathID(r, "organisation_id")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var req request
		idem, ok := s.decodeIdempotent(w, r, &req, "name")
		if !ok {
			return
		}
		in := commands.CreateProjectInput{Name: req.Name, Description: req.Description, Status: req.Status}
		out, err := s.deps.Commands.CreateProject(r.Context(), meta(r), orgID, in, idem, render)
		s.replyOutcome(w, r, out, err, true)
	}
}

// projectCursor is the opaque keyset cursor of the project list: the
// query it continues and the last item of the previous page.
type projectCursor struct {
	Sort   projections.ProjectSort `json:"s"`
	Desc   bool                    `json:"d"`
	Status string                  `json:"st,omitempty"`
	Name   string                  `json:"n,omitempty"`
	ID     saasapi.ID              `json:"i"`
	Key    string                  `json:"k"`
	At     time.Time               `json:"t"`
}

func encodeCursor(c projectCursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func errBadCursor() error {
	return saasapi.Invalid(saasapi.MsgValidation, saasapi.FieldError{Field: "cursor",
		Message: "cursor is not valid for this query"})
}

// maxCursor bounds a cursor: one of ours is a few hundred bytes.
const maxCursor = 4096

// decodeCursor reads a project list cursor. A cursor is caller input like
// any parameter: its query must be one the parameters themselves could have
// asked for, and its strings text.
func decodeCursor(raw string) (projectCursor, error) {
	var c projectCursor
	if len(raw) > maxCursor {
		return projectCursor{}, errBadCursor()
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || json.Unmarshal(b, &c) != nil || !jsonText(b) || c.ID == "" {
		return projectCursor{}, errBadCursor()
	}
	if _, err := saasapi.ParseID(c.ID.String()); err != nil {
		return projectCursor{}, errBadCursor()
	}
	switch c.Sort {
	case projections.SortCreatedAt, projections.SortName, projections.SortStatus:
	default:
		return projectCursor{}, errBadCursor()
	}
	if (c.Status != "" && c.Status != projections.ProjectActive && c.Status != projections.ProjectArchived) ||
		len([]rune(c.Name)) > 160 || len([]rune(c.Key)) > 160 {
		return projectCursor{}, errBadCursor()
	}
	return c, nil
}

// projectQuery reads the list parameters of A.6 and B.3.
func projectQuery(r *http.Request) (projections.ProjectQuery, error) {
	page, err := pageParams(r)
	if err != nil {
		return projections.ProjectQuery{}, err
	}
	q, err := readQuery(r, "status", "name", "sort_by", "sort_direction", "cursor")
	if err != nil {
		return projections.ProjectQuery{}, err
	}
	pq := projections.ProjectQuery{Page: page, Sort: projections.SortCreatedAt, Desc: true, Name: q.Get("name")}
	var fields []saasapi.FieldError
	switch st := q.Get("status"); st {
	case "", projections.ProjectActive, projections.ProjectArchived:
		pq.Status = st
	default:
		fields = append(fields, saasapi.FieldError{Field: "status", Message: "status must be active or archived"})
	}
	switch sb := projections.ProjectSort(q.Get("sort_by")); sb {
	case "":
	case projections.SortCreatedAt, projections.SortName, projections.SortStatus:
		pq.Sort = sb
	default:
		fields = append(fields, saasapi.FieldError{Field: "sort_by", Message: "sort_by must be created_at, name or status"})
	}
	switch sd := q.Get("sort_direction"); sd {
	case "", "desc":
	case "asc":
		pq.Desc = false
	default:
		fields = append(fields, saasapi.FieldError{Field: "sort_direction", Message: "sort_direction must be asc or desc"})
	}
	if len([]rune(pq.Name)) > 160 {
		fields = append(fields, saasapi.FieldError{Field: "name", Message: "name filter must be at most 160 characters"})
	}
	if len(fields) > 0 {
		return projections.ProjectQuery{}, saasapi.Invalid(saasapi.MsgValidation, fields...)
	}
	raw := q.Get("cursor")
	if raw == "" {
		return pq, nil
	}
	// A cursor continues the query it came from: parameters given next to
	// it must agree with it, and omitted ones are taken from it.
	c, err := decodeCursor(raw)
	if err != nil {
		return projections.ProjectQuery{}, err
	}
	if page.Offset != 0 ||
		(q.Has("sort_by") && c.Sort != pq.Sort) || (q.Has("sort_direction") && c.Desc != pq.Desc) ||
		(q.Has("status") && c.Status != pq.Status) || (q.Has("name") && c.Name != pq.Name) {
		return projections.ProjectQuery{}, errBadCursor()
	}
	pq.Sort, pq.Desc, pq.Status, pq.Name = c.Sort, c.Desc, c.Status, c.Name
	pq.After = &projections.Project{ID: c.ID, CreatedAt: c.At, Name: c.Key, Status: c.Key}
	return pq, nil
}

func (s *Server) handleListProjects() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pq, err := projectQuery(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var page projections.ProjectPage
		if _, ok := s.gated(w, r, saasapi.PermReadProjects, func(b *pgx.Batch, g *projections.Gate) error {
			return projections.QueueListProjects(b, g, pq, &page)
		}); !ok {
			return
		}
		items, total, more := page.Items, page.Total, page.More
		body := newList(mapSlice(items, newProjectResponse), pq.Page, total)
		if pq.After != nil {
			body.Pagination.Offset = 0
		}
		if more {
			last := items[len(items)-1]
			next := encodeCursor(projectCursor{Sort: pq.Sort, Desc: pq.Desc, Status: pq.Status, Name: pq.Name,
				ID: last.ID, Key: pq.SortKey(last), At: last.CreatedAt.UTC()})
			body.Pagination.NextCursor = &next
		}
		s.reply(w, r, nil, http.StatusOK, 0, body)
	}
}

func (s *Server) handleGetProject() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ids, err := pathIDs(r, "organisation_id", "project_id")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		// The hottest read: the gate and the project in one statement.
		var found projections.Lookup[projections.Project]
		g := projections.NewGate(principalOf(r), ids[0], saasapi.PermReadProjects)
		if _, err := projections.GatedOne(r.Context(), s.deps.Pool, g, projections.ReadProject(g, ids[1], &found)); err != nil {
			s.writeError(w, r, err)
			return
		}
		p, err := found.Value, error(nil)
		if !found.Found {
			// Asked only then: ProjectOf builds its 404 error on every call.
			p, err = projections.ProjectOf(found)
		}
		s.reply(w, r, err, http.StatusOK, p.Version, newProjectResponse(p))
	}
}

func (s *Server) handleUpdateProject() http.HandlerFunc {
	type request struct {
		Name        *string                `json:"name" null:"no"`
		Description saasapi.OptionalString `json:"description"`
		Status      *string                `json:"status" null:"no"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		ids, err := pathIDs(r, "organisation_id", "project_id")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var req request
		if !s.decodeOrFail(w, r, &req) {
			return
		}
		in := commands.UpdateProjectInput{Name: req.Name, Status: req.Status, Description: req.Description}
		p, err := s.deps.Commands.UpdateProject(r.Context(), meta(r), ids[0], ids[1], in)
		s.reply(w, r, err, http.StatusOK, p.Version, newProjectResponse(p))
	}
}

func (s *Server) handleDeleteProject() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ids, err := pathIDs(r, "organisation_id", "project_id")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.replyNoContent(w, r, s.deps.Commands.DeleteProject(r.Context(), meta(r), ids[0], ids[1]))
	}
}
