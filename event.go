package saasapi

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
)

// Event types: the catalogue of domain facts. The audit log shows them as
// actions, so the names are part of the public contract.
const (
	EventUserRegistered      = "user.registered"
	EventUserLoggedIn        = "user.logged_in"
	EventUserLoginFailed     = "user.login_failed"
	EventUserErased          = "user.erased"
	EventOrganisationCreated = "organisation.created"
	EventOrganisationUpdated = "organisation.updated"
	EventMemberAdded         = "member.added"
	EventMemberRoleChanged   = "member.role_changed"
	EventMemberRemoved       = "member.removed"
	EventProjectCreated      = "project.created"
	EventProjectUpdated      = "project.updated"
	EventProjectDeleted      = "project.deleted"
	EventAPIKeyCreated       = "api_key.created"
	EventAPIKeyRevoked       = "api_key.revoked"
)

// Stream types: the kind of entity an event belongs to. They double as the
// audit log's target_type.
const (
	StreamUser         = "user"
	StreamOrganisation = "organisation"
	StreamMembership   = "membership"
	StreamProject      = "project"
	StreamAPIKey       = "api_key"
)

// Ledger types: every ledger belongs to an organisation, or to a user for the
// events of a user's own account.
const (
	LedgerOrganisation = "organisation"
	LedgerUser         = "user"
)

// Actor records who caused an event.
type Actor struct {
	Type     PrincipalType
	UserID   ID
	APIKeyID ID
}

// ActorOf returns the actor for a principal.
func ActorOf(p Principal) Actor {
	return Actor{Type: p.Type, UserID: p.UserID, APIKeyID: p.APIKeyID}
}

// NewEvent is an event decided by a command, before the event store gives
// it a sequence and a hash. Data is one of the payload structs below.
type NewEvent struct {
	ID            ID
	LedgerID      ID
	LedgerType    string
	StreamType    string
	StreamID      ID
	StreamVersion int64
	Type          string
	Actor         Actor
	RequestID     string
	OccurredAt    time.Time
	Data          any
}

// Event is a recorded event as the events table holds it. Payload holds the
// exact JSON bytes that were hashed and stored.
type Event struct {
	Position      int64
	ID            ID
	LedgerID      ID
	LedgerType    string
	Sequence      int64
	StreamType    string
	StreamID      ID
	StreamVersion int64
	Type          string
	SchemaVersion int
	Actor         Actor
	RequestID     string
	OccurredAt    time.Time
	Payload       json.RawMessage
	PrevHash      []byte
	Hash          []byte
}

// Payloads. They carry what projections need to rebuild every read table and
// what auditors need; by construction they hold no secret material (no
// password, hash, raw key or token), which is why the audit view can show them.

// Personal data. A payload field tagged `personal:"true"` identifies a
// person: it is stored sealed with that person's data key (package
// personal), never in plain text, and becomes unreadable when the person is
// erased. Such fields may appear only in events of a user's own ledger,
// whose owner is the person they describe; their values must be strings.

// UserRegistered is the payload of user.registered.
type UserRegistered struct {
	Email       string `json:"email" personal:"true"`
	DisplayName string `json:"display_name" personal:"true"`
}

// UserErased is the payload of user.erased: the person's data key was
// destroyed with it, their sealed fields read as erased from then on.
type UserErased struct{}

// UserLoggedIn is the payload of user.logged_in.
type UserLoggedIn struct{}

// UserLoginFailed is the payload of user.login_failed: failed sign-ins of
// one account, coalesced over a window. Attempts is how many the event
// stands for (events written before coalescing omit it: one each); Reason
// is that of the latest (invalid_password or inactive_user).
type UserLoginFailed struct {
	Reason   string `json:"reason"`
	Attempts int    `json:"attempts,omitempty"`
}

// OrganisationCreated is the payload of organisation.created.
type OrganisationCreated struct {
	Name string `json:"name"`
	Slug string `json:"slug"`
}

// OrganisationUpdated is the payload of organisation.updated: the changed
// field names and their new values.
type OrganisationUpdated struct {
	ChangedFields []string `json:"changed_fields"`
	Name          *string  `json:"name,omitempty"`
	Slug          *string  `json:"slug,omitempty"`
}

// MemberAdded is the payload of member.added.
type MemberAdded struct {
	UserID ID   `json:"user_id"`
	Role   Role `json:"role"`
}

// MemberRoleChanged is the payload of member.role_changed.
type MemberRoleChanged struct {
	UserID  ID   `json:"user_id"`
	OldRole Role `json:"old_role"`
	NewRole Role `json:"new_role"`
}

