// Package eventstore owns the events and ledgers tables: appending events
// inside a ledger's critical section (gapless sequence, hash chain, stream
// version guard), reading them back, and verifying the chain.
package eventstore

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/saasapi/saasapi"
)

// Querier is what the store needs from a connection, pool or transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// HashSize is the length of every hash in the chain (SHA-256).
const HashSize = sha256.Size

// ZeroHash is the prev_hash of the first event of every ledger.
var ZeroHash = make([]byte, HashSize)

// ErrLedgerNotFound is returned by LockLedger when no such ledger exists.
var ErrLedgerNotFound = errors.New("ledger not found")

// Head is a ledger's position: the sequence and hash of its last event.
type Head struct {
	LedgerID   saasapi.ID
	LedgerType string
	Sequence   int64
	Hash       []byte
	UpdatedAt  time.Time
	// Tree is the ledger's Merkle tree as its row keeps it (tree.go).
	Tree Tree
}

// headColumns is the select list of the ledgers row that scanHead reads.
const headColumns = `ledger_type, last_sequence, last_hash, updated_at, tree_size, tree_frontier`

// scanHead reads headColumns into h.
func scanHead(row pgx.Row, h *Head) error {
	var (
		size     int64
		frontier []byte
	)
	if err := row.Scan(&h.LedgerType, &h.Sequence, &h.Hash, &h.UpdatedAt, &size, &frontier); err != nil {
		return err
	}
	t, err := decodeTree(size, frontier)
	h.Tree = t
	return err
}

const lockSQL = `SELECT ` + headColumns + ` FROM ledgers WHERE ledger_id = $1 FOR UPDATE`

// LockLedger locks the ledger's row for the rest of the transaction and
// returns its head. Every writer of the ledger takes this lock first, so
// events of one ledger commit in sequence order and the chain never forks.
func LockLedger(ctx context.Context, tx pgx.Tx, ledgerID saasapi.ID) (Head, error) {
	h := Head{LedgerID: ledgerID}
	err := scanHead(tx.QueryRow(ctx, lockSQL, ledgerID), &h)
	if errors.Is(err, pgx.ErrNoRows) {
		return Head{}, ErrLedgerNotFound
	}
	if err != nil {
		return Head{}, fmt.Errorf("lock ledger %s: %w", ledgerID, err)
	}
	return h, nil
}

// QueueLock queues what LockLedger does on b, for a writer that sends its
// lock with other statements: once b ran, head holds the ledger's head
// and found whether the ledger exists. The ledger row holds everything an
// append needs, so the lock is all an append reads.
func QueueLock(b *pgx.Batch, ledgerID saasapi.ID, head *Head, found *bool) {
	b.Queue(lockSQL, ledgerID).QueryRow(func(row pgx.Row) error {
		h := Head{LedgerID: ledgerID}
		err := scanHead(row, &h)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("lock ledger %s: %w", ledgerID, err)
		}
		*head, *found = h, true
		return nil
	})
}

// QueueLocks queues what QueueLock does for several ledgers, in one
// statement that locks them in the order of their IDs: two writers that
// lock overlapping sets this way never wait for each other in a cycle.
// Once b ran, heads holds the head of every ledger that exists (the others
// are absent).
func QueueLocks(b *pgx.Batch, ledgerIDs []saasapi.ID, heads map[saasapi.ID]*Head) {
	ids := make([]string, len(ledgerIDs))
	for i, id := range ledgerIDs {
		ids[i] = string(id)
	}
	slices.Sort(ids)
	b.Queue(`SELECT ledger_id, `+headColumns+` FROM ledgers WHERE ledger_id = ANY($1::text[])
		ORDER BY ledger_id FOR UPDATE`, ids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id string
			var h Head
			var size int64
			var frontier []byte
			if err := rows.Scan(&id, &h.LedgerType, &h.Sequence, &h.Hash, &h.UpdatedAt, &size, &frontier); err != nil {
				return fmt.Errorf("lock ledgers: %w", err)
			}
			t, err := decodeTree(size, frontier)
			if err != nil {
				return fmt.Errorf("lock ledger %s: %w", id, err)
			}
			h.LedgerID, h.Tree = saasapi.ID(id), t
			heads[h.LedgerID] = &h
		}
		return rows.Err()
	})
}

