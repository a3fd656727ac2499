package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
)

// EventReader returns up to limit events with a position greater than
// after, in position order, read through tx. The caller supplies it
// (eventstore.ReadAll fits) because projections does not import the event
// store: the read tables depend on events, not on how they are stored.
type EventReader func(ctx context.Context, tx pgx.Tx, after int64, limit int) ([]saasapi.Event, error)

// replayBatch is how many events a replay reads and applies per round trip
// each. Replaying a million events one statement per round trip would take
// minutes; a batch amortises the latency, and 5,000 events stay a few
// megabytes in memory.
const replayBatch = 5000

// Progress is told, after every batch of a replay, how many events are
// done out of how many the replay's snapshot holds.
type Progress func(done, total int64)

// Rebuild empties the read tables (Tables) and replays every event into
// them, by position, through Apply: the same code that commands run inline.
// It runs in one transaction, so readers see the old tables until the new
// ones commit, and a failure leaves the old ones as they were.
//
// Writers must wait rather than interleave: an event committed during the
// replay but after the reader passed its position would be lost. So Rebuild
// first takes LOCK TABLE ledgers IN EXCLUSIVE MODE. Every writer of events
// locks its ledger's row (SELECT ... FOR UPDATE, which takes ROW SHARE on
// the table) or inserts a new ledger (ROW EXCLUSIVE); EXCLUSIVE conflicts
// with both, so writers queue until the rebuild commits, while plain reads
// of ledgers (ACCESS SHARE, the audit head) go on. Writers already inside
// their transaction finish first: the lock waits for them.
//
// The tables are emptied with DELETE, not TRUNCATE: TRUNCATE would take
// ACCESS EXCLUSIVE and block every API read for the whole rebuild, and the
// application role may not TRUNCATE. The deleted row versions are left to
// autovacuum. logf, if not nil, receives progress and the throughput.
//
// A read model that updates the same row once per event (a counter) is
// slow to rebuild: PostgreSQL cannot prune the row versions that one
// transaction leaves behind before it commits, so each update of the row
// walks every earlier one, and the replay grows quadratically.
//
// progress, if given, is told after every batch how far the replay is.
func Rebuild(ctx context.Context, pool *pgxpool.Pool, next EventReader, logf func(string, ...any), progress ...Progress) (events int64, err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	start := time.Now()
	tx, err := pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("rebuild: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `LOCK TABLE ledgers IN EXCLUSIVE MODE`); err != nil {
		return 0, fmt.Errorf("rebuild: lock ledgers: %w", err)
	}
	locked := time.Now()
	for _, table := range Tables {
		if _, err := tx.Exec(ctx, `DELETE FROM `+pgx.Identifier{table}.Sanitize()); err != nil {
			return 0, fmt.Errorf("rebuild: empty %s: %w", table, err)
		}
	}
	replayStart := time.Now()
	events, err = replay(ctx, tx, next, progress)
	if err != nil {
		return 0, fmt.Errorf("rebuild: %w", err)
	}
	replayed := time.Since(replayStart)
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("rebuild: commit: %w", err)
	}
	logf("rebuild: replayed %d events into %s in %s (%.0f events/s); writers waited %s",
		events, strings.Join(Tables, ", "), replayed.Round(time.Millisecond), rate(events, replayed),
		time.Since(locked).Round(time.Millisecond))
	logf("rebuild: total %s including the wait for the ledger lock", time.Since(start).Round(time.Millisecond))
	return events, nil
}

// LedgerReader returns up to limit events of one ledger with a sequence
// greater than after, in sequence order, read through tx
// (eventstore.ReadLedger fits).
type LedgerReader func(ctx context.Context, tx pgx.Tx, ledgerID saasapi.ID, after int64, limit int) ([]saasapi.Event, error)

// ErrNoOrganisation is RebuildOrg's answer for an ID that names no
// organisation ledger.
var ErrNoOrganisation = errors.New("no organisation ledger has this ID")

