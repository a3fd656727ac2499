package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// The schemas of a rebuild: it builds the new read tables in shadowSchema
// and moves the replaced ones to retiredSchema before dropping them.
const (
	shadowSchema  = "projections_rebuild"
	retiredSchema = "projections_retired"
)

// rebuildLock is the advisory lock that keeps two rebuilds apart.
const rebuildLock = 7_301_013

// catchUpRounds bounds the rounds of catching up outside the ledger lock;
// catchUpEnough is a remainder small enough to replay under it: a round
// replays what was written during the one before, so the rounds shrink
// towards the rate of writes, and the locked step replays about one
// round trip's worth of events.
const (
	catchUpRounds = 10
	catchUpEnough = 500
)

// swapTimeout bounds the wait for the read tables' locks in the final
// step, and swapTries how often it is tried: see Rebuild.
const (
	swapTimeout = "200ms"
	swapTries   = 10
)

// Rebuild replaces the read tables (Tables) with a replay of every event
// while the service goes on reading and writing the live tables.
//
// On a connection of its own, whose search_path puts shadowSchema first so
// that unqualified names reach the new tables, it creates empty copies of
// the read tables there without any index, and loads them from one
// snapshot through the bulk path (bulkLoad: events read stream by stream
// in keyset batches, each row folded in memory and written once with
// COPY); the aggregates are recomputed from the result and the same
// snapshot with one statement each. Once that is committed the indexes,
// the primary keys first, are built two at a time (buildIndexes), rather
// than maintained row by row, and the copies are analysed: all before any
// lock is taken.
//
// The snapshot is taken while a second connection briefly holds LOCK TABLE
// ledgers IN EXCLUSIVE MODE, which waits for the writers in flight and
// holds new ones back (every writer of events locks its ledger's row or
// inserts a ledger first): so the snapshot holds every event up to its
// highest position and no later commit can add one below it. The lock is
// released as soon as the snapshot exists. Catching up repeats this for
// the events written meanwhile, by position through the handlers that
// commands run inline, aggregates included, until what is left is small
// (catchUpEnough).
//
// The final step, in one transaction, takes the ledgers lock for good,
// replays the last few events, takes the live read tables' locks (waiting
// at most swapTimeout, so that a reader holding one of them never waits
// behind the swap for long; on timeout the step is rolled back and tried
// again) and moves the live tables out and the new ones in. Readers see
// the old tables or the new ones, never a mix, and writers wait only for
// this step. Until it commits the live tables are untouched, so a failure
// anywhere leaves them as they were. The replaced tables are dropped after
// the commit; a rebuild that failed leaves its copies in shadowSchema,
// and the next one starts by dropping them.
//
// progress, if given, is told after every batch how far the replay is.
func Rebuild(ctx context.Context, pool *pgxpool.Pool, src Source, logf func(string, ...any), progress ...Progress) (events int64, err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	start := time.Now()
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		return 0, fmt.Errorf("rebuild: connect: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, rebuildLock).Scan(&got); err != nil {
		return 0, fmt.Errorf("rebuild: %w", err)
	}
	if !got {
		return 0, errors.New("rebuild: another rebuild is running")
	}
	// Closing the connection releases the lock too, but only once its
	// backend has gone, which a rebuild right after could beat.
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, rebuildLock) }()
	tables, err := prepareShadow(ctx, conn)
	if err != nil {
		return 0, fmt.Errorf("rebuild: %w", err)
	}
	// The bulk: one snapshot, folded and copied, the aggregates
	// recomputed from the same snapshot; then the indexes.
	replayStart := time.Now()
	var after int64
	var loaded time.Time
	err = snapshotRound(ctx, pool, conn, func(tx pgx.Tx, upTo int64) error {
		n, err := bulkLoad(ctx, pool, tx, src, progress)
		if err != nil {
			return err
		}
		events, after = n, upTo
		loaded = time.Now()
		return recomputeAggregates(ctx, tx)
	})
	if err != nil {
		return 0, fmt.Errorf("rebuild: %w", err)
	}
	counted := time.Now()
	if err := buildIndexes(ctx, pool, tables); err != nil {
		return 0, fmt.Errorf("rebuild: %w", err)
	}
	logf("rebuild: loaded %d events in %s, counted in %s, indexed and analysed in %s", events,
		loaded.Sub(replayStart).Round(time.Millisecond), counted.Sub(loaded).Round(time.Millisecond),
		time.Since(counted).Round(time.Millisecond))
	logf("rebuild: replayed %d events into new read tables in %s (%.0f events/s); writers went on",
		events, time.Since(replayStart).Round(time.Millisecond), rate(events, time.Since(replayStart)))

	// Catching up with what was written meanwhile.
	for round := 0; round < catchUpRounds; round++ {
		var n int64
		err = snapshotRound(ctx, pool, conn, func(tx pgx.Tx, upTo int64) error {
			var err error
			n, err = replay(ctx, tx, src.Positions, after)
			after = max(after, upTo)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("rebuild: catch up: %w", err)
		}
		events += n
		if n < catchUpEnough {
			break
		}
	}

	// The final step under the ledgers lock.
	var last int64
	var waited time.Duration
	for try := 1; ; try++ {
		locked := time.Now()
		last, err = swap(ctx, conn, src.Positions, after, tables)
		waited = time.Since(locked)
		if err == nil || !isLockTimeout(err) || try == swapTries {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("rebuild: swap in the new read tables: %w", err)
	}
	events += last
	if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+retiredSchema+` CASCADE`); err != nil {
		logf("rebuild: the replaced read tables are left in schema %s: %v", retiredSchema, err)
	}
	logf("rebuild: replayed %d events into %s; writers waited %s for the final step",
		events, strings.Join(Tables, ", "), waited.Round(time.Millisecond))
	logf("rebuild: total %s", time.Since(start).Round(time.Millisecond))
	return events, nil
}

