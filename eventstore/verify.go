package eventstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"golang.org/x/mod/sumdb/tlog"
)

// verifyBatch is how many events verification reads per query.
const verifyBatch = 5000

// ChainError reports the first place where a ledger's stored rows do not
// form the chain that Append wrote: the ledger and the first sequence that
// is wrong (missing, out of place, altered, or a head that disagrees).
type ChainError struct {
	LedgerID saasapi.ID
	Sequence int64
	Reason   string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("ledger %s: first bad sequence %d: %s", e.LedgerID, e.Sequence, e.Reason)
}

// chain re-derives one ledger's chain and Merkle tree from its rows, fed in
// sequence order, and compares them with the ledger's stored head, tree
// hashes and tree.
type chain struct {
	head   Head
	count  int64  // events checked so far: the chain is intact up to this sequence
	prev   []byte // hash of the last checked event; ZeroHash before the first
	tree   treeCheck
	hashes *hashStream // the stored tree hashes, in (ledger_id, hash_index) order
}

func newChain(head Head, hashes *hashStream) *chain {
	return &chain{head: head, prev: ZeroHash, tree: treeCheck{ledgerID: head.LedgerID}, hashes: hashes}
}

// nextHash yields the ledger's next stored tree hash; false once the stream
// has moved past the ledger.
func (c *chain) nextHash(ctx context.Context) func() (int64, []byte, bool, error) {
	return func() (int64, []byte, bool, error) {
		r, ok, err := c.hashes.peek(ctx)
		if err != nil || !ok || r.ledgerID != c.head.LedgerID {
			return 0, nil, false, err
		}
		c.hashes.advance()
		return r.index, r.hash, true, nil
	}
}

func (c *chain) fail(seq int64, format string, args ...any) error {
	return &ChainError{LedgerID: c.head.LedgerID, Sequence: seq, Reason: fmt.Sprintf(format, args...)}
}

// add checks the next stored event. Rows arrive ordered by sequence and the
// primary key makes sequences unique, so a sequence other than the next one
// is always a larger one: the next is missing.
func (c *chain) add(ctx context.Context, e saasapi.Event) error {
	want := c.count + 1
	if e.Sequence != want {
		return c.fail(want, "event is missing (the next stored event has sequence %d)", e.Sequence)
	}
	if !bytes.Equal(e.PrevHash, c.prev) {
		if want == 1 {
			return c.fail(want, "prev_hash is not the zero hash of a ledger's first event")
		}
		return c.fail(want, "prev_hash does not equal the hash of sequence %d", want-1)
	}
	if !bytes.Equal(e.Hash, Hash(e.PrevHash, Canonical(e))) {
		return c.fail(want, "stored hash does not match the hash recomputed from the row")
	}
	if e.LedgerType != c.head.LedgerType {
		// The hash covers ledger_type, so the row was written, or forged
		// consistently, with another type than its ledger's.
		return c.fail(want, "event has ledger_type %q but the ledger is of type %q", e.LedgerType, c.head.LedgerType)
	}
	if e.Sequence > c.head.Sequence {
		return c.fail(want, "event lies beyond the ledger head (last_sequence %d)", c.head.Sequence)
	}
	if err := c.tree.add(want, e.Hash, c.nextHash(ctx)); err != nil {
		return err
	}
	c.prev = e.Hash
	c.count++
	return nil
}

// finish checks the head and the stored tree against the last event, once
// all rows were added.
func (c *chain) finish(ctx context.Context) error {
	if c.count < c.head.Sequence {
		return c.fail(c.count+1, "event is missing (the ledger head is at sequence %d, the events end at %d)",
			c.head.Sequence, c.count)
	}
	if !bytes.Equal(c.head.Hash, c.prev) {
		return c.fail(c.count, "ledger head hash (last_hash) does not equal the hash of sequence %d", c.count)
	}
	idx, _, extra, err := c.nextHash(ctx)()
	if err != nil {
		return err
	}
	return c.tree.finish(c.head.Tree, extra, idx)
}

