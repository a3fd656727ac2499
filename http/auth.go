package http

import (
	"net/http"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/observability"
)

// requireUserOrAPIKey admits a signed-in user or a known API key: the
// project routes. Whether the user or key may still act, and which
// organisations each may reach, is decided per route by the gate.
func (s *Server) requireUserOrAPIKey(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r)
		if !ok {
			writeProblem(w, r, http.StatusUnauthorized, saasapi.MsgAuthRequired, nil)
			return
		}
		if auth.LooksLikeAPIKey(token) {
			p, err := s.deps.Commands.AuthenticateAPIKey(r.Context(), token)
			if err != nil {
				if saasapi.ErrorCode(err) == saasapi.EUNAUTHENTICATED {
					s.deps.Metrics.AuthAttempt(observability.AuthAPIKey, observability.OutcomeFailure)
				}
				s.writeAuthError(w, r, err, saasapi.MsgInvalidTokenOrKey)
				return
			}
			s.authenticated(r, p, observability.AuthAPIKey, saasapi.MsgInvalidTokenOrKey)
		} else {
			userID, err := s.verifyToken(token)
			if err != nil {
				writeProblem(w, r, http.StatusUnauthorized, saasapi.MsgInvalidTokenOrKey, nil)
				return
			}
			s.authenticated(r, saasapi.UserPrincipal(userID), observability.AuthToken, saasapi.MsgInvalidTokenOrKey)
		}
		next.ServeHTTP(w, r)
	})
}
