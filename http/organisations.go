package http

import (
	"net/http"
	"time"

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
	return func(w http.ResponseWriter, r *http.Request) {
		var req request
		if !s.decodeOrFail(w, r, &req, "name") {
			return
		}
		o, err := s.deps.Commands.CreateOrganisation(r.Context(), meta(r), commands.CreateOrganisationInput{Name: req.Name, Slug: req.Slug})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		setETag(w, o.Version)
		encode(w, http.StatusCreated, newOrganisationResponse(o))
	}
}

func (s *Server) handleListOrganisations() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		page, err := pageParams(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		orgs, total, err := projections.ListOrganisationsOfUser(r.Context(), s.deps.Pool, principalOf(r).UserID, page)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		encode(w, http.StatusOK, newList(mapSlice(orgs, newOrganisationResponse), page, total))
	}
}

func (s *Server) handleGetOrganisation() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, err := s.orgAccess(r, saasapi.PermReadOrganisation)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		o, err := projections.GetOrganisation(r.Context(), s.deps.Pool, a)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		setETag(w, o.Version)
		encode(w, http.StatusOK, newOrganisationResponse(o))
	}
}

func (s *Server) handleUpdateOrganisation() http.HandlerFunc {
	type request struct {
		Name *string `json:"name"`
		Slug *string `json:"slug"`
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
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		setETag(w, o.Version)
		encode(w, http.StatusOK, newOrganisationResponse(o))
	}
}