// beginner is what a pool or a connection offers to start a transaction.
type beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// snapshot runs fn on a read-only REPEATABLE READ transaction when q can
// start one (a pool or a connection), so that the heads and the events are
// read from one snapshot and concurrent appends cannot look like a broken
// chain. A transaction passed as q is used as it is: its isolation is the
// caller's choice.
func snapshot(ctx context.Context, q Querier, fn func(Querier) error) error {
	b, ok := q.(beginner)
	if !ok {
		return fn(q)
	}
	tx, err := b.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin verification snapshot: %w", err)
	}
	// Read-only: there is nothing to commit.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	return fn(tx)
}

// VerifyLedger recomputes one ledger's hash chain and Merkle tree from its
// stored events alone and returns how many events it holds. It checks that
// the sequences run 1..n without a gap, that every prev_hash is the previous
// event's hash (the zero hash for the first), that every hash is
// Hash(prev_hash, Canonical(row)), that the ledgers row's head (last_sequence,
// last_hash) is the last event, and that every stored tree hash and the
// ledgers row's tree equal the tree recomputed from the events' hashes. The
// first problem is returned as a *ChainError; a ledger that does not exist is
// ErrLedgerNotFound.
func VerifyLedger(ctx context.Context, q Querier, ledgerID saasapi.ID) (count int64, err error) {
	count, _, err = VerifyLedgerAt(ctx, q, ledgerID, -1)
	return count, err
}

// VerifyLedgerAt is VerifyLedger that also returns the root of the tree of
// the first size events, recomputed from the events (not from the stored
// tree hashes): what a checkpoint of that size must sign. A size beyond the
// ledger is a *ChainError naming the first missing sequence; a negative size
// asks for no root.
func VerifyLedgerAt(ctx context.Context, q Querier, ledgerID saasapi.ID, size int64) (count int64, root tlog.Hash, err error) {
	err = snapshot(ctx, q, func(q Querier) error {
		head, err := ReadHead(ctx, q, ledgerID)
		if errors.Is(err, ErrLedgerNotFound) {
			return orphans(ctx, q, ledgerID)
		}
		if err != nil {
			return err
		}
		c := newChain(head, newHashStream(q, ledgerID))
		if size >= 0 {
			c.tree.wantSize, c.tree.rootAt = size, &root
			if size == 0 {
				root, _ = Tree{}.Root()
			}
		}
		for {
			evs, err := ReadLedger(ctx, q, ledgerID, c.count, verifyBatch)
			if err != nil {
				return err
			}
			for _, e := range evs {
				if err := c.add(ctx, e); err != nil {
					return err
				}
			}
			if len(evs) < verifyBatch {
				break
			}
		}
		count = c.count
		if err := c.finish(ctx); err != nil {
			return err
		}
		if size > c.count {
			return c.fail(c.count+1, "event is missing (the checkpoint covers %d events, the ledger has %d)", size, c.count)
		}
		return nil
	})
	return count, root, err
}

// orphans tells a ledger that never existed (ErrLedgerNotFound) from one
// whose ledgers row was deleted while its events remain (a *ChainError).
func orphans(ctx context.Context, q Querier, ledgerID saasapi.ID) error {
	var first int64
	err := q.QueryRow(ctx, `SELECT sequence FROM events WHERE ledger_id = $1 ORDER BY sequence LIMIT 1`,
		ledgerID).Scan(&first)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrLedgerNotFound
	}
	if err != nil {
		return fmt.Errorf("verify ledger %s: %w", ledgerID, err)
	}
	return &ChainError{LedgerID: ledgerID, Sequence: first, Reason: errNoLedgerRow}
}

// errNoLedgerRow is the reason given for events whose ledger has no head.
const errNoLedgerRow = "events exist for a ledger that has no row in ledgers"

