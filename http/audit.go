package http

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/projections"
)

// auditEventResponse is one audit item: the A.8 fields, plus the ledger
// position and the hash chain of B.1. metadata is the event's payload as
// stored: payloads hold no secrets by construction (ADR 0003).
type auditEventResponse struct {
	ID             saasapi.ID      `json:"id"`
	OrganisationID *saasapi.ID     `json:"organisation_id"`
	ActorUserID    *saasapi.ID     `json:"actor_user_id"`
	ActorAPIKeyID  *saasapi.ID     `json:"actor_api_key_id"`
	Action         string          `json:"action"`
	TargetType     string          `json:"target_type"`
	TargetID       saasapi.ID      `json:"target_id"`
	Metadata       json.RawMessage `json:"metadata"`
	CreatedAt      time.Time       `json:"created_at"`
	Sequence       int64           `json:"sequence"`
	Hash           string          `json:"hash"`
	PrevHash       string          `json:"prev_hash"`
	RequestID      *string         `json:"request_id"`
}

func newAuditEventResponse(e saasapi.Event) auditEventResponse {
	out := auditEventResponse{
		ID: e.ID, ActorUserID: e.Actor.UserID.Ptr(), ActorAPIKeyID: e.Actor.APIKeyID.Ptr(),
		Action: e.Type, TargetType: e.StreamType, TargetID: e.StreamID, Metadata: e.Payload,
		CreatedAt: e.OccurredAt.UTC(), Sequence: e.Sequence,
		Hash: hex.EncodeToString(e.Hash), PrevHash: hex.EncodeToString(e.PrevHash),
	}
	if e.LedgerType == saasapi.LedgerOrganisation {
		out.OrganisationID = e.LedgerID.Ptr()
	}
	if e.RequestID != "" {
		out.RequestID = &e.RequestID
	}
	return out
}

// auditExportLine is one line of an export: an audit item plus the rest of
// the event's canonical form, so that an auditor can recompute every hash
// from the export alone (docs/audit.md).
type auditExportLine struct {
	auditEventResponse
	LedgerType    string `json:"ledger_type"`
	StreamVersion int64  `json:"stream_version"`
	SchemaVersion int    `json:"schema_version"`
	ActorType     string `json:"actor_type"`
}

func newAuditExportLine(e saasapi.Event) auditExportLine {
	return auditExportLine{auditEventResponse: newAuditEventResponse(e), LedgerType: e.LedgerType,
		StreamVersion: e.StreamVersion, SchemaVersion: e.SchemaVersion, ActorType: string(e.Actor.Type)}
}

// auditTargetTypes are the values target_type may filter by.
var auditTargetTypes = map[string]bool{
	saasapi.StreamUser: true, saasapi.StreamOrganisation: true, saasapi.StreamMembership: true,
	saasapi.StreamProject: true, saasapi.StreamAPIKey: true,
}

// actionPattern is the documented shape of an audit action.
var actionPattern = regexp.MustCompile(`^[a-z_]+\.[a-z_]+$`)

// auditFilter reads the B.1 filters; a malformed one is 422.
func auditFilter(r *http.Request) (eventstore.AuditFilter, error) {
	q, err := readQuery(r, "action", "target_type", "actor_user_id", "actor_api_key_id", "target_id", "since", "until")
	if err != nil {
		return eventstore.AuditFilter{}, err
	}
	f := eventstore.AuditFilter{Action: q.Get("action"), TargetType: q.Get("target_type")}
	var fields []saasapi.FieldError
	bad := func(field, message string) {
		fields = append(fields, saasapi.FieldError{Field: field, Message: message})
	}
	switch {
	case len(f.Action) > 100:
		bad("action", "action must be at most 100 characters")
	case f.Action != "" && !actionPattern.MatchString(f.Action):
		bad("action", "action must look like member.role_changed: lower-case words joined by one dot")
	}
	if f.TargetType != "" && !auditTargetTypes[f.TargetType] {
		bad("target_type", "target_type must be one of user, organisation, membership, project, api_key")
	}
	for name, dst := range map[string]*saasapi.ID{
		"actor_user_id": &f.ActorUserID, "actor_api_key_id": &f.ActorAPIKeyID, "target_id": &f.TargetID,
	} {
		if raw := q.Get(name); raw != "" {
			id, err := saasapi.ParseID(raw)
			if err != nil {
				bad(name, "value is not a valid ULID")
			}
			*dst = id
		}
	}
	for name, dst := range map[string]**time.Time{"since": &f.Since, "until": &f.Until} {
		if raw := q.Get(name); raw != "" {
			t, err := time.Parse(time.RFC3339Nano, raw)
			if err != nil {
				bad(name, name+" must be an RFC 3339 timestamp")
			}
			*dst = &t
		}
	}
	if len(fields) > 0 {
		return eventstore.AuditFilter{}, saasapi.Invalid(saasapi.MsgValidation, fields...)
	}
	return f, nil
}

