package projections

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
)

// The bulk path of a replay. Every read row belongs to exactly one stream
// (a project's row to the project's stream, a membership's to the
// membership's, a user's to the user's; the handlers key every statement
// by the event's stream), so reading the events stream by stream, each
// stream's events in version order, a row's final state is known when its
// stream ends: the fold below computes it in memory, event by event, and
// the rows are written with COPY, never updated. The aggregates are
// recomputed from the result afterwards, as in every replay.
//
// The folds are the handlers' statements restated on a row in memory,
// and sit next to them in each read model's file. TestBulkEqualsInline and
// the random command sequences of the property test prove the two equal,
// and `projections verify` compares the live tables (written inline) with
// a bulk replay on every run.

// StreamReader returns up to limit events that follow after in stream
// order (stream ID, stream type, stream version), read through tx; the
// zero Event starts at the beginning. eventstore.ReadStreams fits.
type StreamReader func(ctx context.Context, tx pgx.Tx, after saasapi.Event, limit int) ([]saasapi.Event, error)

// Source is how a replay reads the events: stream by stream for the bulk,
// by position for catching up with what was written since.
type Source struct {
	Positions EventReader
	Streams   StreamReader
	// Batch is how many events the bulk path reads per round trip;
	// 0 means bulkBatch.
	Batch int
}

// row is a read row as the bulk path folds it.
type row interface {
	// table is the read table the row belongs in.
	table() string
	// values are its columns in the order of copyColumns[table()].
	values() []any
}

// folder returns the row that event e (with its decoded payload) leaves
// cur in: nil where the handler's statement would leave no row (an update
// of a row that does not exist changes nothing; a deletion removes it).
type folder func(cur row, e saasapi.Event, payload any) (row, error)

// folds maps every event type to its fold; copyColumns names the columns
// each table's rows carry, in the order of row.values.
var (
	folds       = map[string]folder{}
	copyColumns = map[string][]string{}
)

func registerFold(eventType string, f folder) {
	if _, dup := folds[eventType]; dup {
		panic("projections: two folds for " + eventType)
	}
	folds[eventType] = f
}

// errCreatedTwice is the fold's counterpart of the primary-key violation
// that a second insert of a row would raise.
func errCreatedTwice(e saasapi.Event) error {
	return fmt.Errorf("%s of %s %s: its row already exists", e.Type, e.StreamType, e.StreamID)
}

// bulkBatch is how many events the bulk path reads per round trip by
// default.
// Memory stays flat: one batch and the rows it folded are all it holds.
const bulkBatch = 10_000

// streamOf is the key events are grouped by.
type streamOf struct{ typ, id saasapi.ID }

// folded is one batch of the bulk path: the rows of the streams that
// ended in it, per table, and how many events it held.
type folded struct {
	rows   map[string][][]any
	events int
}

// bulkLoad replays every event of tx's snapshot through the folds into
// the (empty) tables that the unqualified names reach on tx, and returns
// how many it read. Each of progress is told the total first and then,
// after every batch, how many are done.
//
// Reading and folding overlap with writing: the events are read on a
// second connection of pool, in a read-only transaction that imports tx's
// snapshot (pg_export_snapshot), while tx copies the rows of the batch
// before. At most one folded batch waits, so memory stays flat.
func bulkLoad(ctx context.Context, pool *pgxpool.Pool, tx pgx.Tx, src Source, progress []Progress) (int64, error) {
	var snapshot string
	if err := tx.QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&snapshot); err != nil {
		return 0, fmt.Errorf("export the snapshot: %w", err)
	}
	read, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, err
	}
	defer func() { _ = read.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := read.Exec(ctx, `SET TRANSACTION SNAPSHOT `+quoteLiteral(snapshot)); err != nil {
		return 0, fmt.Errorf("import the snapshot: %w", err)
	}
	var total int64
	if len(progress) > 0 {
		if err := read.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&total); err != nil {
			return 0, fmt.Errorf("count events: %w", err)
		}
		for _, p := range progress {
			p(0, total)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan folded)
	var readErr error
	go func() {
		defer close(batches)
		readErr = foldStreams(ctx, read, src, batches)
	}()
	var n int64
	var writeErr error
	for b := range batches {
		if writeErr != nil {
			continue // drain, so that the reader ends
		}
		for _, table := range Tables {
			if rows := b.rows[table]; len(rows) > 0 {
				if _, err := tx.CopyFrom(ctx, pgx.Identifier{table}, copyColumns[table], pgx.CopyFromRows(rows)); err != nil {
					writeErr = fmt.Errorf("apply events: copy rows into %s: %w", table, err)
					cancel()
					break
				}
			}
		}
		n += int64(b.events)
		for _, p := range progress {
			p(n, total)
		}
	}
	if writeErr != nil {
		return n, writeErr
	}
	return n, readErr
}

// foldStreams reads every event of read's snapshot stream by stream, in
// batches, folds the rows and sends each batch's finished rows to out.
// The stream in progress at the end of a batch stays in memory: its next
// events are in the next batch.
func foldStreams(ctx context.Context, read pgx.Tx, src Source, out chan<- folded) error {
	batch := src.Batch
	if batch <= 0 {
		batch = bulkBatch
	}
	var (
		cur    row
		stream streamOf
		after  saasapi.Event
	)
	for {
		evs, err := src.Streams(ctx, read, after, batch)
		if err != nil {
			return fmt.Errorf("read events after %s %s version %d: %w", after.StreamType, after.StreamID, after.StreamVersion, err)
		}
		b := folded{rows: map[string][][]any{}, events: len(evs)}
		flush := func() {
			if cur != nil {
				b.rows[cur.table()] = append(b.rows[cur.table()], cur.values())
			}
			cur = nil
		}
		for _, e := range evs {
			if s := (streamOf{saasapi.ID(e.StreamType), e.StreamID}); s != stream {
				flush()
				stream = s
			}
			f, ok := folds[e.Type]
			if !ok {
				return fmt.Errorf("projections: no fold for event type %q", e.Type)
			}
			payload, err := saasapi.DecodePayload(e)
			if err != nil {
				return err
			}
			if cur, err = f(cur, e, payload); err != nil {
				return fmt.Errorf("apply events: event %s at position %d: %w", e.ID, e.Position, err)
			}
		}
		last := len(evs) < batch
		if last {
			flush()
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return ctx.Err()
		}
		if last {
			return nil
		}
		after = evs[len(evs)-1]
	}
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// idPtr is a nullable ID column's value.
func idPtr(id saasapi.ID) *string {
	if id == "" {
		return nil
	}
	s := string(id)
	return &s
}

// timePtr is a nullable timestamp column's value.
func timePtr(t time.Time) *time.Time { return &t }
