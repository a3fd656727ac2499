package http

import (
	"net/http"
	"time"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/projections"
)

type memberUser struct {
	ID          saasapi.ID `json:"id"`
	Email       string     `json:"email"`
	DisplayName string     `json:"display_name"`
	IsActive    bool       `json:"is_active"`
}

type membershipResponse struct {
	ID             saasapi.ID   `json:"id"`
	OrganisationID saasapi.ID   `json:"organisation_id"`
	User           memberUser   `json:"user"`
	Role           saasapi.Role `json:"role"`
	CreatedAt      time.Time    `json:"created_at"`
	UpdatedAt      time.Time    `json:"updated_at"`
}

func newMembershipResponse(m projections.Membership) membershipResponse {
	return membershipResponse{
		ID: m.ID, OrganisationID: m.OrganisationID, Role: m.Role,
		User:      memberUser{ID: m.User.ID, Email: m.User.Email, DisplayName: m.User.DisplayName, IsActive: m.User.IsActive},
		CreatedAt: m.CreatedAt.UTC(), UpdatedAt: m.UpdatedAt.UTC(),
	}
}

// roleOf parses a role field of a request body.
func roleOf(raw string) (saasapi.Role, error) {
	role, ok := saasapi.ParseRole(raw)
	if !ok {
		return "", saasapi.Invalid(saasapi.MsgValidation, saasapi.FieldError{Field: "role",
			Message: "role must be one of owner, admin, member, viewer"})
	}
	return role, nil
}

func (s *Server) handleListMembers() http.HandlerFunc {
	return handleOrgList(s, saasapi.PermManageMembers, projections.QueueListMembers, newMembershipResponse)
}

func (s *Server) handleAddMember() http.HandlerFunc {
	type request struct {
		UserID string  `json:"user_id"`
		Role   *string `json:"role" null:"no"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		orgID, err := pathID(r, "organisation_id")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var req request
		if !s.decodeOrFail(w, r, &req, "user_id") {
			return
		}
		in := commands.AddMemberInput{Role: saasapi.RoleMember}
		if in.UserID, err = saasapi.ParseID(req.UserID); err != nil {
			s.writeError(w, r, saasapi.Invalid(saasapi.MsgValidation, saasapi.FieldError{Field: "user_id", Message: "value is not a valid ULID"}))
			return
		}
		if req.Role != nil {
			if in.Role, err = roleOf(*req.Role); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		m, err := s.deps.Commands.AddMember(r.Context(), meta(r), orgID, in)
		s.reply(w, r, err, http.StatusCreated, m.Version, newMembershipResponse(m))
	}
}

func (s *Server) handleChangeMemberRole() http.HandlerFunc {
	type request struct {
		Role string `json:"role"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		ids, err := pathIDs(r, "organisation_id", "user_id")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var req request
		if !s.decodeOrFail(w, r, &req, "role") {
			return
		}
		role, err := roleOf(req.Role)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		m, err := s.deps.Commands.ChangeMemberRole(r.Context(), meta(r), ids[0], ids[1], role)
		s.reply(w, r, err, http.StatusOK, m.Version, newMembershipResponse(m))
	}
}

func (s *Server) handleRemoveMember() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ids, err := pathIDs(r, "organisation_id", "user_id")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.replyNoContent(w, r, s.deps.Commands.RemoveMember(r.Context(), meta(r), ids[0], ids[1]))
	}
}