// MemberRemoved is the payload of member.removed.
type MemberRemoved struct {
	UserID ID   `json:"user_id"`
	Role   Role `json:"role"`
}

// ProjectCreated is the payload of project.created.
type ProjectCreated struct {
	ProjectName string  `json:"project_name"`
	Status      string  `json:"status"`
	Description *string `json:"description"`
}

// ProjectUpdated is the payload of project.updated. Description is present
// (possibly null) exactly when "description" is among the changed fields.
type ProjectUpdated struct {
	ChangedFields []string       `json:"changed_fields"`
	Name          *string        `json:"name,omitempty"`
	Status        *string        `json:"status,omitempty"`
	Description   OptionalString `json:"description,omitzero"`
}

// ProjectDeleted is the payload of project.deleted.
type ProjectDeleted struct {
	ProjectName string `json:"project_name"`
}

// APIKeyCreated is the payload of api_key.created.
type APIKeyCreated struct {
	APIKeyName string `json:"api_key_name"`
	KeyPrefix  string `json:"key_prefix"`
}

// APIKeyRevoked is the payload of api_key.revoked.
type APIKeyRevoked struct {
	APIKeyName string `json:"api_key_name"`
	KeyPrefix  string `json:"key_prefix"`
}

// OptionalString is a JSON field that may be absent, null or a string.
type OptionalString struct {
	Set   bool
	Value *string
}

// IsZero reports an absent field, for omitzero.
func (o OptionalString) IsZero() bool { return !o.Set }

// MarshalJSON writes null or the string.
func (o OptionalString) MarshalJSON() ([]byte, error) { return json.Marshal(o.Value) }

// UnmarshalJSON records presence and the value (nil for null).
func (o *OptionalString) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Value = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	o.Value = &s
	return nil
}

// payloadTypes maps each event type to a constructor of its payload struct.
var payloadTypes = map[string]func() any{
	EventUserRegistered:      func() any { return &UserRegistered{} },
	EventUserLoggedIn:        func() any { return &UserLoggedIn{} },
	EventUserErased:          func() any { return &UserErased{} },
	EventUserLoginFailed:     func() any { return &UserLoginFailed{} },
	EventOrganisationCreated: func() any { return &OrganisationCreated{} },
	EventOrganisationUpdated: func() any { return &OrganisationUpdated{} },
	EventMemberAdded:         func() any { return &MemberAdded{} },
	EventMemberRoleChanged:   func() any { return &MemberRoleChanged{} },
	EventMemberRemoved:       func() any { return &MemberRemoved{} },
	EventProjectCreated:      func() any { return &ProjectCreated{} },
	EventProjectUpdated:      func() any { return &ProjectUpdated{} },
	EventProjectDeleted:      func() any { return &ProjectDeleted{} },
	EventAPIKeyCreated:       func() any { return &APIKeyCreated{} },
	EventAPIKeyRevoked:       func() any { return &APIKeyRevoked{} },
}

// EventTypes returns every known event type.
func EventTypes() []string {
	types := make([]string, 0, len(payloadTypes))
	for t := range payloadTypes {
		types = append(types, t)
	}
	return types
}

// DecodePayload parses the payload of a recorded event into its struct,
// returned as a pointer (for example *ProjectCreated).
func DecodePayload(e Event) (any, error) {
	mk, ok := payloadTypes[e.Type]
	if !ok {
		return nil, fmt.Errorf("unknown event type %q", e.Type)
	}
	v := mk()
	if err := json.Unmarshal(e.Payload, v); err != nil {
		return nil, fmt.Errorf("decode %s payload of event %s: %w", e.Type, e.ID, err)
	}
	return v, nil
}

// personalFields maps each event type to the JSON names of its personal
// fields, from the struct tags of its payload.
var personalFields = func() map[string][]string {
	m := map[string][]string{}
	for typ, mk := range payloadTypes {
		t := reflect.TypeOf(mk()).Elem()
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Tag.Get("personal") != "true" {
				continue
			}
			if f.Type.Kind() != reflect.String {
				panic("saasapi: personal field " + typ + "." + f.Name + " is not a string")
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			m[typ] = append(m[typ], name)
		}
	}
	return m
}()

// PersonalFields returns the JSON names of the personal fields of an event
// type's payload (none for most types).
func PersonalFields(eventType string) []string { return personalFields[eventType] }

// PersonalEventTypes returns the event types whose payloads have personal
// fields, in name order.
func PersonalEventTypes() []string {
	types := make([]string, 0, len(personalFields))
	for typ := range personalFields {
		types = append(types, typ)
	}
	sort.Strings(types)
	return types
}
