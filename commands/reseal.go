package commands

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
)

// Sealing what earlier versions stored in plain text
// (docs/adr/0011-personal-data-encrypted-per-person.md, "Events written
// before sealing"): one transaction per user ledger, under the schema
// owner, through eventstore.RewriteLedger.

// legacyFilter selects the user ledgers' events with a personal field in
// plain text: $1 are the event types with personal fields, $2 their
// "type.field" pairs, $3 the sealed prefix.
const legacyFilter = `e.ledger_type = 'user' AND e.event_type = ANY($1) AND EXISTS (
	SELECT 1 FROM json_each_text(e.payload) AS kv
	WHERE e.event_type || '.' || kv.key = ANY($2) AND left(kv.value, length($3)) <> $3)`

func legacyArgs() []any {
	types := saasapi.PersonalEventTypes()
	var pairs []string
	for _, t := range types {
		for _, f := range saasapi.PersonalFields(t) {
			pairs = append(pairs, t+"."+f)
		}
	}
	return []any{types, pairs, saasapi.SealedValuePrefix}
}

// CountPlainPersonalEvents returns how many events hold a personal field in
// plain text.
func CountPlainPersonalEvents(ctx context.Context, q Querier) (int64, error) {
	var n int64
	if err := q.QueryRow(ctx, `SELECT count(*) FROM events e WHERE `+legacyFilter, legacyArgs()...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count plain personal data: %w", err)
	}
	return n, nil
}

// PlainPersonalLedgers returns, in ID order, up to limit IDs greater than
// after of the user ledgers that hold a personal field in plain text.
func PlainPersonalLedgers(ctx context.Context, q Querier, after saasapi.ID, limit int) ([]saasapi.ID, error) {
	// In ledger order by the ledgers' primary key, each probing only its
	// own events: a whole run reads every user ledger's events once.
	// (A lateral subquery with LIMIT 1, not EXISTS: the planner would turn
	// EXISTS into a merge join that reads the events from the start on
	// every page.)
	rows, err := q.Query(ctx, `SELECT l.ledger_id FROM ledgers l
		CROSS JOIN LATERAL (SELECT 1 FROM events e WHERE e.ledger_id = l.ledger_id AND `+legacyFilter+` LIMIT 1) AS plain
		WHERE l.ledger_type = 'user' AND l.ledger_id > $4
		ORDER BY l.ledger_id LIMIT $5`,
		append(legacyArgs(), after, limit)...)
	if err != nil {
		return nil, fmt.Errorf("find plain personal data: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[saasapi.ID])
	if err != nil {
		return nil, fmt.Errorf("find plain personal data: %w", err)
	}
	return ids, nil
}

// TxBeginner starts transactions: a pool or a connection.
type TxBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// SealPlainLedger seals the plain personal fields of one user ledger's
// events in one transaction, with the person's data key (created when they
// have none). A person who was erased before sealing existed has no key
// and must not get one: their values are sealed under a fresh key that is
// never stored, which makes them as unreadable as an erasure does. It
// returns nil when the ledger holds nothing in plain text (already sealed:
// a re-run skips it). db must connect as the schema owner.
func SealPlainLedger(ctx context.Context, db TxBeginner, keys *saasapi.DataKeyring, ledgerID saasapi.ID) (*eventstore.Reseal, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	r, err := eventstore.RewriteLedger(ctx, tx, ledgerID, func(evs []saasapi.Event) ([]json.RawMessage, error) {
		out := make([]json.RawMessage, len(evs))
		plain, erased := false, false
		for _, e := range evs {
			plain = plain || saasapi.HasPlainPersonal(e)
			erased = erased || e.Type == saasapi.EventUserErased
		}
		if !plain {
			return out, nil
		}
		if len(evs) == 0 || evs[0].LedgerType != saasapi.LedgerUser {
			return nil, fmt.Errorf("ledger %s is not a user's ledger", ledgerID)
		}
		dataKey, err := personKey(ctx, tx, keys, ledgerID, erased)
		if err != nil {
			return nil, err
		}
		for i, e := range evs {
			if out[i], err = saasapi.SealPlainPersonal(dataKey, e); err != nil {
				return nil, fmt.Errorf("seal event %s: %w", e.ID, err)
			}
		}
		return out, nil
	})
	if err != nil || r == nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("reseal ledger %s: commit: %w", ledgerID, err)
	}
	return r, nil
}

// personKey returns the person's data key, storing a new one (wrapped)
// when they have none, or a throwaway key when they were erased.
func personKey(ctx context.Context, tx pgx.Tx, keys *saasapi.DataKeyring, userID saasapi.ID, erased bool) ([]byte, error) {
	have, err := LoadDataKeys(ctx, tx, keys, []saasapi.ID{userID})
	if err != nil {
		return nil, err
	}
	if k := have[userID]; k != nil {
		return k, nil
	}
	k := saasapi.NewDataKey()
	if erased {
		return k, nil // never stored: the values it seals are gone
	}
	b := &pgx.Batch{}
	queueStoreDataKey(b, keys, userID, k)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("store the data key of %s: %w", userID, err)
	}
	return k, nil
}
