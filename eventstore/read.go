package eventstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
)

// eventColumns is the select list that scanEvent reads. payload is read as
// text so that its bytes are exactly the stored (and hashed) ones.
const eventColumns = `position, event_id, ledger_id, ledger_type, sequence, stream_type, stream_id,
	stream_version, event_type, schema_version, actor_type, coalesce(actor_user_id, ''),
	coalesce(actor_api_key_id, ''), coalesce(request_id, ''), occurred_at, payload::text, prev_hash, hash`

func scanEvent(row pgx.CollectableRow) (saasapi.Event, error) {
	var (
		e       saasapi.Event
		actor   string
		payload string
	)
	err := row.Scan(&e.Position, &e.ID, &e.LedgerID, &e.LedgerType, &e.Sequence, &e.StreamType, &e.StreamID,
		&e.StreamVersion, &e.Type, &e.SchemaVersion, &actor, &e.Actor.UserID,
		&e.Actor.APIKeyID, &e.RequestID, &e.OccurredAt, &payload, &e.PrevHash, &e.Hash)
	e.Actor.Type = saasapi.PrincipalType(actor)
	e.OccurredAt = e.OccurredAt.UTC()
	e.Payload = []byte(payload)
	return e, err
}

// ReadAll returns up to limit events with a position greater than after, in
// position order: the order a projection rebuild replays them in.
func ReadAll(ctx context.Context, q Querier, after int64, limit int) ([]saasapi.Event, error) {
	rows, err := q.Query(ctx,
		`SELECT `+eventColumns+` FROM events WHERE position > $1 ORDER BY position LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	evs, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return evs, nil
}

// ReadStreams returns up to limit events that follow after in stream
// order (stream ID, stream type, stream version; the zero Event starts at
// the beginning): every stream's events together, oldest first, the order
// a projection rebuild's bulk path folds them in. The keyset follows
// events_stream_key.
func ReadStreams(ctx context.Context, q Querier, after saasapi.Event, limit int) ([]saasapi.Event, error) {
	rows, err := q.Query(ctx, `SELECT `+eventColumns+` FROM events
		WHERE (stream_id, stream_type, stream_version) > ($1, $2, $3)
		ORDER BY stream_id, stream_type, stream_version LIMIT $4`,
		after.StreamID, after.StreamType, after.StreamVersion, limit)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	evs, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return evs, nil
}

// ReadLedger returns up to limit events of one ledger with a sequence greater
// than after, oldest first.
func ReadLedger(ctx context.Context, q Querier, ledgerID saasapi.ID, after int64, limit int) ([]saasapi.Event, error) {
	rows, err := q.Query(ctx,
		`SELECT `+eventColumns+` FROM events WHERE ledger_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3`,
		ledgerID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read ledger %s: %w", ledgerID, err)
	}
	evs, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("read ledger %s: %w", ledgerID, err)
	}
	return evs, nil
}

// CountEvents returns the number of stored events; tests use it to prove a
// failed command left nothing behind.
func CountEvents(ctx context.Context, q Querier) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n)
	return n, err
}
