package http

import (
	"github.com/go-chi/chi/v5"

	"github.com/saasapi/saasapi/observability"
)

// routes lists the whole API surface on one screen.
func (s *Server) routes() {
	r := s.router
	r.Use(s.requestContext, s.recoverPanics, s.secureHeaders, s.rejectUnknownMethods)
	r.NotFound(s.handleNotFound())
	r.MethodNotAllowed(s.handleMethodNotAllowed())

	r.Get("/healthz", s.handleHealthz())
	r.Get("/readyz", s.handleReadyz())
	r.Method("GET", "/metrics", s.deps.Metrics.Handler())

	// /openapi.json, /docs and /redoc (docs.go): only when enabled.
	if s.deps.DocsEnabled {
		s.docsRoutes(r)
	}

	// The key that verifies every ledger checkpoint (audit.go, ledger.go).
	r.Get("/ledger/verifier-key", s.handleVerifierKey())

	// Anonymous routes, throttled per client address (throttle.go); login
	// also per account, counting failures only.
	r.Post("/auth/register", s.throttleAddress(s.limits.registerAddress, observability.AuthRegister, s.handleRegister()))
	r.Post("/auth/login", s.throttleAddress(s.limits.loginAddress, observability.AuthLogin, s.handleLogin()))

	// Routes for signed-in users only: an API key here is 401.
	r.Group(func(r chi.Router) {
		r.Use(s.requireUser, s.checkIfMatch)
		r.Get("/me", s.handleMe())
		r.Delete("/me", s.handleEraseMe())
		r.Get("/me/audit-events", s.handleMyAuditEvents())
		r.Get("/me/audit-events/checkpoint", s.handleMyAuditCheckpoint())

		r.Post("/orgs", s.handleCreateOrganisation())
		r.Get("/orgs", s.handleListOrganisations())
		r.Get("/orgs/{organisation_id}", s.handleGetOrganisation())
		r.Patch("/orgs/{organisation_id}", s.handleUpdateOrganisation())

		r.Get("/orgs/{organisation_id}/members", s.handleListMembers())
		r.Post("/orgs/{organisation_id}/members", s.handleAddMember())
		r.Patch("/orgs/{organisation_id}/members/{user_id}", s.handleChangeMemberRole())
		r.Delete("/orgs/{organisation_id}/members/{user_id}", s.handleRemoveMember())

		r.Post("/orgs/{organisation_id}/api-keys", s.handleCreateAPIKey())
		r.Get("/orgs/{organisation_id}/api-keys", s.handleListAPIKeys())
		r.Delete("/orgs/{organisation_id}/api-keys/{api_key_id}", s.handleRevokeAPIKey())

		r.Get("/orgs/{organisation_id}/audit-events", s.handleListAuditEvents())
		r.Get("/orgs/{organisation_id}/audit-events/head", s.handleAuditHead())
		r.Get("/orgs/{organisation_id}/audit-events/export", s.handleExportAuditEvents())
		r.Get("/orgs/{organisation_id}/audit-events/checkpoint", s.handleAuditCheckpoint())
		r.Get("/orgs/{organisation_id}/audit-events/proof/inclusion", s.handleInclusionProof())
		r.Get("/orgs/{organisation_id}/audit-events/proof/consistency", s.handleConsistencyProof())
	})

	// Project routes: a signed-in user, or an API key of the organisation.
	r.Group(func(r chi.Router) {
		r.Use(s.requireUserOrAPIKey, s.checkIfMatch)
		r.Post("/orgs/{organisation_id}/projects", s.handleCreateProject())
		r.Get("/orgs/{organisation_id}/projects", s.handleListProjects())
		r.Get("/orgs/{organisation_id}/projects/{project_id}", s.handleGetProject())
		r.Patch("/orgs/{organisation_id}/projects/{project_id}", s.handleUpdateProject())
		r.Delete("/orgs/{organisation_id}/projects/{project_id}", s.handleDeleteProject())
	})
}
