package http

import (
	"net/http"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/observability"
)

// requireUserOrAPIKey admits a signed-in user or an active API key: the
// project routes. Which organisations each may reach is decided per route
// by the organisation access check.
func (s *Server) requireUserOrAPIKey(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r)
		if !ok {
			writeProblem(w, r, http.StatusUnauthorized, saasapi.MsgAuthRequired, nil)
			return
		}
		var principal saasapi.Principal
		if auth.LooksLikeAPIKey(token) {
			p, err := s.deps.Commands.AuthenticateAPIKey(r.Context(), token)
			outcome := observability.OutcomeSuccess
			if err != nil {
				outcome = observability.OutcomeFailure
			}
			s.deps.Metrics.AuthAttempt(observability.AuthAPIKey, outcome)
			if err != nil {
				s.writeAuthError(w, r, err, saasapi.MsgInvalidTokenOrKey)
				return
			}
			principal = p
		} else {
			userID, err := s.verifyUser(r.Context(), token)
			if err != nil {
				s.writeAuthError(w, r, err, saasapi.MsgInvalidTokenOrKey)
				return
			}
			principal = saasapi.UserPrincipal(userID)
		}
		stateOf(r.Context()).principal = principal
		next.ServeHTTP(w, r)
	})
}
