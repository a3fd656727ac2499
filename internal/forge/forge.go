// Package forge rewrites a ledger the way an attacker with the database
// owner's credentials can: the events, the chain, the head and the Merkle
// tree all recomputed, so that every stored row is consistent with every
// other. Tests use it to show what only a signed checkpoint held outside
// the database reveals.
package forge

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
)

// Rewrite replaces the ledger's events after sequence keep with the result
// of edit applied to them (edit may change, drop or add events; nil keeps
// them), re-chains and re-trees the whole ledger and rewrites its head, in
// one transaction with the append-only triggers disabled. It needs a
// connection of the tables' owner or a superuser.
func Rewrite(ctx context.Context, conn interface {
	Begin(context.Context) (pgx.Tx, error)
}, ledgerID saasapi.ID, keep int64, edit func([]saasapi.NewEvent) []saasapi.NewEvent,
) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	evs, err := eventstore.ReadLedger(ctx, tx, ledgerID, 0, 1<<30)
	if err != nil {
		return err
	}
	all := make([]saasapi.NewEvent, len(evs))
	for i, e := range evs {
		all[i] = saasapi.NewEvent{ID: e.ID, LedgerID: e.LedgerID, LedgerType: e.LedgerType, StreamType: e.StreamType,
			StreamID: e.StreamID, StreamVersion: e.StreamVersion, Type: e.Type, Actor: e.Actor, RequestID: e.RequestID,
			OccurredAt: e.OccurredAt, Data: e.Payload}
	}
	if keep > int64(len(all)) {
		return fmt.Errorf("forge: ledger %s has %d events, fewer than %d", ledgerID, len(all), keep)
	}
	rest := all[keep:]
	if edit != nil {
		rest = edit(append([]saasapi.NewEvent(nil), rest...))
	}
	for _, s := range []string{
		`ALTER TABLE events DISABLE TRIGGER events_append_only`,
		`ALTER TABLE ledger_tree_hashes DISABLE TRIGGER ledger_tree_hashes_append_only`,
	} {
		if _, err := tx.Exec(ctx, s); err != nil {
			return err
		}
	}
	for _, s := range []string{
		`DELETE FROM events WHERE ledger_id = $1`,
		`DELETE FROM ledger_tree_hashes WHERE ledger_id = $1`,
		`UPDATE ledgers SET last_sequence = 0, last_hash = decode(repeat('00', 32), 'hex'), tree_size = 0,
			tree_frontier = '\x'::bytea WHERE ledger_id = $1`,
	} {
		if _, err := tx.Exec(ctx, s, ledgerID); err != nil {
			return err
		}
	}
	head, err := eventstore.LockLedger(ctx, tx, ledgerID)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	if _, err := eventstore.Append(b, &head, append(all[:keep:keep], rest...)); err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	for _, s := range []string{
		`ALTER TABLE events ENABLE TRIGGER events_append_only`,
		`ALTER TABLE ledger_tree_hashes ENABLE TRIGGER ledger_tree_hashes_append_only`,
	} {
		if _, err := tx.Exec(ctx, s); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}