// shadowTable is a read table and its new copy in shadowSchema.
type shadowTable struct {
	name string
	// live is the live table's schema-qualified name, liveSchema its schema.
	live, liveSchema string
	// constraints are the statements that add the copy's constraints
	// backed by an index, its primary key first; indexes those that build
	// its other indexes.
	constraints, indexes []string
}

// prepareShadow drops what a failed rebuild left, creates the copies of
// the read tables in shadowSchema without indexes, and puts shadowSchema
// first on conn's search_path.
func prepareShadow(ctx context.Context, conn *pgx.Conn) ([]shadowTable, error) {
	for _, schema := range []string{shadowSchema, retiredSchema} {
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
			return nil, fmt.Errorf("drop schema %s: %w", schema, err)
		}
	}
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+shadowSchema); err != nil {
		return nil, fmt.Errorf("create schema %s: %w", shadowSchema, err)
	}
	var tables []shadowTable
	for _, name := range Tables {
		t := shadowTable{name: name}
		err := conn.QueryRow(ctx, `SELECT format('%I.%I', n.nspname, c.relname), n.nspname
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)`,
			name).Scan(&t.live, &t.liveSchema)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("read table %s does not exist", name)
		}
		if err != nil {
			return nil, fmt.Errorf("look up %s: %w", name, err)
		}
		copied := shadowSchema + "." + pgx.Identifier{name}.Sanitize()
		if _, err := conn.Exec(ctx, `CREATE TABLE `+copied+` (LIKE `+t.live+` INCLUDING ALL EXCLUDING INDEXES)`); err != nil {
			return nil, fmt.Errorf("copy %s: %w", name, err)
		}
		// Constraints keep their names and kinds (the primary key first);
		// plain indexes are recreated from their definitions. All are
		// built after the load (buildIndexes).
		rows, err := conn.Query(ctx, `SELECT coalesce(con.contype = 'p', false), con.oid IS NOT NULL,
				CASE WHEN con.oid IS NOT NULL
					THEN format('ALTER TABLE %s ADD CONSTRAINT %I %s', $2::text, con.conname, pg_get_constraintdef(con.oid))
					ELSE regexp_replace(pg_get_indexdef(i.indexrelid), ' ON \S+ ', ' ON ' || $2 || ' ') END
			FROM pg_index i LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
			WHERE i.indrelid = to_regclass($1) ORDER BY 1 DESC, 2 DESC, i.indexrelid`, t.live, copied)
		if err != nil {
			return nil, fmt.Errorf("read the indexes of %s: %w", name, err)
		}
		var keyed bool
		for rows.Next() {
			var primary, constraint bool
			var stmt string
			if err := rows.Scan(&primary, &constraint, &stmt); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read the indexes of %s: %w", name, err)
			}
			keyed = keyed || primary
			if constraint {
				t.constraints = append(t.constraints, stmt)
			} else {
				t.indexes = append(t.indexes, stmt)
			}
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read the indexes of %s: %w", name, err)
		}
		if !keyed {
			return nil, fmt.Errorf("read table %s has no primary key", name)
		}
		grants, err := conn.Query(ctx, `SELECT format('GRANT %s ON %s TO %s', a.privilege_type, $2::text,
				CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(a.grantee::regrole::text) END)
			FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
			WHERE c.oid = to_regclass($1) AND a.grantee <> c.relowner`, t.live, copied)
		if err != nil {
			return nil, fmt.Errorf("read the privileges on %s: %w", name, err)
		}
		stmts, err := pgx.CollectRows(grants, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("read the privileges on %s: %w", name, err)
		}
		for _, stmt := range stmts {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				return nil, fmt.Errorf("grant on the copy of %s: %w", name, err)
			}
		}
		tables = append(tables, t)
	}
	if _, err := conn.Exec(ctx, `SELECT set_config('search_path', $1 || ', ' || current_setting('search_path'), false)`,
		shadowSchema); err != nil {
		return nil, fmt.Errorf("put %s on the search path: %w", shadowSchema, err)
	}
	for _, t := range tables {
		var found string
		if err := conn.QueryRow(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.oid = to_regclass($1)`, t.name).Scan(&found); err != nil {
			return nil, fmt.Errorf("resolve %s: %w", t.name, err)
		}
		if found != shadowSchema {
			return nil, fmt.Errorf("the copy of %s does not shadow it (found %s)", t.name, found)
		}
	}
	return tables, nil
}

// indexBuilders is how many index builds run at once: one per core of
// the machines this runs on, whose builds are CPU-bound once the copies
// are cached.
const indexBuilders = 2

// buildIndexes builds the copies' indexes once they are loaded and
// committed, indexBuilders at a time on connections of pool, each build
// in a transaction of its own with the memory to sort in one pass: first
// every table's constraints (one table's in order, since adding one locks
// the table), then the other indexes (which may run side by side on one
// table), then ANALYZE, so that the planner knows the new tables as soon
// as they are swapped in. The copies are seen by nobody else, so nothing
// waits for these steps.
func buildIndexes(ctx context.Context, pool *pgxpool.Pool, tables []shadowTable) error {
	var constraints, indexes, analyses [][]string
	for _, t := range tables {
		if len(t.constraints) > 0 {
			constraints = append(constraints, t.constraints)
		}
		for _, stmt := range t.indexes {
			indexes = append(indexes, []string{stmt})
		}
		analyses = append(analyses, []string{`ANALYZE ` + shadowSchema + `.` + pgx.Identifier{t.name}.Sanitize()})
	}
	for _, jobs := range [][][]string{constraints, indexes, analyses} {
		if err := runJobs(ctx, pool, jobs); err != nil {
			return err
		}
	}
	return nil
}

// runJobs runs each job (statements in one transaction) on up to
// indexBuilders connections of pool, and returns the first failure.
func runJobs(ctx context.Context, pool *pgxpool.Pool, jobs [][]string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan []string)
	errs := make(chan error, indexBuilders)
	for range indexBuilders {
		go func() {
			var first error
			for job := range next {
				if first != nil {
					continue
				}
				if first = runJob(ctx, pool, job); first != nil {
					cancel()
				}
			}
			errs <- first
		}()
	}
	for _, job := range jobs {
		next <- job
	}
	close(next)
	var err error
	for range indexBuilders {
		err = errors.Join(err, <-errs)
	}
	return err
}

func runJob(ctx context.Context, pool *pgxpool.Pool, job []string) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SET LOCAL maintenance_work_mem = '256MB'`); err != nil {
		return err
	}
	for _, stmt := range job {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("index the copies: %s: %w", stmt, err)
		}
	}
	return tx.Commit(ctx)
}