// VerifyAll verifies every ledger as VerifyLedger does, in ledger order, and
// calls onLedger (if not nil) after each intact ledger. It also finds events
// whose ledger has no row in ledgers. It returns how many ledgers and events
// it verified before the first problem.
//
// It reads the ledgers and the events in two ordered streams of batches
// (the events in primary key order) and merges them, so that a database of
// a million one-event user ledgers costs a few hundred round trips, not a
// million.
func VerifyAll(ctx context.Context, q Querier, onLedger func(ledgerID saasapi.ID, count int64)) (ledgers, events int64, err error) {
	err = snapshot(ctx, q, func(q Querier) error {
		heads := &headStream{q: q}
		evs := &eventStream{q: q}
		hashes := newHashStream(q, "")
		for {
			head, ok, err := heads.next(ctx)
			if err != nil {
				return err
			}
			e, more, err := evs.peek(ctx)
			if err != nil {
				return err
			}
			if more && (!ok || e.LedgerID < head.LedgerID) {
				return &ChainError{LedgerID: e.LedgerID, Sequence: e.Sequence, Reason: errNoLedgerRow}
			}
			if err := hashes.orphans(ctx, head, ok); err != nil {
				return err
			}
			if !ok {
				return nil
			}
			c := newChain(head, hashes)
			for more && e.LedgerID == head.LedgerID {
				if err := c.add(ctx, e); err != nil {
					return err
				}
				evs.advance()
				if e, more, err = evs.peek(ctx); err != nil {
					return err
				}
			}
			if err := c.finish(ctx); err != nil {
				return err
			}
			ledgers++
			events += c.count
			if onLedger != nil {
				onLedger(head.LedgerID, c.count)
			}
		}
	})
	return ledgers, events, err
}

// headStream reads every ledger's head in ledger_id order, in batches.
// ledger_id is COLLATE "C" in both tables, so the database orders it byte
// by byte, as Go compares strings.
type headStream struct {
	q    Querier
	buf  []Head
	done bool
	last saasapi.ID // the last ledger read from the database
}

func (s *headStream) next(ctx context.Context) (Head, bool, error) {
	if len(s.buf) == 0 && !s.done {
		rows, err := s.q.Query(ctx, `SELECT ledger_id, `+headColumns+`
			FROM ledgers WHERE ledger_id > $1 ORDER BY ledger_id LIMIT $2`, s.last, verifyBatch)
		if err != nil {
			return Head{}, false, fmt.Errorf("read ledger heads: %w", err)
		}
		s.buf, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Head, error) {
			var h Head
			err := scanHead(prefixRow{row, &h.LedgerID}, &h)
			return h, err
		})
		if err != nil {
			return Head{}, false, fmt.Errorf("read ledger heads: %w", err)
		}
		s.done = len(s.buf) < verifyBatch
		if n := len(s.buf); n > 0 {
			s.last = s.buf[n-1].LedgerID
		}
	}
	if len(s.buf) == 0 {
		return Head{}, false, nil
	}
	h := s.buf[0]
	s.buf = s.buf[1:]
	return h, true, nil
}

// eventStream reads every event in primary key order, (ledger_id,
// sequence), in batches.
type eventStream struct {
	q    Querier
	buf  []saasapi.Event
	done bool
	// The key of the last event read from the database.
	lastLedger saasapi.ID
	lastSeq    int64
}

