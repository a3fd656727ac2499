package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
)

// APIKey is the api_keys read model, with its last use (kept outside the
// projected table) joined in.
type APIKey struct {
	ID              saasapi.ID
	OrganisationID  saasapi.ID
	Name            string
	KeyPrefix       string
	CreatedByUserID *saasapi.ID
	RevokedAt       *time.Time
	LastUsedAt      *time.Time
	Version         int64
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

func init() {
	register(saasapi.EventAPIKeyCreated, func(b *pgx.Batch, e saasapi.Event, p any) {
		d := p.(*saasapi.APIKeyCreated)
		b.Queue(`INSERT INTO api_keys (organisation_id, id, name, key_prefix, created_by_user_id, version, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $7)`,
			e.LedgerID, e.StreamID, d.APIKeyName, d.KeyPrefix, e.Actor.UserID.Ptr(), e.StreamVersion, e.OccurredAt)
	})
	register(saasapi.EventAPIKeyRevoked, func(b *pgx.Batch, e saasapi.Event, _ any) {
		b.Queue(`UPDATE api_keys SET revoked_at = $3, version = $4, updated_at = $3
			WHERE organisation_id = $1 AND id = $2`, e.LedgerID, e.StreamID, e.OccurredAt, e.StreamVersion)
	})
}

// apiKeyFold is an api_keys row as the bulk path folds it.
type apiKeyFold struct {
	orgID, id, name, prefix string
	createdBy               *string
	revokedAt               *time.Time
	version                 int64
	createdAt, updatedAt    time.Time
}

func (r *apiKeyFold) table() string { return "api_keys" }

func (r *apiKeyFold) values() []any {
	return []any{r.orgID, r.id, r.name, r.prefix, r.createdBy, r.revokedAt, r.version, r.createdAt, r.updatedAt}
}

func init() {
	copyColumns["api_keys"] = []string{"organisation_id", "id", "name", "key_prefix", "created_by_user_id",
		"revoked_at", "version", "created_at", "updated_at"}
	registerFold(saasapi.EventAPIKeyCreated, func(cur row, e saasapi.Event, p any) (row, error) {
		if cur != nil {
			return nil, errCreatedTwice(e)
		}
		d := p.(*saasapi.APIKeyCreated)
		return &apiKeyFold{orgID: string(e.LedgerID), id: string(e.StreamID), name: d.APIKeyName, prefix: d.KeyPrefix,
			createdBy: idPtr(e.Actor.UserID), version: e.StreamVersion, createdAt: e.OccurredAt, updatedAt: e.OccurredAt}, nil
	})
	registerFold(saasapi.EventAPIKeyRevoked, func(cur row, e saasapi.Event, _ any) (row, error) {
		if r, ok := cur.(*apiKeyFold); ok {
			r.revokedAt = timePtr(e.OccurredAt)
			r.version, r.updatedAt = e.StreamVersion, e.OccurredAt
		}
		return cur, nil
	})
}

// CreatedAPIKey is the row the api_key.created handler writes, as the
// read model returns it: never used yet, not revoked.
func CreatedAPIKey(e saasapi.Event) APIKey {
	c := payloadOf[saasapi.APIKeyCreated](e)
	return APIKey{ID: e.StreamID, OrganisationID: e.LedgerID, Name: c.APIKeyName, KeyPrefix: c.KeyPrefix,
		CreatedByUserID: e.Actor.UserID.Ptr(), Version: e.StreamVersion, CreatedAt: e.OccurredAt, UpdatedAt: e.OccurredAt}
}

const apiKeyColumns = `k.id, k.organisation_id, k.name, k.key_prefix, k.created_by_user_id, k.revoked_at,
	u.last_used_at, k.version, k.created_at, k.updated_at`

const apiKeyFrom = ` FROM api_keys k LEFT JOIN api_key_usage u
	ON u.organisation_id = k.organisation_id AND u.api_key_id = k.id`

func scanAPIKey(row pgx.Row) (APIKey, error) {
	var k APIKey
	err := row.Scan(&k.ID, &k.OrganisationID, &k.Name, &k.KeyPrefix, &k.CreatedByUserID, &k.RevokedAt,
		&k.LastUsedAt, &k.Version, &k.CreatedAt, &k.UpdatedAt)
	return k, err
}

// QueueAPIKey queues the read of a key of s, revoked or not.
func QueueAPIKey(b *pgx.Batch, s Scope, id saasapi.ID, dst *Lookup[APIKey]) error {
	return queueRow(b, s, `SELECT `+apiKeyColumns+apiKeyFrom+` WHERE k.organisation_id = $1 AND k.id = $2{scope}`,
		scanAPIKey, dst, id)
}

// APIKeyOf is the key a Lookup found, or 404 api key was not found.
func APIKeyOf(l Lookup[APIKey]) (APIKey, error) {
	return l.or(saasapi.Errorf(saasapi.ENOTFOUND, saasapi.MsgAPIKeyNotFound))
}

// GetAPIKey returns an API key of the authorized organisation, revoked or
// not, or 404 api key was not found.
func GetAPIKey(ctx context.Context, q Querier, a saasapi.Access, id saasapi.ID) (APIKey, error) {
	var l Lookup[APIKey]
	if err := send(ctx, q, "get api key", func(b *pgx.Batch) error { return QueueAPIKey(b, Within(a), id, &l) }); err != nil {
		return APIKey{}, err
	}
	return APIKeyOf(l)
}

// QueueListAPIKeys queues a page of the keys of s, newest first, revoked
// ones included, and their total.
func QueueListAPIKeys(b *pgx.Batch, s Scope, page Page, dst *PageOf[APIKey]) error {
	return queuePage(b, s, `SELECT `+apiKeyColumns+apiKeyFrom+` WHERE k.organisation_id = $1{scope}
		ORDER BY k.created_at DESC, k.id DESC LIMIT $2 OFFSET $3`,
		`SELECT count(*) FROM api_keys WHERE organisation_id = $1{scope}`, scanAPIKey, page, dst)
}

// KeyOwner is what authenticating with an API key yields.
type KeyOwner struct {
	APIKeyID       saasapi.ID
	OrganisationID saasapi.ID
	Revoked        bool
}

// APIKeyByHash finds the key whose secret hashes to hash; found is false
// for an unknown key.
func APIKeyByHash(ctx context.Context, q Querier, hash []byte) (owner KeyOwner, found bool, err error) {
	err = q.QueryRow(ctx, `SELECT s.api_key_id, s.organisation_id, k.revoked_at IS NOT NULL
		FROM api_key_secrets s JOIN api_keys k ON k.organisation_id = s.organisation_id AND k.id = s.api_key_id
		WHERE s.key_hash = $1`, hash).Scan(&owner.APIKeyID, &owner.OrganisationID, &owner.Revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return KeyOwner{}, false, nil
	}
	if err != nil {
		return KeyOwner{}, false, fmt.Errorf("find api key: %w", err)
	}
	return owner, true, nil
}

// TouchAPIKey records that a key was used at t, unless a use within the
// last minute is already recorded: last_used_at may lag by up to a minute,
// and in exchange key-authenticated reads do not each become a write. It
// returns the last use now on record, written by this call or by another
// replica.
func TouchAPIKey(ctx context.Context, q Querier, owner KeyOwner, t time.Time) (time.Time, error) {
	var last time.Time
	// A revoked key is used no more: its last use stays as it was.
	err := q.QueryRow(ctx, `WITH up AS (
			INSERT INTO api_key_usage (organisation_id, api_key_id, last_used_at)
			SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM api_keys
				WHERE organisation_id = $1 AND id = $2 AND revoked_at IS NULL)
			ON CONFLICT (organisation_id, api_key_id) DO UPDATE SET last_used_at = excluded.last_used_at
			WHERE api_key_usage.last_used_at < excluded.last_used_at - interval '1 minute'
			RETURNING last_used_at)
		SELECT coalesce((SELECT last_used_at FROM up),
			(SELECT last_used_at FROM api_key_usage WHERE organisation_id = $1 AND api_key_id = $2), $3)`,
		owner.OrganisationID, owner.APIKeyID, t).Scan(&last)
	if err != nil {
		return time.Time{}, fmt.Errorf("touch api key: %w", err)
	}
	return last, nil
}