// NewLedger returns the head of a ledger that does not exist yet and queues
// its creation on b. The row is inserted in the caller's transaction, which
// therefore holds it locked until commit.
func NewLedger(b *pgx.Batch, ledgerID saasapi.ID, ledgerType string) Head {
	b.Queue(`INSERT INTO ledgers (ledger_id, ledger_type) VALUES ($1, $2)`, ledgerID, ledgerType)
	return Head{LedgerID: ledgerID, LedgerType: ledgerType, Hash: ZeroHash}
}

// Append gives the events the next sequences of the ledger whose head is
// given, chains their hashes, adds them to the ledger's Merkle tree, and
// queues on b every row an append writes: the events, their tree hashes and
// the new head. The caller sends b with its other writes in one round trip,
// so rows that an append adds go out with them.
// The caller must hold the ledger lock (LockLedger or NewLedger in the same
// transaction) and send b before commit. head is advanced in place. A
// stream_version that is already taken makes the batch fail with a unique
// violation on events_stream_key: the
// optimistic concurrency guard.
func Append(b *pgx.Batch, head *Head, evs []saasapi.NewEvent) ([]saasapi.Event, error) {
	a := NewAppender(b, head)
	out, err := a.Add(evs)
	if err != nil {
		return nil, err
	}
	a.Close()
	return out, nil
}

// An Appender is Append for several decisions in one transaction (a group
// of commands on one ledger): each Add appends one decision's events at
// the head the previous one left, queuing the events at once, and Close
// queues the rows the whole append shares, the tree hashes and the new
// head, once.
type Appender struct {
	b    *pgx.Batch
	head *Head
	tree treeRows
	// deferred, when set, holds the events instead of queuing one INSERT
	// each: CloseAll inserts those of every Appender in one statement.
	deferred bool
	events   []saasapi.Event
}

// NewAppender returns an Appender that queues on b and advances head in
// place; the caller must hold the ledger lock, as for Append.
func NewAppender(b *pgx.Batch, head *Head) *Appender {
	return &Appender{b: b, head: head, tree: treeRows{first: -1}}
}

// NewDeferredAppender is NewAppender for a group: its events are inserted
// by CloseAll, with those of the group's other Appenders, in one statement
// after everything queued meanwhile (nothing a command queues reads the
// events table back).
func NewDeferredAppender(b *pgx.Batch, head *Head) *Appender {
	a := NewAppender(b, head)
	a.deferred = true
	return a
}

// insertEventSQL inserts one event; insertEventsSQL several, from one
// array per column.
const (
	insertEventSQL = `INSERT INTO events (event_id, ledger_id, ledger_type, sequence, stream_type, stream_id,
				stream_version, event_type, schema_version, actor_type, actor_user_id, actor_api_key_id,
				request_id, occurred_at, payload, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`
	insertEventsSQL = `INSERT INTO events (event_id, ledger_id, ledger_type, sequence, stream_type, stream_id,
				stream_version, event_type, schema_version, actor_type, actor_user_id, actor_api_key_id,
				request_id, occurred_at, payload, prev_hash, hash)
			SELECT id, ledger, ledger_type, seq, stream_type, stream, version, type, schema, actor_type, actor_user,
				actor_key, request, at, payload::json, prev, hash
			FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bigint[],
				$8::text[], $9::int[], $10::text[], $11::text[], $12::text[], $13::text[], $14::timestamptz[],
				$15::text[], $16::bytea[], $17::bytea[])
				AS e(id, ledger, ledger_type, seq, stream_type, stream, version, type, schema, actor_type,
					actor_user, actor_key, request, at, payload, prev, hash)`
)

