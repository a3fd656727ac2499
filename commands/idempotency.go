package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

var errClaimVanished = errors.New("claim idempotency key: the record vanished")

// claimState is what the claim's two statements found.
type claimState struct {
	claimed bool
	found   bool
	hash    []byte
	stored  Outcome
}

// queueClaim queues the claim of the idempotency record of the request's
// scope, for the command's first round trip. The insert takes the record,
// or replaces an expired one; a concurrent request with the same scope
// blocks on the record's primary key until the first transaction ends: on
// commit the insert does nothing and the select that follows (a statement
// of its own, so it sees that commit) finds the result to replay; on
// rollback the insert goes through and this request executes. So a
// request executes once across any number of replicas, with no lock
// service.
func queueClaim(b *pgx.Batch, p saasapi.Principal, orgID saasapi.ID, idem *Idempotency, now time.Time, st *claimState) {
	scope := []any{string(p.Type), p.ID(), orgID, idem.Key, idem.Method, idem.Path}
	b.Queue(`INSERT INTO idempotency_records AS r (principal_type, principal_id, organisation_id,
			idempotency_key, method, path, request_hash, status_code, response_body, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 0, '', $8, $9)
		ON CONFLICT (principal_type, principal_id, organisation_id, idempotency_key, method, path) DO UPDATE
			SET request_hash = excluded.request_hash, status_code = 0, response_body = '',
				created_at = excluded.created_at, expires_at = excluded.expires_at
			WHERE r.expires_at <= excluded.created_at`,
		append(scope, idem.RequestHash, now, now.Add(IdempotencyTTL))...).Exec(func(tag pgconn.CommandTag) error {
		st.claimed = tag.RowsAffected() == 1
		return nil
	})
	b.Queue(`SELECT request_hash, status_code, response_body FROM idempotency_records
		WHERE principal_type = $1 AND principal_id = $2 AND organisation_id = $3
			AND idempotency_key = $4 AND method = $5 AND path = $6`, scope...).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&st.hash, &st.stored.Status, &st.stored.Body)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		st.found = err == nil
		return err
	})
}

// outcome returns nil when this request holds the claim and must execute,
// or the stored outcome to replay.
func (st claimState) outcome(idem *Idempotency) (*Outcome, error) {
	if st.claimed {
		return nil, nil
	}
	if !st.found {
		// Pruned between the two statements: a retry claims it.
		return nil, errClaimVanished
	}
	if string(st.hash) != string(idem.RequestHash) {
		return nil, saasapi.Errorf(saasapi.ECONFLICT, saasapi.MsgIdempotencyMismatch)
	}
	out := st.stored
	out.Replayed = true
	return &out, nil
}

// queueStore saves the rendered response in the claimed record, in the
// command's last round trip, before COMMIT.
func queueStore(b *pgx.Batch, p saasapi.Principal, orgID saasapi.ID, idem *Idempotency, status int, body []byte) {
	b.Queue(`UPDATE idempotency_records SET status_code = $7, response_body = $8
		WHERE principal_type = $1 AND principal_id = $2 AND organisation_id = $3
			AND idempotency_key = $4 AND method = $5 AND path = $6`,
		string(p.Type), p.ID(), orgID, idem.Key, idem.Method, idem.Path, status, body)
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