// RebuildOrg rebuilds the rows of one organisation: it empties that
// organisation's rows of the tables in orgColumns and replays its ledger
// into them through the same handlers as Rebuild, then recomputes its
// aggregate rows. Other organisations' rows and the tables of no
// organisation (GlobalTables) are left as they are; every organisation
// event belongs to the organisation's own ledger, so no other ledger can
// write its rows.
//
// It runs in one transaction holding the organisation's ledger row (FOR
// UPDATE, as a writer of it would): only that organisation's writers wait,
// everyone else goes on.
func RebuildOrg(ctx context.Context, pool *pgxpool.Pool, org saasapi.ID, next LedgerReader, logf func(string, ...any)) (events int64, err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("rebuild %s: begin: %w", org, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var ledgerType string
	err = tx.QueryRow(ctx, `SELECT ledger_type FROM ledgers WHERE ledger_id = $1 FOR UPDATE`, org).Scan(&ledgerType)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && ledgerType != saasapi.LedgerOrganisation) {
		return 0, fmt.Errorf("rebuild %s: %w", org, ErrNoOrganisation)
	}
	if err != nil {
		return 0, fmt.Errorf("rebuild %s: lock its ledger: %w", org, err)
	}
	locked := time.Now()
	for _, table := range Tables {
		col, ok := orgColumns[table]
		if !ok {
			continue
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+pgx.Identifier{table}.Sanitize()+` WHERE `+pgx.Identifier{col}.Sanitize()+` = $1`, org); err != nil {
			return 0, fmt.Errorf("rebuild %s: empty its %s: %w", org, table, err)
		}
	}
	var after int64
	for {
		evs, err := next(ctx, tx, org, after, replayBatch)
		if err != nil {
			return events, fmt.Errorf("rebuild %s: read events after sequence %d: %w", org, after, err)
		}
		if len(evs) > 0 {
			b := &pgx.Batch{}
			for _, e := range evs {
				if err := apply(b, e, false); err != nil {
					return events, fmt.Errorf("rebuild %s: event %s at sequence %d: %w", org, e.ID, e.Sequence, err)
				}
			}
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return events, fmt.Errorf("rebuild %s: apply events at sequences %d to %d: %w", org, evs[0].Sequence, evs[len(evs)-1].Sequence, err)
			}
			events += int64(len(evs))
			after = evs[len(evs)-1].Sequence
		}
		if len(evs) < replayBatch {
			break
		}
	}
	if err := recomputeOrgAggregates(ctx, tx, org); err != nil {
		return events, fmt.Errorf("rebuild %s: %w", org, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return events, fmt.Errorf("rebuild %s: commit: %w", org, err)
	}
	logf("rebuild: replayed %d events of organisation %s; its writers waited %s", events, org, time.Since(locked).Round(time.Millisecond))
	return events, nil
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// replay applies every event that next returns, in batches: one round trip
// reads a batch, one more applies it. Each of progress is told the number
// of events in tx's snapshot first and then, after every batch, how many
// are done.
func replay(ctx context.Context, tx pgx.Tx, next EventReader, progress []Progress) (int64, error) {
	var n, after, total int64
	if len(progress) > 0 {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&total); err != nil {
			return 0, fmt.Errorf("count events: %w", err)
		}
		for _, p := range progress {
			p(0, total)
		}
	}
	for {
		evs, err := next(ctx, tx, after, replayBatch)
		if err != nil {
			return n, fmt.Errorf("read events after position %d: %w", after, err)
		}
		if len(evs) == 0 {
			return n, recomputeAggregates(ctx, tx)
		}
		b := &pgx.Batch{}
		for _, e := range evs {
			if err := apply(b, e, false); err != nil {
				return n, fmt.Errorf("event %s at position %d: %w", e.ID, e.Position, err)
			}
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return n, fmt.Errorf("apply events at positions %d to %d: %w", evs[0].Position, evs[len(evs)-1].Position, err)
		}
		n += int64(len(evs))
		for _, p := range progress {
			p(n, total)
		}
		after = evs[len(evs)-1].Position
		if len(evs) < replayBatch {
			return n, recomputeAggregates(ctx, tx)
		}
	}
}

// Diff is a row on which a read table and a replay of the events disagree.
type Diff struct {
	Table string
	// Key is the row's primary key, as "column=value, ...".
	Key string
	// Live and Rebuilt are the row as text in the live table and in the
	// replay, or "missing".
	Live, Rebuilt string
}

func (d Diff) String() string {
	return fmt.Sprintf("%s (%s): live %s, rebuilt %s", d.Table, d.Key, d.Live, d.Rebuilt)
}

// MaxDiffsPerTable bounds how many differing rows Verify reports per table:
// the first ones in key order, enough to see what went wrong.
const MaxDiffsPerTable = 10

