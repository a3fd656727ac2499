package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
)

// Re-wrapping every person's data key under a new key-encryption key
// (docs/runbook.md, "Rotating the data key"). The keyring holds the new key
// (SAAS_API_DATA_KEY) and the one it replaces (SAAS_API_DATA_KEY_PREVIOUS).
// A rotation is under way while data_key_check.next_check_value is set:
// BeginRewrap records it, RewrapBatch re-wraps keys a batch per
// transaction, and FinishRewrap re-wraps what was added meanwhile and moves
// the check value to the new key in one transaction. Keys are unwrapped
// and wrapped again in the process only; the database sees wrapped keys
// alone. Any step may be interrupted and the whole run again.

// ErrRotationDone means the check value already names the new key: there
// is no rotation to begin.
var ErrRotationDone = errors.New("the data key check value already names " + saasapi.EnvDataKey)

// BeginRewrap records that a rotation to the keyring's key is under way
// and returns how many person keys are not wrapped with it yet. It needs a
// keyring with the previous key, which must be the one of the check value;
// when the rotation was begun already, it goes on with it.
// ErrRotationDone means the check value is the new key's already.
func BeginRewrap(ctx context.Context, db TxBeginner, k *saasapi.DataKeyring) (left int64, err error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := CheckDataKey(ctx, tx, k); err != nil { // binds a database that has no check value yet
		return 0, err
	}
	var stored, next []byte
	if err := tx.QueryRow(ctx, `SELECT check_value, next_check_value FROM data_key_check FOR UPDATE`).Scan(&stored, &next); err != nil {
		return 0, fmt.Errorf("read the data key check value: %w", err)
	}
	if err := k.VerifyCheckValues(stored, next); err != nil {
		return 0, err
	}
	if k.VerifyCheckValue(stored) == nil {
		return 0, ErrRotationDone
	}
	if !k.Rotating() {
		return 0, fmt.Errorf("%s is required: the key the data keys are wrapped with now", saasapi.EnvDataKeyPrevious)
	}
	if next == nil {
		if _, err := tx.Exec(ctx, `UPDATE data_key_check SET next_check_value = $1`, k.CheckValue()); err != nil {
			return 0, fmt.Errorf("record the rotation: %w", err)
		}
	}
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM person_keys WHERE kek_id IS DISTINCT FROM $1`, k.ID()).Scan(&left); err != nil {
		return 0, fmt.Errorf("count the keys to re-wrap: %w", err)
	}
	return left, tx.Commit(ctx)
}

// RewrapBatch re-wraps, in one transaction, up to n of the person keys
// with a user ID after after that are not wrapped with the keyring's key,
// and returns the last user ID it looked at and how many it re-wrapped
// (fewer than n: none are left after after).
func RewrapBatch(ctx context.Context, db TxBeginner, k *saasapi.DataKeyring, after saasapi.ID, n int) (saasapi.ID, int, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return after, 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	last, done, err := rewrap(ctx, tx, k, `SELECT user_id, wrapped_key FROM person_keys
		WHERE user_id > $2 AND kek_id IS DISTINCT FROM $1 ORDER BY user_id LIMIT $3 FOR UPDATE`, after, n)
	if err != nil || done == 0 {
		return after, 0, err
	}
	return last, done, tx.Commit(ctx)
}

// FinishRewrap re-wraps the keys still not wrapped with the keyring's key
// (those that writers holding only the previous key added since the
// batches passed) and moves the check value to the new key, in one
// transaction that keeps writers of person_keys waiting meanwhile. It
// returns how many keys it re-wrapped.
func FinishRewrap(ctx context.Context, db TxBeginner, k *saasapi.DataKeyring) (int, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `LOCK TABLE person_keys IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		return 0, fmt.Errorf("lock person_keys: %w", err)
	}
	var next []byte
	if err := tx.QueryRow(ctx, `SELECT next_check_value FROM data_key_check FOR UPDATE`).Scan(&next); err != nil {
		return 0, fmt.Errorf("read the data key check value: %w", err)
	}
	if next == nil || k.VerifyCheckValue(next) != nil {
		return 0, errors.New("no rotation to " + saasapi.EnvDataKey + " is under way: nothing to finish")
	}
	_, done, err := rewrap(ctx, tx, k, `SELECT user_id, wrapped_key FROM person_keys
		WHERE kek_id IS DISTINCT FROM $1 ORDER BY user_id`)
	if err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `UPDATE data_key_check SET check_value = next_check_value, next_check_value = NULL`); err != nil {
		return 0, fmt.Errorf("move the check value to the new key: %w", err)
	}
	return done, tx.Commit(ctx)
}

// rewrap re-wraps the rows that query selects ($1 the keyring's ID, then
// args) with the keyring's key, and returns the last user ID and their
// number.
func rewrap(ctx context.Context, tx pgx.Tx, k *saasapi.DataKeyring, query string, args ...any) (saasapi.ID, int, error) {
	rows, err := tx.Query(ctx, query, append([]any{k.ID()}, args...)...)
	if err != nil {
		return "", 0, fmt.Errorf("read the keys to re-wrap: %w", err)
	}
	type row struct {
		UserID  saasapi.ID
		Wrapped []byte
	}
	keys, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		return "", 0, fmt.Errorf("read the keys to re-wrap: %w", err)
	}
	if len(keys) == 0 {
		return "", 0, nil
	}
	ids := make([]string, len(keys))
	wrapped := make([][]byte, len(keys))
	for i, r := range keys {
		dk, err := k.Unwrap(r.UserID, r.Wrapped)
		if err != nil {
			return "", 0, fmt.Errorf("the data key of %s opens with neither %s nor %s", r.UserID, saasapi.EnvDataKey, saasapi.EnvDataKeyPrevious)
		}
		ids[i], wrapped[i] = string(r.UserID), k.Wrap(r.UserID, dk)
		clear(dk)
	}
	if _, err := tx.Exec(ctx, `UPDATE person_keys p SET wrapped_key = v.wrapped_key, kek_id = $1
		FROM unnest($2::text[], $3::bytea[]) AS v(user_id, wrapped_key) WHERE p.user_id = v.user_id`,
		k.ID(), ids, wrapped); err != nil {
		return "", 0, fmt.Errorf("store the re-wrapped keys: %w", err)
	}
	return keys[len(keys)-1].UserID, len(keys), nil
}
