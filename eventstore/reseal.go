package eventstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"golang.org/x/mod/sumdb/tlog"
)

// Resealing is the one rewrite the append-only rule allows (migration
// 008, docs/adr/0011-personal-data-encrypted-per-person.md): replacing the
// payloads of a ledger's events, by the schema owner, in a transaction that
// set saasapi.resealing locally. The chain hashes from the first changed
// event on and the Merkle tree are recomputed, the ledger's head follows,
// the last signed checkpoint (which cannot match the new tree) is dropped
// so that the next one is signed afresh, and the old and new head and root
// are recorded in ledger_reseals.

// Reseal is what RewriteLedger changed in one ledger: the row it adds to
// ledger_reseals.
type Reseal struct {
	LedgerID          saasapi.ID
	FirstSequence     int64 // the first event whose payload changed
	EventsChanged     int
	TreeSize          int64
	OldHead           []byte
	NewHead           []byte
	OldRoot           tlog.Hash
	NewRoot           tlog.Hash
	DroppedCheckpoint string // the note of the last signed checkpoint, dropped; empty if there was none
}

// ErrNotOwner means the rewrite was refused: the connection's role is not
// the schema owner, which alone may reseal.
var ErrNotOwner = errors.New("only the schema owner (the role that ran saasapi migrate) may reseal events: connect with its credentials")

// rewriteBatch is how many events a rewrite reads per query.
const rewriteBatch = 1000

// RewriteLedger locks the ledger, checks its stored chain and tree (a
// ledger that does not verify is never rewritten, so that a rewrite cannot
// launder tampering), and passes its events, oldest first, to rewrite, which
// returns the new payload of each event (nil: unchanged; it may write rows
// of its own through tx). When no payload changes it returns (nil, nil)
// and writes nothing. Otherwise it stores the new payloads, chain hashes,
// tree hashes and head, drops the ledger's last signed checkpoint and
// records the reseal. tx must be the caller's transaction; RewriteLedger
// does not commit it.
func RewriteLedger(ctx context.Context, tx pgx.Tx, ledgerID saasapi.ID,
	rewrite func(evs []saasapi.Event) ([]json.RawMessage, error),
) (*Reseal, error) {
	if _, err := tx.Exec(ctx, `SELECT set_config('saasapi.resealing', 'on', true)`); err != nil {
		return nil, fmt.Errorf("reseal ledger %s: %w", ledgerID, err)
	}
	head, err := LockLedger(ctx, tx, ledgerID)
	if err != nil {
		return nil, err
	}
	if _, err := VerifyLedger(ctx, tx, ledgerID); err != nil {
		return nil, fmt.Errorf("reseal ledger %s: the stored chain does not verify, so it is left alone: %w", ledgerID, err)
	}
	var evs []saasapi.Event
	for {
		page, err := ReadLedger(ctx, tx, ledgerID, int64(len(evs)), rewriteBatch)
		if err != nil {
			return nil, err
		}
		evs = append(evs, page...)
		if len(page) < rewriteBatch {
			break
		}
	}
	payloads, err := rewrite(evs)
	if err != nil {
		return nil, err
	}
	if len(payloads) != len(evs) {
		return nil, fmt.Errorf("reseal ledger %s: %d payloads for %d events", ledgerID, len(payloads), len(evs))
	}
	first := -1
	for i, p := range payloads {
		if p != nil && !bytes.Equal(p, evs[i].Payload) {
			first = i
			break
		}
	}
	if first < 0 {
		return nil, nil
	}

	r := &Reseal{LedgerID: ledgerID, FirstSequence: int64(first) + 1, TreeSize: head.Tree.Size, OldHead: head.Hash}
	if r.OldRoot, err = head.Tree.Root(); err != nil {
		return nil, fmt.Errorf("reseal ledger %s: %w", ledgerID, err)
	}
	var (
		tree               Tree
		seqs               []int64
		newPayloads        []string
		prevHashes, hashes [][]byte
		rows               = treeRows{first: -1}
	)
	prev := ZeroHash
	for i, e := range evs {
		if i < first {
			if _, _, err := tree.Append(e.Hash); err != nil {
				return nil, err
			}
			prev = e.Hash
			continue
		}
		if p := payloads[i]; p != nil && !bytes.Equal(p, e.Payload) {
			if !json.Valid(p) {
				return nil, fmt.Errorf("reseal ledger %s: the new payload of event %s is not JSON", ledgerID, e.ID)
			}
			e.Payload = p
			r.EventsChanged++
		}
		e.PrevHash = prev
		e.Hash = Hash(prev, Canonical(e))
		if err := rows.add(&tree, e.Hash); err != nil {
			return nil, err
		}
		seqs = append(seqs, e.Sequence)
		newPayloads = append(newPayloads, string(e.Payload))
		prevHashes = append(prevHashes, e.PrevHash)
		hashes = append(hashes, e.Hash)
		prev = e.Hash
	}
	r.NewHead = prev
	if r.NewRoot, err = tree.Root(); err != nil {
		return nil, err
	}

	tag, err := tx.Exec(ctx, `UPDATE events e SET payload = v.payload::json, prev_hash = v.prev_hash, hash = v.hash
		FROM unnest($2::bigint[], $3::text[], $4::bytea[], $5::bytea[]) AS v(sequence, payload, prev_hash, hash)
		WHERE e.ledger_id = $1 AND e.sequence = v.sequence`, ledgerID, seqs, newPayloads, prevHashes, hashes)
	if err := rewriteFailed(err, tag.RowsAffected(), len(seqs), "events", ledgerID); err != nil {
		return nil, err
	}
	// Every record stores hashes at the same indexes whatever its data, so
	// the rewritten tree has exactly the rows the old one had.
	indexes := make([]int64, len(rows.hashes))
	for i := range indexes {
		indexes[i] = rows.first + int64(i)
	}
	tag, err = tx.Exec(ctx, `UPDATE ledger_tree_hashes t SET hash = v.hash
		FROM unnest($2::bigint[], $3::bytea[]) AS v(hash_index, hash)
		WHERE t.ledger_id = $1 AND t.hash_index = v.hash_index`, ledgerID, indexes, hashesParam(rows.hashes))
	if err := rewriteFailed(err, tag.RowsAffected(), len(indexes), "tree hashes", ledgerID); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE ledgers SET last_hash = $2, tree_frontier = $3 WHERE ledger_id = $1`,
		ledgerID, r.NewHead, encodeFrontier(tree.Frontier)); err != nil {
		return nil, fmt.Errorf("reseal ledger %s: head: %w", ledgerID, err)
	}
	var dropped *string
	err = tx.QueryRow(ctx, `DELETE FROM ledger_checkpoints WHERE ledger_id = $1 RETURNING note`, ledgerID).Scan(&dropped)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("reseal ledger %s: drop its checkpoint: %w", ledgerID, err)
	}
	if dropped != nil {
		r.DroppedCheckpoint = *dropped
	}
	if _, err := tx.Exec(ctx, `INSERT INTO ledger_reseals (ledger_id, first_sequence, events_changed, tree_size,
			old_head_hash, new_head_hash, old_root_hash, new_root_hash, dropped_checkpoint)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		ledgerID, r.FirstSequence, r.EventsChanged, r.TreeSize, r.OldHead, r.NewHead, r.OldRoot[:], r.NewRoot[:], dropped); err != nil {
		return nil, fmt.Errorf("reseal ledger %s: record it: %w", ledgerID, err)
	}
	return r, nil
}

