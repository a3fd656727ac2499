package commands

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/projections"
)

// CreatedAPIKey is a new key with its raw secret, which exists only in the
// response to its creation.
type CreatedAPIKey struct {
	Key    projections.APIKey
	RawKey string
}

// CreateAPIKey mints a key for the organisation. The raw key is returned
// once; only its SHA-256 is stored, in api_key_secrets, never in an event.
func (s *Service) CreateAPIKey(ctx context.Context, meta Meta, orgID saasapi.ID, name string,
	idem *Idempotency, render Render[CreatedAPIKey],
) (Outcome, error) {
	if fields := checkName(nil, name, 1, 120,
		saasapi.FieldError{Field: "name", Message: "name must be between 1 and 120 characters"}); fields != nil {
		return Outcome{}, saasapi.Invalid(saasapi.MsgValidation, fields...)
	}
	raw, prefix, hash, err := auth.MintAPIKey()
	if err != nil {
		return Outcome{}, err
	}
	keyID := saasapi.NewID()
	c := orgCommand(meta, orgID, saasapi.PermManageAPIKeys)
	c.idem, c.idemOrg = idem, orgID
	c.decide = func(_ saasapi.Access, head eventstore.Head, b *pgx.Batch) ([]saasapi.NewEvent, error) {
		b.Queue(`INSERT INTO api_key_secrets (key_hash, organisation_id, api_key_id) VALUES ($1, $2, $3)`,
			hash, orgID, keyID)
		return one(s.newEvent(meta, head, saasapi.StreamAPIKey, keyID, 1,
			saasapi.EventAPIKeyCreated, saasapi.APIKeyCreated{APIKeyName: name, KeyPrefix: prefix}))
	}
	c.render = func(recorded []saasapi.Event) (Rendered, error) {
		return render(CreatedAPIKey{Key: projections.CreatedAPIKey(recorded[0]), RawKey: raw})
	}
	_, out, err := s.run(ctx, c)
	return out, err
}

// RevokeAPIKey revokes a key. Revoking a revoked key changes nothing and
// records nothing; the key keeps its first revoked_at.
func (s *Service) RevokeAPIKey(ctx context.Context, meta Meta, orgID, keyID saasapi.ID) (projections.APIKey, error) {
	var current, after projections.Lookup[projections.APIKey]
	c := orgCommand(meta, orgID, saasapi.PermManageAPIKeys)
	c.load = func(b *pgx.Batch, sc projections.Scope) error { return projections.QueueAPIKey(b, sc, keyID, &current) }
	c.decide = func(_ saasapi.Access, head eventstore.Head, _ *pgx.Batch) ([]saasapi.NewEvent, error) {
		k, err := projections.APIKeyOf(current)
		if err != nil || k.RevokedAt != nil {
			return nil, err
		}
		return one(s.newEvent(meta, head, saasapi.StreamAPIKey, keyID, k.Version+1,
			saasapi.EventAPIKeyRevoked, saasapi.APIKeyRevoked{APIKeyName: k.Name, KeyPrefix: k.KeyPrefix}))
	}
	c.result = func(b *pgx.Batch, a saasapi.Access) error {
		return projections.QueueAPIKey(b, projections.Within(a), keyID, &after)
	}
	if _, _, err := s.run(ctx, c); err != nil {
		return projections.APIKey{}, err
	}
	return projections.APIKeyOf(after)
}

// AuthenticateAPIKey resolves a raw key to its principal. A malformed key
// (bad checksum) is rejected without a query; an unknown key is 401, and
// so is a key known to be revoked. The key's use is recorded at most once
// a minute.
//
// Which key and organisation a secret belongs to never changes (secrets
// are written once, with the key's creation), so this process remembers
// it and a key's next requests resolve without a query. Whether the key is
// still active is not remembered: the gate of every read and write asks
// the database in the request's own round trip.
func (s *Service) AuthenticateAPIKey(ctx context.Context, raw string) (saasapi.Principal, error) {
	fail := saasapi.Errorf(saasapi.EUNAUTHENTICATED, saasapi.MsgInvalidTokenOrKey)
	hash, ok := auth.ParseAPIKey(raw)
	if !ok {
		return saasapi.Principal{}, fail
	}
	var owner projections.KeyOwner
	if v, ok := s.keyOwners.Load(string(hash)); ok {
		owner = v.(projections.KeyOwner)
	} else {
		found := false
		var err error
		owner, found, err = projections.APIKeyByHash(ctx, s.pool, hash)
		if err != nil {
			return saasapi.Principal{}, err
		}
		if !found || owner.Revoked {
			return saasapi.Principal{}, fail
		}
		if s.ownersSeen.Add(1)%maxTouchEntries == 0 {
			s.keyOwners.Clear()
		}
		owner.Revoked = false // only the immutable part is remembered
		s.keyOwners.Store(string(hash), owner)
	}
	s.touch(ctx, owner)
	return saasapi.APIKeyPrincipal(owner.APIKeyID, owner.OrganisationID), nil
}

// touchInterval is how often a key's last use is written at most.
const touchInterval = time.Minute

// touch records a key's use unless the last use on record, as this
// process last saw it, is less than a minute old. What it remembers is the
// database's value, which another replica may have written, so the lag
// stays within the minute across replicas.
func (s *Service) touch(ctx context.Context, owner projections.KeyOwner) {
	now := s.now()
	if last, ok := s.lastTouch.Load(owner.APIKeyID); ok && now.Sub(last.(time.Time)) < touchInterval {
		return
	}
	// Usage tracking must never fail a request.
	last, err := projections.TouchAPIKey(ctx, s.pool, owner, now)
	if err != nil {
		return
	}
	if s.touched.Add(1)%maxTouchEntries == 0 {
		// Forget everything now and then rather than grow with every key
		// ever used; the cost is one extra write per key.
		s.lastTouch.Clear()
	}
	s.lastTouch.Store(owner.APIKeyID, last)
}

// maxTouchEntries bounds how many keys' last uses a process remembers.
const maxTouchEntries = 100_000
