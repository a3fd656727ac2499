package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
)

// IdempotencyTTL is how long a stored result answers repeats of its
// request; after that the key may be used again.
const IdempotencyTTL = 24 * time.Hour

// Idempotency identifies a request sent with an Idempotency-Key header.
// Its scope is the principal, the organisation (none for POST /orgs), the
// key, the method and the path; RequestHash fingerprints the body.
type Idempotency struct {
	Key         string
	Method      string
	Path        string
	RequestHash []byte
}

// Outcome is a command's response as the transport renders it: the status
// and body to send now, and whether they were replayed from an earlier
// execution.
type Outcome struct {
	Status   int
	Body     []byte
	Replayed bool
}

// Rendered is what a Render function makes of a command's result: the
// status, the body for this response, and the body to store for replays
// (nil means the same body; an API key's replay must not hold the raw key).
type Rendered struct {
	Status int
	Body   []byte
	Stored []byte
}

// Render turns a command's result into its response. The transport owns
// the JSON shapes; the commands own storing them in the same transaction.
type Render[T any] func(T) (Rendered, error)

// claim takes the idempotency record of the request's scope inside the
// command's transaction. It returns nil when this request holds the claim
// and must execute, or the stored outcome to replay. A concurrent request
// with the same scope blocks on the record's primary key until the first
// transaction ends: on commit it finds the result and replays it, on
// rollback its insert goes through and it executes. So a request executes
// once across any number of replicas, with no lock service.
func claim(ctx context.Context, tx pgx.Tx, p saasapi.Principal, orgID saasapi.ID, idem *Idempotency, now time.Time) (*Outcome, error) {
	if idem == nil {
		return nil, nil
	}
	scope := []any{string(p.Type), p.ID(), orgID, idem.Key, idem.Method, idem.Path}
	// Two passes: the second runs after an expired record was deleted.
	for range 2 {
		tag, err := tx.Exec(ctx, `INSERT INTO idempotency_records (principal_type, principal_id, organisation_id,
				idempotency_key, method, path, request_hash, status_code, response_body, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 0, '', $8, $9) ON CONFLICT DO NOTHING`,
			append(scope, idem.RequestHash, now, now.Add(IdempotencyTTL))...)
		if err != nil {
			return nil, fmt.Errorf("claim idempotency key: %w", err)
		}
		if tag.RowsAffected() == 1 {
			return nil, nil
		}
		var (
			hash    []byte
			out     = Outcome{Replayed: true}
			expired bool
		)
		err = tx.QueryRow(ctx, `SELECT request_hash, status_code, response_body, expires_at <= $7
			FROM idempotency_records WHERE principal_type = $1 AND principal_id = $2 AND organisation_id = $3
				AND idempotency_key = $4 AND method = $5 AND path = $6`,
			append(scope, now)...).Scan(&hash, &out.Status, &out.Body, &expired)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // pruned between the two statements: claim again
		}
		if err != nil {
			return nil, fmt.Errorf("read idempotency record: %w", err)
		}
		if expired {
			if _, err := tx.Exec(ctx, `DELETE FROM idempotency_records WHERE principal_type = $1 AND principal_id = $2
					AND organisation_id = $3 AND idempotency_key = $4 AND method = $5 AND path = $6 AND expires_at <= $7`,
				append(scope, now)...); err != nil {
				return nil, fmt.Errorf("expire idempotency record: %w", err)
			}
			continue
		}
		if string(hash) != string(idem.RequestHash) {
			return nil, saasapi.Errorf(saasapi.ECONFLICT, saasapi.MsgIdempotencyMismatch)
		}
		return &out, nil
	}
	return nil, errors.New("claim idempotency key: record keeps changing")
}

// store renders the result and, for an idempotent request, saves the
// rendering in the claimed record before the transaction commits.
func store[T any](ctx context.Context, tx pgx.Tx, p saasapi.Principal, orgID saasapi.ID, idem *Idempotency, render Render[T], result T) (Outcome, error) {
	r, err := render(result)
	if err != nil {
		return Outcome{}, err
	}
	if idem != nil {
		stored := r.Stored
		if stored == nil {
			stored = r.Body
		}
		if _, err := tx.Exec(ctx, `UPDATE idempotency_records SET status_code = $7, response_body = $8
			WHERE principal_type = $1 AND principal_id = $2 AND organisation_id = $3
				AND idempotency_key = $4 AND method = $5 AND path = $6`,
			string(p.Type), p.ID(), orgID, idem.Key, idem.Method, idem.Path, r.Status, stored); err != nil {
			return Outcome{}, fmt.Errorf("store idempotent response: %w", err)
		}
	}
	return Outcome{Status: r.Status, Body: r.Body}, nil
}

// PruneIdempotency deletes expired idempotency records, a batch at a time
// so that no statement holds many locks, and returns how many it deleted.
func (s *Service) PruneIdempotency(ctx context.Context) (int64, error) {
	var total int64
	now := s.now()
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency_records WHERE ctid IN (
			SELECT ctid FROM idempotency_records WHERE expires_at <= $1 LIMIT 1000)`, now)
		if err != nil {
			return total, fmt.Errorf("prune idempotency records: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 1000 {
			return total, nil
		}
	}
}