// queueEvents queues the INSERT of evs, in their order (which is the
// order of their positions): one statement for them all.
func queueEvents(b *pgx.Batch, evs []saasapi.Event) {
	if len(evs) == 0 {
		return
	}
	n := len(evs)
	var (
		ids, ledgers, ledgerTypes, streamTypes, streams, types, actorTypes = make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		seqs, versions        = make([]int64, n), make([]int64, n)
		schemas               = make([]int32, n)
		actorUsers, actorKeys = make([]*saasapi.ID, n), make([]*saasapi.ID, n)
		rq                    = make([]*string, n)
		ats                   = make([]time.Time, n)
		payloads              = make([]string, n)
		prevs, hashes         = make([][]byte, n), make([][]byte, n)
	)
	for i, e := range evs {
		ids[i], ledgers[i], ledgerTypes[i], streamTypes[i] = string(e.ID), string(e.LedgerID), e.LedgerType, e.StreamType
		streams[i], types[i], actorTypes[i] = string(e.StreamID), e.Type, string(e.Actor.Type)
		seqs[i], versions[i], schemas[i] = e.Sequence, e.StreamVersion, int32(e.SchemaVersion)
		actorUsers[i], actorKeys[i], rq[i] = e.Actor.UserID.Ptr(), e.Actor.APIKeyID.Ptr(), nullString(e.RequestID)
		ats[i], payloads[i], prevs[i], hashes[i] = e.OccurredAt, string(e.Payload), e.PrevHash, e.Hash
	}
	b.Queue(insertEventsSQL, ids, ledgers, ledgerTypes, seqs, streamTypes, streams, versions, types, schemas,
		actorTypes, actorUsers, actorKeys, rq, ats, payloads, prevs, hashes)
}

// Add gives evs the next sequences, chains and queues them, and returns
// them as recorded. After an error the Appender must not be closed: the
// caller abandons its batch.
func (a *Appender) Add(evs []saasapi.NewEvent) ([]saasapi.Event, error) {
	head := a.head
	out := make([]saasapi.Event, 0, len(evs))
	for _, ne := range evs {
		if ne.LedgerID != head.LedgerID {
			return nil, fmt.Errorf("append %s: event for ledger %s appended to %s", ne.Type, ne.LedgerID, head.LedgerID)
		}
		payload, err := json.Marshal(ne.Data)
		if err != nil {
			return nil, fmt.Errorf("encode %s payload: %w", ne.Type, err)
		}
		id := ne.ID
		if id == "" {
			id = saasapi.NewID()
		}
		e := saasapi.Event{
			ID:            id,
			LedgerID:      head.LedgerID,
			LedgerType:    head.LedgerType,
			Sequence:      head.Sequence + 1,
			StreamType:    ne.StreamType,
			StreamID:      ne.StreamID,
			StreamVersion: ne.StreamVersion,
			Type:          ne.Type,
			SchemaVersion: 1,
			Actor:         ne.Actor,
			RequestID:     ne.RequestID,
			OccurredAt:    ne.OccurredAt.UTC().Truncate(time.Microsecond),
			Payload:       payload,
			PrevHash:      head.Hash,
		}
		e.Hash = Hash(e.PrevHash, Canonical(e))
		if a.deferred {
			a.events = append(a.events, e)
		} else {
			a.b.Queue(insertEventSQL, e.ID, e.LedgerID, e.LedgerType, e.Sequence, e.StreamType, e.StreamID,
				e.StreamVersion, e.Type, e.SchemaVersion, string(e.Actor.Type), e.Actor.UserID.Ptr(), e.Actor.APIKeyID.Ptr(),
				nullString(e.RequestID), e.OccurredAt, string(e.Payload), e.PrevHash, e.Hash)
		}
		if err := a.tree.add(&head.Tree, e.Hash); err != nil {
			return nil, fmt.Errorf("append %s to the tree of ledger %s: %w", ne.Type, head.LedgerID, err)
		}
		head.Sequence = e.Sequence
		head.Hash = e.Hash
		head.UpdatedAt = e.OccurredAt
		out = append(out, e)
	}
	return out, nil
}