// peek returns the next event without consuming it; false at the end.
func (s *eventStream) peek(ctx context.Context) (saasapi.Event, bool, error) {
	if len(s.buf) == 0 && !s.done {
		rows, err := s.q.Query(ctx, `SELECT `+eventColumns+` FROM events
			WHERE (ledger_id, sequence) > ($1, $2) ORDER BY ledger_id, sequence LIMIT $3`,
			s.lastLedger, s.lastSeq, verifyBatch)
		if err != nil {
			return saasapi.Event{}, false, fmt.Errorf("read events: %w", err)
		}
		if s.buf, err = pgx.CollectRows(rows, scanEvent); err != nil {
			return saasapi.Event{}, false, fmt.Errorf("read events: %w", err)
		}
		s.done = len(s.buf) < verifyBatch
		if n := len(s.buf); n > 0 {
			s.lastLedger, s.lastSeq = s.buf[n-1].LedgerID, s.buf[n-1].Sequence
		}
	}
	if len(s.buf) == 0 {
		return saasapi.Event{}, false, nil
	}
	return s.buf[0], true, nil
}

// advance consumes the event peek returned.
func (s *eventStream) advance() { s.buf = s.buf[1:] }

// prefixRow scans its first column into first and the rest as the caller
// asks, so that scanHead can read rows that lead with the ledger_id.
type prefixRow struct {
	row   pgx.Row
	first *saasapi.ID
}

func (r prefixRow) Scan(dest ...any) error { return r.row.Scan(append([]any{r.first}, dest...)...) }

// treeHashRow is one row of ledger_tree_hashes.
type treeHashRow struct {
	ledgerID saasapi.ID
	index    int64
	hash     []byte
}

// hashStream reads stored tree hashes in (ledger_id, hash_index) order, in
// batches: of one ledger when ledger is set, else of every ledger.
type hashStream struct {
	q      Querier
	ledger saasapi.ID
	buf    []treeHashRow
	done   bool
	last   treeHashRow // key of the last row read from the database
}

// newHashStream starts before the first row: of ledger, or of every ledger
// when ledger is empty.
func newHashStream(q Querier, ledger saasapi.ID) *hashStream {
	return &hashStream{q: q, ledger: ledger, last: treeHashRow{index: -1}}
}

func (s *hashStream) peek(ctx context.Context) (treeHashRow, bool, error) {
	if len(s.buf) == 0 && !s.done {
		var (
			rows pgx.Rows
			err  error
		)
		if s.ledger != "" {
			rows, err = s.q.Query(ctx, `SELECT ledger_id, hash_index, hash FROM ledger_tree_hashes
				WHERE ledger_id = $1 AND hash_index > $2 ORDER BY hash_index LIMIT $3`, s.ledger, s.last.index, verifyBatch)
		} else {
			rows, err = s.q.Query(ctx, `SELECT ledger_id, hash_index, hash FROM ledger_tree_hashes
				WHERE (ledger_id, hash_index) > ($1, $2) ORDER BY ledger_id, hash_index LIMIT $3`,
				s.last.ledgerID, s.last.index, verifyBatch)
		}
		if err != nil {
			return treeHashRow{}, false, fmt.Errorf("read tree hashes: %w", err)
		}
		s.buf, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (treeHashRow, error) {
			var r treeHashRow
			err := row.Scan(&r.ledgerID, &r.index, &r.hash)
			return r, err
		})
		if err != nil {
			return treeHashRow{}, false, fmt.Errorf("read tree hashes: %w", err)
		}
		s.done = len(s.buf) < verifyBatch
		if n := len(s.buf); n > 0 {
			s.last = s.buf[n-1]
		}
	}
	if len(s.buf) == 0 {
		return treeHashRow{}, false, nil
	}
	return s.buf[0], true, nil
}

func (s *hashStream) advance() { s.buf = s.buf[1:] }

// orphans fails on tree hashes of a ledger that has no row in ledgers: rows
// that sort before the next ledger (or any row, after the last ledger).
func (s *hashStream) orphans(ctx context.Context, next Head, ok bool) error {
	r, more, err := s.peek(ctx)
	if err != nil || !more || (ok && r.ledgerID >= next.LedgerID) {
		return err
	}
	return &ChainError{LedgerID: r.ledgerID, Sequence: 1, Reason: "tree hashes exist for a ledger that has no row in ledgers"}
}