// sequenceParam reads an optional non-negative (or, with positive, >= 1)
// ledger sequence.
func sequenceParam(r *http.Request, name string, positive bool) (*int64, error) {
	q, err := readQuery(r, name)
	if err != nil {
		return nil, err
	}
	raw := q.Get(name)
	if raw == "" {
		return nil, nil
	}
	lo := int64(0)
	if positive {
		lo = 1
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < lo {
		return nil, saasapi.Invalid(saasapi.MsgValidation, saasapi.FieldError{Field: name,
			Message: name + " must be an integer of at least " + strconv.FormatInt(lo, 10)})
	}
	return &n, nil
}

// auditListResponse is a page of audit events. Its next_cursor is the
// sequence to pass as before_sequence for the next page, so it is a number.
type auditListResponse struct {
	Items      []auditEventResponse `json:"items"`
	Pagination struct {
		Limit      int    `json:"limit"`
		Offset     int    `json:"offset"`
		Total      int    `json:"total"`
		Count      int    `json:"count"`
		NextCursor *int64 `json:"next_cursor,omitempty"`
	} `json:"pagination"`
}

// auditQuery reads the filters and the named sequence cursor of an audit
// request.
func auditQuery(r *http.Request, cursor string, positive bool) (eventstore.AuditFilter, *int64, error) {
	f, err := auditFilter(r)
	if err != nil {
		return eventstore.AuditFilter{}, nil, err
	}
	seq, err := sequenceParam(r, cursor, positive)
	return f, seq, err
}

// auditList answers a page of audit events with its keyset cursor.
func (s *Server) auditList(w http.ResponseWriter, page projections.Page, evs []saasapi.Event, total int, next, before *int64) {
	var body auditListResponse
	body.Items = mapSlice(evs, newAuditEventResponse)
	body.Pagination.Limit, body.Pagination.Offset, body.Pagination.Total = page.Limit, page.Offset, total
	body.Pagination.Count, body.Pagination.NextCursor = len(body.Items), next
	if before != nil {
		body.Pagination.Offset = 0
	}
	encode(w, http.StatusOK, body)
}

func (s *Server) handleListAuditEvents() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		page, err := pageParams(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		f, before, err := auditQuery(r, "before_sequence", true)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var p eventstore.AuditPage
		if _, ok := s.gated(w, r, saasapi.PermReadAudit, func(b *pgx.Batch, g *projections.Gate) error {
			return eventstore.QueueListAudit(b, g, g.OrgID, f, page.Limit, page.Offset, before, &p)
		}); !ok {
			return
		}
		s.auditList(w, page, p.Events, p.Total, p.NextCursor, before)
	}
}

func (s *Server) handleMyAuditEvents() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		page, err := pageParams(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		before, err := sequenceParam(r, "before_sequence", true)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var (
			p       eventstore.AuditPage
			dataKey []byte
		)
		if !s.userRead(w, r, func(b *pgx.Batch, userID saasapi.ID) error {
			// The person's own data key opens the personal fields of
			// their own events.
			commands.QueueLoadDataKey(b, s.deps.Commands.Keys(), userID, &dataKey)
			return eventstore.QueueListUserAudit(b, userID, page.Limit, page.Offset, before, &p)
		}) {
			return
		}
		for i, e := range p.Events {
			opened, err := saasapi.OpenPersonal(dataKey, e)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			p.Events[i] = opened
		}
		s.auditList(w, page, p.Events, p.Total, p.NextCursor, before)
	}
}

func (s *Server) handleAuditHead() http.HandlerFunc {
	type response struct {
		Sequence   int64     `json:"sequence"`
		Hash       string    `json:"hash"`
		RecordedAt time.Time `json:"recorded_at"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		var (
			h     eventstore.Head
			found bool
		)
		if _, ok := s.gated(w, r, saasapi.PermReadAudit, func(b *pgx.Batch, g *projections.Gate) error {
			eventstore.QueueAuditHead(b, g, g.OrgID, &h, &found)
			return nil
		}); !ok {
			return
		}
		var err error
		if !found {
			err = saasapi.Errorf(saasapi.ENOTFOUND, saasapi.MsgOrgNotFound)
		}
		s.reply(w, r, err, http.StatusOK, 0, response{Sequence: h.Sequence, Hash: hex.EncodeToString(h.Hash), RecordedAt: h.UpdatedAt})
	}
}

// exportWriteWindow is how long the client may take to accept each batch
// of an export; the deadline moves with every batch, so an export of any
// length is bounded by its reader's pace, not by the server's write timeout.
const exportWriteWindow = 30 * time.Second

func (s *Server) handleExportAuditEvents() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f, after, err := auditQuery(r, "after_sequence", false)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		a, ok := s.gated(w, r, saasapi.PermReadAudit, func(*pgx.Batch, *projections.Gate) error { return nil })
		if !ok {
			return
		}
		start := int64(0)
		if after != nil {
			start = *after
		}
		rc := http.NewResponseController(w)
		enc := json.NewEncoder(w)
		started, n := false, 0
		err = eventstore.Export(r.Context(), s.deps.Pool, a, f, start, eventstore.DefaultExportBatch, func(e saasapi.Event) error {
			if !started {
				started = true
				w.Header().Set("Content-Type", "application/x-ndjson")
				w.WriteHeader(http.StatusOK)
			}
			if n%eventstore.DefaultExportBatch == 0 {
				_ = rc.SetWriteDeadline(time.Now().Add(exportWriteWindow))
				_ = rc.Flush()
			}
			n++
			return enc.Encode(newAuditExportLine(e))
		})
		switch {
		case err != nil && !started:
			s.writeError(w, r, err)
		case err != nil:
			// The status is sent; all that is left is to stop. A reader
			// resumes with after_sequence = the last sequence it received.
			s.deps.Logger.WarnContext(r.Context(), "audit export ended early",
				"request_id", requestIDOf(r.Context()), "error", err.Error())
		case !started:
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
		}
	}
}