// snapshotRound runs fn in a REPEATABLE READ transaction on conn whose
// snapshot holds every event up to upTo and no gap below it: the snapshot
// is taken while another connection holds the ledgers lock, released
// right after. fn's writes commit with the transaction.
func snapshotRound(ctx context.Context, pool *pgxpool.Pool, conn *pgx.Conn, fn func(tx pgx.Tx, upTo int64) error) error {
	hold, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = hold.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := hold.Exec(ctx, `LOCK TABLE ledgers IN EXCLUSIVE MODE`); err != nil {
		return fmt.Errorf("lock ledgers: %w", err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var upTo int64
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM events`).Scan(&upTo); err != nil {
		return fmt.Errorf("take a snapshot: %w", err)
	}
	if err := hold.Rollback(ctx); err != nil {
		return fmt.Errorf("release ledgers: %w", err)
	}
	if err := fn(tx, upTo); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// swap is the final step of Rebuild: under the ledgers lock, it replays
// the events after position after into the copies and moves them in place
// of the live tables. It returns how many events it replayed.
func swap(ctx context.Context, conn *pgx.Conn, next EventReader, after int64, tables []shadowTable) (int64, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `LOCK TABLE ledgers IN EXCLUSIVE MODE`); err != nil {
		return 0, fmt.Errorf("lock ledgers: %w", err)
	}
	n, err := replay(ctx, tx, next, after)
	if err != nil {
		return 0, err
	}
	live := make([]string, len(tables))
	for i, t := range tables {
		live[i] = t.live
	}
	if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '`+swapTimeout+`'`); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(live, ", ")+` IN ACCESS EXCLUSIVE MODE`); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA `+retiredSchema); err != nil {
		return 0, err
	}
	for _, t := range tables {
		for _, stmt := range []string{
			`ALTER TABLE ` + t.live + ` SET SCHEMA ` + retiredSchema,
			`ALTER TABLE ` + shadowSchema + `.` + pgx.Identifier{t.name}.Sanitize() + ` SET SCHEMA ` + pgx.Identifier{t.liveSchema}.Sanitize(),
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return 0, fmt.Errorf("%s: %w", t.name, err)
			}
		}
	}
	if _, err := tx.Exec(ctx, `DROP SCHEMA `+shadowSchema); err != nil {
		return 0, err
	}
	return n, tx.Commit(ctx)
}

// isLockTimeout reports a lock_timeout expiry (SQLSTATE 55P03).
func isLockTimeout(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
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

// replay applies every event after position after that next returns
// through the handlers that commands run inline, aggregates included, in
// batches: one round trip reads a batch, one more applies it. It is how a
// rebuild catches up with the events written since its bulk load.
func replay(ctx context.Context, tx pgx.Tx, next EventReader, after int64) (int64, error) {
	var n int64
	for {
		evs, err := next(ctx, tx, after, replayBatch)
		if err != nil {
			return n, fmt.Errorf("read events after position %d: %w", after, err)
		}
		if len(evs) == 0 {
			return n, nil
		}
		b := &pgx.Batch{}
		for _, e := range evs {
			if err := apply(b, e, true); err != nil {
				return n, fmt.Errorf("event %s at position %d: %w", e.ID, e.Position, err)
			}
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return n, fmt.Errorf("apply events at positions %d to %d: %w", evs[0].Position, evs[len(evs)-1].Position, err)
		}
		n += int64(len(evs))
		after = evs[len(evs)-1].Position
		if len(evs) < replayBatch {
			return n, nil
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
// temporary tables named like the read tables (same columns, defaults and
// checks, no indexes), which shadow them, because PostgreSQL looks up
// unqualified names in the session's temporary schema first. Then, in one
// read-only REPEATABLE READ transaction, it loads them through the bulk
// path that Rebuild runs (bulkLoad, then the aggregates) and compares the
// copies with the live tables, qualified by schema, set against set: a
// table matches when neither EXCEPT ALL the other has a row; only a table
// that differs is joined row by row to name the differing keys. The live
// tables were written inline, event by event, so every run of Verify
// also proves the bulk path equal to the inline one on the whole
// history. The events and the live tables are read from
// the same snapshot, and commands commit events and read rows together, so
// no lock is needed: writers go on meanwhile, and the read-only transaction
// guarantees that nothing outside the temporary tables can change, whatever
// a projection does. Closing the connection drops the copies. The session's
// temp_buffers are sized to the live tables (64 MB to 4 GB), so that the
// copies stay in memory.
//
// progress, if given, is told after every batch how far the replay is.
func Verify(ctx context.Context, pool *pgxpool.Pool, src Source, progress ...Progress) (events int64, diffs []Diff, err error) {
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

	// The comparison hashes whole tables.
	if _, err := conn.Exec(ctx, `SET work_mem = '64MB'`); err != nil {
		return 0, nil, fmt.Errorf("verify: %w", err)
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
	if events, err = bulkLoad(ctx, pool, tx, src, progress); err != nil {
		return 0, nil, fmt.Errorf("verify: replay: %w", err)
	}
	if err := recomputeAggregates(ctx, tx); err != nil {
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
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE `+ident+` (LIKE `+lt.qualified+` INCLUDING ALL EXCLUDING INDEXES)`); err != nil {
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
// table and its replayed copy. Whether any does is asked set-based; only
// then are the rows matched by key and compared as the text of the whole
// row.
func (lt liveTable) compare(ctx context.Context, tx pgx.Tx) ([]Diff, error) {
	rebuilt := "pg_temp." + pgx.Identifier{lt.name}.Sanitize()
	var differ bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (TABLE `+lt.qualified+` EXCEPT ALL TABLE `+rebuilt+`)
		OR EXISTS (TABLE `+rebuilt+` EXCEPT ALL TABLE `+lt.qualified+`)`).Scan(&differ); err != nil {
		return nil, err
	}
	if !differ {
		return nil, nil
	}
	parts := make([]string, len(lt.key))
	for i, col := range lt.key {
		parts[i] = fmt.Sprintf("format('%s=%%s', t.%s)", strings.ReplaceAll(col, "'", "''"), pgx.Identifier{col}.Sanitize())
	}
	key := "concat_ws(', ', " + strings.Join(parts, ", ") + ")"
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