// Close queues the tree hashes and the new head of everything added;
// nothing when nothing was.
func (a *Appender) Close() { CloseAll(a.b, []*Appender{a}) }

// CloseAll queues, for every Appender of aps (each on its own ledger, all
// on b), three statements for them all: the events of the deferred ones,
// the tree hashes (a ledger's sit at consecutive stored-hash indexes), and
// the new heads. The head update names the ledgers with = ANY as well, so
// that it finds their rows by the primary key however the planner
// estimates the unnest.
func CloseAll(b *pgx.Batch, aps []*Appender) {
	var (
		treeLedgers, ledgers []string
		indexes, sequences   []int64
		sizes                []int64
		hashes, lastHashes   [][]byte
		frontiers            [][]byte
		updated              []time.Time
	)
	var deferred []saasapi.Event
	for _, a := range aps {
		if a.tree.first < 0 {
			continue
		}
		deferred = append(deferred, a.events...)
		a.events = nil
		h := a.head
		for i, th := range a.tree.hashes {
			treeLedgers = append(treeLedgers, string(h.LedgerID))
			indexes = append(indexes, a.tree.first+int64(i))
			hashes = append(hashes, th[:])
		}
		ledgers = append(ledgers, string(h.LedgerID))
		sequences = append(sequences, h.Sequence)
		lastHashes = append(lastHashes, h.Hash)
		updated = append(updated, h.UpdatedAt)
		sizes = append(sizes, h.Tree.Size)
		frontiers = append(frontiers, encodeFrontier(h.Tree.Frontier))
	}
	if len(ledgers) == 0 {
		return
	}
	queueEvents(b, deferred)
	b.Queue(`INSERT INTO ledger_tree_hashes (ledger_id, hash_index, hash)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[])`, treeLedgers, indexes, hashes)
	b.Queue(`UPDATE ledgers l SET last_sequence = v.seq, last_hash = v.hash, updated_at = v.at,
			tree_size = v.size, tree_frontier = v.frontier
		FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::timestamptz[], $5::bigint[], $6::bytea[])
			AS v(id, seq, hash, at, size, frontier)
		WHERE l.ledger_id = v.id AND l.ledger_id = ANY($1::text[])`, ledgers, sequences, lastHashes, updated, sizes, frontiers)
}

// Canonical returns the bytes of an event that its hash covers: the fields
// below, in this order, as UTF-8 text joined by a single line feed, with
// NULLs as empty strings, the timestamp in UTC with microseconds, and the
// payload exactly as stored. docs/audit.md defines the same bytes for
// re-computation with psql and sha256sum.
func Canonical(e saasapi.Event) []byte {
	fields := []string{
		"saasapi-event-v1",
		string(e.ID),
		e.LedgerType,
		string(e.LedgerID),
		strconv.FormatInt(e.Sequence, 10),
		e.StreamType,
		string(e.StreamID),
		strconv.FormatInt(e.StreamVersion, 10),
		e.Type,
		strconv.Itoa(e.SchemaVersion),
		string(e.Actor.Type),
		string(e.Actor.UserID),
		string(e.Actor.APIKeyID),
		e.RequestID,
		FormatTime(e.OccurredAt),
	}
	n := len(e.Payload)
	for _, f := range fields {
		n += len(f) + 1
	}
	buf := make([]byte, 0, n)
	for _, f := range fields {
		buf = append(buf, f...)
		buf = append(buf, '\n')
	}
	return append(buf, e.Payload...)
}

// Hash chains one event: SHA-256 over the previous hash followed by the
// event's canonical bytes.
func Hash(prev, canonical []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(canonical)
	return h.Sum(nil)
}

// FormatTime renders a timestamp as the canonical form does: UTC, six
// fractional digits, Z suffix.
func FormatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000Z")
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