// Verify proves that the read tables equal a replay of the events, and
// changes nothing. It returns how many events it replayed and the rows that
// differ (at most MaxDiffsPerTable per table); no diffs means the tables are
// exactly what the events say.
//
// It does not rebuild in place. On a connection of its own it creates
// temporary tables named like the read tables (LIKE ... INCLUDING ALL: same
// columns, constraints and unique indexes), which shadow them, because
// PostgreSQL looks up unqualified names in the session's temporary schema
// first. Then, in one read-only REPEATABLE READ transaction, it replays the
// events through Apply (whose statements name the tables unqualified, so
// they write the temporary copies) and compares the copies with the live
// tables, qualified by schema. The events and the live tables are read from
// the same snapshot, and commands commit events and read rows together, so
// no lock is needed: writers go on meanwhile, and the read-only transaction
// guarantees that nothing outside the temporary tables can change, whatever
// a projection does. Closing the connection drops the copies. The session's
// temp_buffers are sized to the live tables (64 MB to 4 GB), so that the
// copies stay in memory.
//
// progress, if given, is told after every batch how far the replay is.
func Verify(ctx context.Context, pool *pgxpool.Pool, next EventReader, progress ...Progress) (events int64, diffs []Diff, err error) {
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		return 0, nil, fmt.Errorf("verify: connect: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()

	// Temporary tables live in the session's own buffers, 8 MB by default:
	// a replay of a large stream would then go to disk page by page. Give
	// the copies room for twice the live tables (they also keep their dead
	// row versions until the end), within bounds; it must be set before the
	// session first touches a temporary table.
	if _, err := conn.Exec(ctx, `SELECT set_config('temp_buffers',
		least(greatest(2 * (SELECT sum(pg_total_relation_size(to_regclass(t))) FROM unnest($1::text[]) AS t),
			64 * 1024 * 1024), 4::bigint * 1024 * 1024 * 1024)::bigint / 8192 || '', false)`, Tables); err != nil {
		return 0, nil, fmt.Errorf("verify: size temporary buffers: %w", err)
	}

	tables := make([]liveTable, 0, len(Tables))
	for _, name := range Tables {
		lt, err := shadow(ctx, conn, name)
		if err != nil {
			return 0, nil, fmt.Errorf("verify: %w", err)
		}
		tables = append(tables, lt)
	}

	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, nil, fmt.Errorf("verify: begin: %w", err)
	}
	// Read-only: there is nothing to commit, ever.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if events, err = replay(ctx, tx, next, progress); err != nil {
		return 0, nil, fmt.Errorf("verify: replay: %w", err)
	}
	for _, lt := range tables {
		d, err := lt.compare(ctx, tx)
		if err != nil {
			return 0, nil, fmt.Errorf("verify: compare %s: %w", lt.name, err)
		}
		diffs = append(diffs, d...)
	}
	return events, diffs, nil
}

// liveTable is a read table to compare: its schema-qualified name, which
// still reaches it once a temporary table shadows the plain name, and the
// columns of its primary key.
type liveTable struct {
	name      string
	qualified string
	key       []string
}

// shadow resolves the live table behind name and then creates the
// temporary copy that shadows it.
func shadow(ctx context.Context, conn *pgx.Conn, name string) (liveTable, error) {
	lt := liveTable{name: name}
	err := conn.QueryRow(ctx, `SELECT format('%I.%I', n.nspname, c.relname),
			ARRAY(SELECT a.attname::text
				FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
				JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
				WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.ord)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = to_regclass($1)`, name).Scan(&lt.qualified, &lt.key)
	if errors.Is(err, pgx.ErrNoRows) {
		return lt, fmt.Errorf("read table %s does not exist", name)
	}
	if err != nil {
		return lt, fmt.Errorf("look up %s: %w", name, err)
	}
	if len(lt.key) == 0 {
		return lt, fmt.Errorf("read table %s has no primary key to compare rows by", name)
	}
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE `+ident+` (LIKE `+lt.qualified+` INCLUDING ALL)`); err != nil {
		return lt, fmt.Errorf("copy %s: %w", name, err)
	}
	var shadowed bool
	if err := conn.QueryRow(ctx, `SELECT c.relnamespace = pg_my_temp_schema() FROM pg_class c WHERE c.oid = to_regclass($1)`,
		name).Scan(&shadowed); err != nil {
		return lt, fmt.Errorf("check the copy of %s: %w", name, err)
	}
	if !shadowed {
		// A search_path that lists pg_temp after the tables' schema: the
		// replay would aim at the live tables (and fail, read-only).
		return lt, fmt.Errorf("the temporary copy of %s does not shadow it (check search_path)", name)
	}
	return lt, nil
}

// compare returns the rows, by primary key, that differ between the live
// table and its replayed copy, compared as the text of the whole row.
func (lt liveTable) compare(ctx context.Context, tx pgx.Tx) ([]Diff, error) {
	parts := make([]string, len(lt.key))
	for i, col := range lt.key {
		parts[i] = fmt.Sprintf("format('%s=%%s', t.%s)", strings.ReplaceAll(col, "'", "''"), pgx.Identifier{col}.Sanitize())
	}
	key := "concat_ws(', ', " + strings.Join(parts, ", ") + ")"
	rebuilt := "pg_temp." + pgx.Identifier{lt.name}.Sanitize()
	rows, err := tx.Query(ctx, `SELECT coalesce(l.k, r.k), coalesce(l.row, 'missing'), coalesce(r.row, 'missing')
		FROM (SELECT `+key+` AS k, t::text AS row FROM `+lt.qualified+` t) l
		FULL JOIN (SELECT `+key+` AS k, t::text AS row FROM `+rebuilt+` t) r ON l.k = r.k
		WHERE l.row IS DISTINCT FROM r.row
		ORDER BY 1 LIMIT $1`, MaxDiffsPerTable)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Diff, error) {
		d := Diff{Table: lt.name}
		err := row.Scan(&d.Key, &d.Live, &d.Rebuilt)
		return d, err
	})
}
