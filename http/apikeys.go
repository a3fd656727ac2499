package http

import (
	"net/http"
	"time"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/projections"
)

type apiKeyResponse struct {
	ID              saasapi.ID  `json:"id"`
	OrganisationID  saasapi.ID  `json:"organisation_id"`
	Name            string      `json:"name"`
	KeyPrefix       string      `json:"key_prefix"`
	CreatedByUserID *saasapi.ID `json:"created_by_user_id"`
	RevokedAt       *time.Time  `json:"revoked_at"`
	LastUsedAt      *time.Time  `json:"last_used_at"`
	CreatedAt       time.Time   `json:"created_at"`
	UpdatedAt       time.Time   `json:"updated_at"`
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func newAPIKeyResponse(k projections.APIKey) apiKeyResponse {
	return apiKeyResponse{
		ID: k.ID, OrganisationID: k.OrganisationID, Name: k.Name, KeyPrefix: k.KeyPrefix,
		CreatedByUserID: k.CreatedByUserID, RevokedAt: utcPtr(k.RevokedAt), LastUsedAt: utcPtr(k.LastUsedAt),
		CreatedAt: k.CreatedAt.UTC(), UpdatedAt: k.UpdatedAt.UTC(),
	}
}

// replayNote tells a caller who replayed a key creation why the raw key
// is missing: it is shown once and never stored.
type replayNote struct {
	SecretAvailable bool   `json:"secret_available"`
	Reason          string `json:"reason"`
}

const replayReason = "the raw API key is returned only by the original request and is never stored; " +
	"revoke this key and create a new one if the original response was lost"

// renderAPIKey renders a created key twice: with the raw key for this
// response, and without it (with a note saying why) for replays.
func renderAPIKey(c commands.CreatedAPIKey) (commands.Rendered, error) {
	type live struct {
		APIKey apiKeyResponse `json:"api_key"`
		RawKey string         `json:"raw_key"`
	}
	type replay struct {
		APIKey            apiKeyResponse `json:"api_key"`
		IdempotencyReplay replayNote     `json:"idempotency_replay"`
	}
	key := newAPIKeyResponse(c.Key)
	body, err := marshalBody(live{APIKey: key, RawKey: c.RawKey})
	if err != nil {
		return commands.Rendered{}, err
	}
	stored, err := marshalBody(replay{APIKey: key, IdempotencyReplay: replayNote{Reason: replayReason}})
	return commands.Rendered{Status: http.StatusCreated, Body: body, Stored: stored}, err
}

func (s *Server) handleCreateAPIKey() http.HandlerFunc {
	type request struct {
		Name string `json:"name"`
	}
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
		out, err := s.deps.Commands.CreateAPIKey(r.Context(), meta(r), orgID, req.Name, idem, renderAPIKey)
		s.replyOutcome(w, r, out, err, false)
	}
}

func (s *Server) handleListAPIKeys() http.HandlerFunc {
	return handleOrgList(s, saasapi.PermManageAPIKeys, projections.QueueListAPIKeys, newAPIKeyResponse)
}

func (s *Server) handleRevokeAPIKey() http.HandlerFunc {
	type response struct {
		ID             saasapi.ID `json:"id"`
		OrganisationID saasapi.ID `json:"organisation_id"`
		Status         string     `json:"status"`
		RevokedAt      *time.Time `json:"revoked_at"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		ids, err := pathIDs(r, "organisation_id", "api_key_id")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		k, err := s.deps.Commands.RevokeAPIKey(r.Context(), meta(r), ids[0], ids[1])
		s.reply(w, r, err, http.StatusOK, 0,
			response{ID: k.ID, OrganisationID: k.OrganisationID, Status: "revoked", RevokedAt: utcPtr(k.RevokedAt)})
	}
}
