package http

import (
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/observability"
	"github.com/saasapi/saasapi/projections"
)

type userResponse struct {
	ID          saasapi.ID `json:"id"`
	Email       string     `json:"email"`
	DisplayName string     `json:"display_name"`
	IsActive    bool       `json:"is_active"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

func newUserResponse(u projections.User) userResponse {
	return userResponse{ID: u.ID, Email: u.Email, DisplayName: u.DisplayName, IsActive: u.IsActive,
		CreatedAt: u.CreatedAt.UTC(), UpdatedAt: u.UpdatedAt.UTC()}
}

func (s *Server) handleRegister() http.HandlerFunc {
	type request struct {
		Email       string `json:"email"`
		Password    string `json:"password"`
		DisplayName string `json:"display_name"`
	}
	type response struct {
		User userResponse `json:"user"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		var req request
		if !s.decodeOrFail(w, r, &req, "email", "password", "display_name") {
			s.deps.Metrics.AuthAttempt("register", "invalid")
			return
		}
		u, err := s.deps.Commands.Register(r.Context(), meta(r), commands.RegisterInput{
			Email: req.Email, Password: req.Password, DisplayName: req.DisplayName,
		})
		if err != nil {
			s.deps.Metrics.AuthAttempt("register", outcomeOf(err))
			s.writeError(w, r, err)
			return
		}
		s.deps.Metrics.AuthAttempt("register", "success")
		encode(w, http.StatusCreated, response{User: newUserResponse(u)})
	}
}

// outcomeOf names the outcome of a failed auth attempt for metrics.
func outcomeOf(err error) string {
	switch saasapi.ErrorCode(err) {
	case saasapi.EUNAUTHENTICATED:
		return "failure"
	case saasapi.ECONFLICT:
		return "conflict"
	case saasapi.EINVALID:
		return "invalid"
	}
	return "error"
}

func (s *Server) handleLogin() http.HandlerFunc {
	type request struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	type response struct {
		AccessToken      string `json:"access_token"`
		TokenType        string `json:"token_type"`
		ExpiresInSeconds int64  `json:"expires_in_seconds"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		var req request
		if !s.decodeOrFail(w, r, &req, "email", "password") {
			s.deps.Metrics.AuthAttempt("login", "invalid")
			return
		}
		// Failures are budgeted per account and client address: an attacker
		// spends their own budget for the account, not that of its owner
		// signing in from elsewhere. The token is taken before the check, so
		// that concurrent guesses cannot all pass, and given back on success.
		key := commands.SignInKey(req.Email) + " " + addressKey(stateOf(r.Context()).client)
		budget, delay := s.limits.loginAccount.take(key)
		if delay > 0 {
			s.writeThrottled(w, r, observability.AuthLogin, delay)
			return
		}
		res, err := s.deps.Commands.Login(r.Context(), meta(r), req.Email, req.Password)
		if err != nil {
			if saasapi.ErrorCode(err) != saasapi.EUNAUTHENTICATED {
				budget.refund() // not a failed guess
			}
			s.deps.Metrics.AuthAttempt("login", outcomeOf(err))
			s.writeError(w, r, err)
			return
		}
		budget.refund()
		s.deps.Metrics.AuthAttempt("login", "success")
		encode(w, http.StatusOK, response{AccessToken: res.AccessToken, TokenType: "bearer",
			ExpiresInSeconds: int64(res.ExpiresIn / time.Second)})
	}
}

func (s *Server) handleMe() http.HandlerFunc {
	type membership struct {
		MembershipID     saasapi.ID   `json:"membership_id"`
		OrganisationID   saasapi.ID   `json:"organisation_id"`
		OrganisationName string       `json:"organisation_name"`
		OrganisationSlug string       `json:"organisation_slug"`
		Role             saasapi.Role `json:"role"`
	}
	type response struct {
		User        userResponse `json:"user"`
		Memberships []membership `json:"memberships"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		var (
			u  projections.Lookup[projections.User]
			ms []projections.MembershipSummary
		)
		if !s.userRead(w, r, func(b *pgx.Batch, userID saasapi.ID) error {
			projections.QueueUser(b, userID, &u)
			projections.QueueMembershipsOfUser(b, userID, &ms)
			return nil
		}) {
			return
		}
		encode(w, http.StatusOK, response{User: newUserResponse(u.Value), Memberships: mapSlice(ms,
			func(m projections.MembershipSummary) membership {
				return membership{MembershipID: m.MembershipID, OrganisationID: m.OrganisationID,
					OrganisationName: m.OrganisationName, OrganisationSlug: m.OrganisationSlug, Role: m.Role}
			})})
	}
}

// handleEraseMe erases the signed-in person (commands.EraseUser), who
// confirms with their current password.
func (s *Server) handleEraseMe() http.HandlerFunc {
	type request struct {
		Password string `json:"password"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		var req request
		if !s.decodeOrFail(w, r, &req, "password") {
			return
		}
		m := meta(r)
		err := s.deps.Commands.EraseUser(r.Context(), m, m.Principal.UserID, &req.Password)
		if saasapi.ErrorCode(err) == saasapi.EUNAUTHENTICATED {
			// A wrong password fails as a sign-in does, not as a token.
			writeProblem(w, r, http.StatusUnauthorized, saasapi.MsgInvalidCredentials, nil)
			return
		}
		s.replyNoContent(w, r, err)
	}
}
