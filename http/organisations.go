package http

import (
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/projections"
)

type organisationResponse struct {
	ID        saasapi.ID `json:"id"`
	Name      string     `json:"name"`
	Slug      string     `json:"slug"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
}

func newOrganisationResponse(o projections.Organisation) organisationResponse {
	return organisationResponse{ID: o.ID, Name: o.Name, Slug: o.Slug, CreatedAt: o.CreatedAt.UTC(), UpdatedAt: o.UpdatedAt.UTC()}
}

func (s *Server) handleCreateOrganisation() http.HandlerFunc {
	type request struct {
		Name string  `json:"name"`
		Slug *string `json:"slug"`
	}
	render := renderJSON(http.StatusCreated, newOrganisationResponse)
	return func(w http.ResponseWriter, r *http.Request) {
		var req request
		idem, ok := s.decodeIdempotent(w, r, &req, "name")
		if !ok {
			return
		}
		out, err := s.deps.Commands.CreateOrganisationIdempotent(r.Context(), meta(r),
			commands.CreateOrganisationInput{Name: req.Name, Slug: req.Slug}, idem, render)
		s.replyOutcome(w, r, out, err, true)
	}
}

func (s *Server) handleListOrganisations() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		page, err := pageParams(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var orgs projections.PageOf[projections.Organisation]
		if !s.userRead(w, r, func(b *pgx.Batch, userID saasapi.ID) error {
			projections.QueueListOrganisationsOfUser(b, userID, page, &orgs)
			return nil
		}) {
			return
		}
		s.reply(w, r, nil, http.StatusOK, 0, newList(mapSlice(orgs.Items, newOrganisationResponse), page, orgs.Total))
	}
}

func (s *Server) handleGetOrganisation() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var found projections.Lookup[projections.Organisation]
		if _, ok := s.gated(w, r, saasapi.PermReadOrganisation, func(b *pgx.Batch, g *projections.Gate) error {
			return projections.QueueOrganisation(b, g, &found)
		}); !ok {
			return
		}
		o, err := projections.OrganisationOf(found)
		s.reply(w, r, err, http.StatusOK, o.Version, newOrganisationResponse(o))
	}
}

func (s *Server) handleUpdateOrganisation() http.HandlerFunc {
	type request struct {
		Name *string `json:"name" null:"no"`
		Slug *string `json:"slug" null:"no"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		orgID, err := pathID(r, "organisation_id")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var req request
		if !s.decodeOrFail(w, r, &req) {
			return
		}
		o, err := s.deps.Commands.UpdateOrganisation(r.Context(), meta(r), orgID, commands.UpdateOrganisationInput{Name: req.Name, Slug: req.Slug})
		s.reply(w, r, err, http.StatusOK, o.Version, newOrganisationResponse(o))
	}
}
