package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/projections"
)

// The people's data keys (saasapi.DataKeyring) live wrapped in person_keys,
// a mutable table beside the secrets of user_credentials: erasing a person
// deletes their row. Rebuilds never touch it.

// Querier is what the key store needs from a pool or transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// CheckDataKey makes sure that the key-encryption key is the database's: the first
// start-up stores a key check value (a constant sealed with the key), every
// later one must open it. A wrong key is refused at start-up, never
// discovered later as unreadable data.
func CheckDataKey(ctx context.Context, q Querier, k *saasapi.DataKeyring) error {
	var stored, next []byte
	err := q.QueryRow(ctx, `WITH ins AS (
			INSERT INTO data_key_check (check_value) VALUES ($1) ON CONFLICT DO NOTHING RETURNING check_value, next_check_value)
		SELECT check_value, next_check_value FROM ins
		UNION ALL SELECT check_value, next_check_value FROM data_key_check LIMIT 1`,
		k.FirstCheckValue()).Scan(&stored, &next)
	if err != nil {
		return fmt.Errorf("read the data key check value: %w", err)
	}
	return k.VerifyCheckValues(stored, next)
}

// queueStoreDataKey queues the insert of a person's wrapped data key.
func queueStoreDataKey(b *pgx.Batch, k *saasapi.DataKeyring, userID saasapi.ID, dataKey []byte) {
	b.Queue(`INSERT INTO person_keys (user_id, wrapped_key, kek_id) VALUES ($1, $2, $3)`, userID, k.Wrap(userID, dataKey), k.ID())
}

// QueueLoadDataKey queues the read of a person's data key into dst (left nil
// when the person has no key: never had one, or was erased).
func QueueLoadDataKey(b *pgx.Batch, k *saasapi.DataKeyring, userID saasapi.ID, dst *[]byte) {
	b.Queue(`SELECT wrapped_key FROM person_keys WHERE user_id = $1`, userID).QueryRow(func(row pgx.Row) error {
		var wrapped []byte
		err := row.Scan(&wrapped)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		*dst, err = k.Unwrap(userID, wrapped)
		return err
	})
}

// LoadDataKeys returns the data keys of the given people that still have one.
func LoadDataKeys(ctx context.Context, q Querier, k *saasapi.DataKeyring, userIDs []saasapi.ID) (map[saasapi.ID][]byte, error) {
	ids := make([]string, len(userIDs))
	for i, id := range userIDs {
		ids[i] = string(id)
	}
	rows, err := q.Query(ctx, `SELECT user_id, wrapped_key FROM person_keys WHERE user_id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("load person keys: %w", err)
	}
	defer rows.Close()
	keys := make(map[saasapi.ID][]byte, len(userIDs))
	for rows.Next() {
		var (
			id      saasapi.ID
			wrapped []byte
		)
		if err := rows.Scan(&id, &wrapped); err != nil {
			return nil, err
		}
		if keys[id], err = k.Unwrap(id, wrapped); err != nil {
			return nil, err
		}
	}
	return keys, rows.Err()
}

// OpenedEvents is the event source of a replay (projections.Rebuild and
// Verify): the stored events, by position and stream by stream, with their
// personal fields opened with k's keys (or Erased where a key is gone).
func OpenedEvents(k *saasapi.DataKeyring) projections.Source {
	return projections.Source{
		Positions: func(ctx context.Context, tx pgx.Tx, after int64, limit int) ([]saasapi.Event, error) {
			evs, err := eventstore.ReadAll(ctx, tx, after, limit)
			if err != nil {
				return nil, err
			}
			return evs, OpenPersonalEvents(ctx, tx, k, evs)
		},
		Streams: func(ctx context.Context, tx pgx.Tx, after saasapi.Event, limit int) ([]saasapi.Event, error) {
			evs, err := eventstore.ReadStreams(ctx, tx, after, limit)
			if err != nil {
				return nil, err
			}
			return evs, OpenPersonalEvents(ctx, tx, k, evs)
		},
	}
}

// OpenPersonalEvents opens the personal fields of evs in place, loading the keys
// of the people they belong to through q. Where a key is gone the fields
// read Erased.
func OpenPersonalEvents(ctx context.Context, q Querier, k *saasapi.DataKeyring, evs []saasapi.Event) error {
	var subjects []saasapi.ID
	for _, e := range evs {
		if len(saasapi.PersonalFields(e.Type)) > 0 {
			subjects = append(subjects, e.LedgerID)
		}
	}
	if len(subjects) == 0 {
		return nil
	}
	keys, err := LoadDataKeys(ctx, q, k, subjects)
	if err != nil {
		return err
	}
	for i, e := range evs {
		if evs[i], err = saasapi.OpenPersonal(keys[e.LedgerID], e); err != nil {
			return err
		}
	}
	return nil
}