// rewriteFailed turns a refused or short update into an error.
func rewriteFailed(err error, affected int64, want int, what string, ledgerID saasapi.ID) error {
	var pgErr interface{ SQLState() string }
	switch {
	case errors.As(err, &pgErr) && pgErr.SQLState() == "42501":
		return fmt.Errorf("reseal ledger %s: %w (%w)", ledgerID, ErrNotOwner, err)
	case err != nil:
		return fmt.Errorf("reseal ledger %s: %s: %w", ledgerID, what, err)
	case affected != int64(want):
		return fmt.Errorf("reseal ledger %s: %s: %d rows updated, want %d", ledgerID, what, affected, want)
	}
	return nil
}

// LastReseal returns the latest reseal recorded for the ledger, or nil.
func LastReseal(ctx context.Context, q Querier, ledgerID saasapi.ID) (*Reseal, error) {
	r := Reseal{LedgerID: ledgerID}
	var oldRoot, newRoot []byte
	var dropped *string
	err := q.QueryRow(ctx, `SELECT first_sequence, events_changed, tree_size, old_head_hash, new_head_hash,
			old_root_hash, new_root_hash, dropped_checkpoint
		FROM ledger_reseals WHERE ledger_id = $1 ORDER BY id DESC LIMIT 1`, ledgerID).
		Scan(&r.FirstSequence, &r.EventsChanged, &r.TreeSize, &r.OldHead, &r.NewHead, &oldRoot, &newRoot, &dropped)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the reseals of ledger %s: %w", ledgerID, err)
	}
	copy(r.OldRoot[:], oldRoot)
	copy(r.NewRoot[:], newRoot)
	if dropped != nil {
		r.DroppedCheckpoint = *dropped
	}
	return &r, nil
}
