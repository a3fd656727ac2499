package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/internal/dbpool"
	"github.com/saasapi/saasapi/internal/testdb"
)

// inResealing runs sql in a transaction of pool that set saasapi.resealing
// locally (when resealing is true), and rolls it back.
func inResealing(ctx context.Context, pool *pgxpool.Pool, resealing bool, sql string) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if resealing {
		if _, err := tx.Exec(ctx, `SELECT set_config('saasapi.resealing', 'on', true)`); err != nil {
			return err
		}
	}
	_, err = tx.Exec(ctx, sql)
	return err
}

// TestResealingIsNarrow: the exception to the append-only rule lets through
// only an UPDATE of the payload and hashes, by the owner, in a transaction
// that set saasapi.resealing; the application role stays unable to change
// events even when it sets it, nobody may delete, and the setting ends with
// its transaction.
func TestResealingIsNarrow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	ledger := saasapi.NewID()
	if err := appendEvents(ctx, db.Pool, ledger, true, saasapi.NewID(), 1, 2); err != nil {
		t.Fatal(err)
	}
	h := make([]byte, 32)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO ledger_reseals (ledger_id, first_sequence, events_changed, tree_size,
		old_head_hash, new_head_hash, old_root_hash, new_root_hash) VALUES ($1, 1, 1, 2, $2, $2, $2, $2)`, ledger, h); err != nil {
		t.Fatal(err)
	}
	app, err := dbpool.Open(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	refused := func(err error) bool {
		var pgErr *pgconn.PgError
		return errors.As(err, &pgErr) && pgErr.Code == "42501"
	}
	payload := `UPDATE events SET payload = '{"changed_fields":["x"]}'`
	for _, c := range []struct {
		who       string
		pool      *pgxpool.Pool
		resealing bool
		sql       string
		allowed   bool
	}{
		{"owner", db.Pool, true, payload, true},
		{"owner", db.Pool, true, `UPDATE events SET hash = prev_hash, prev_hash = hash`, true},
		{"owner", db.Pool, true, `UPDATE ledger_tree_hashes SET hash = sha256(hash)`, true},
		{"owner", db.Pool, false, payload, false},
		{"owner", db.Pool, true, `UPDATE events SET event_type = 'tampered'`, false},
		{"owner", db.Pool, true, `UPDATE events SET occurred_at = now()`, false},
		{"owner", db.Pool, true, `UPDATE ledger_tree_hashes SET hash_index = hash_index + 100`, false},
		{"owner", db.Pool, true, `DELETE FROM events`, false},
		{"owner", db.Pool, true, `DELETE FROM ledger_tree_hashes`, false},
		{"owner", db.Pool, true, `TRUNCATE events`, false},
		{"owner", db.Pool, true, `DELETE FROM ledger_reseals`, false},
		{"owner", db.Pool, true, `UPDATE ledger_reseals SET events_changed = 2`, false},
		{"owner", db.Pool, true, `TRUNCATE ledger_reseals`, false},
		{"application role", app, true, payload, false},
		{"application role", app, true, `UPDATE ledger_tree_hashes SET hash = sha256(hash)`, false},
		{"application role", app, true, `DELETE FROM events`, false},
		{"application role", app, true, `INSERT INTO ledger_reseals (ledger_id) VALUES ('x')`, false},
	} {
		err := inResealing(ctx, c.pool, c.resealing, c.sql)
		switch {
		case c.allowed && err != nil:
			t.Errorf("%s (resealing %v): %s: %v, want it allowed", c.who, c.resealing, c.sql, err)
		case !c.allowed && !refused(err):
			t.Errorf("%s (resealing %v): %s: %v, want insufficient_privilege (42501)", c.who, c.resealing, c.sql, err)
		}
	}
	// The setting is local: once its transaction ended, the rule holds again
	// on the same connection.
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('saasapi.resealing', 'on', true)`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, payload); !refused(err) {
		t.Errorf("an update after the resealing transaction ended: %v, want it refused", err)
	}
	if _, err := eventstore.VerifyLedger(ctx, db.Pool, ledger); err != nil {
		t.Fatalf("the ledger after the attempts: %v", err)
	}
}

// TestRewriteLedger: a rewrite recomputes the chain from the first changed
// event and the tree, so that the ledger verifies, records the old and new
// head and root, and drops the last checkpoint; a ledger that does not
// verify is refused; the application role cannot rewrite.
func TestRewriteLedger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	ledger := saasapi.NewID()
	if err := appendEvents(ctx, db.Pool, ledger, true, saasapi.NewID(), 1, 7); err != nil {
		t.Fatal(err)
	}
	before, err := eventstore.ReadLedger(ctx, db.Pool, ledger, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	oldHead, err := eventstore.ReadHead(ctx, db.Pool, ledger)
	if err != nil {
		t.Fatal(err)
	}
	oldRoot, _ := oldHead.Tree.Root()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO ledger_checkpoints (ledger_id, tree_size, root_hash, note) VALUES ($1, 7, $2, 'old note')`,
		ledger, oldRoot[:]); err != nil {
		t.Fatal(err)
	}
	changeFourth := func(evs []saasapi.Event) ([]json.RawMessage, error) {
		out := make([]json.RawMessage, len(evs))
		out[3] = json.RawMessage(`{"changed_fields":["description"]}`)
		out[5] = evs[5].Payload // the same bytes: not a change
		return out, nil
	}
	rewrite := func(pool *pgxpool.Pool, f func([]saasapi.Event) ([]json.RawMessage, error)) (*eventstore.Reseal, error) {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return nil, err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		r, err := eventstore.RewriteLedger(ctx, tx, ledger, f)
		if err != nil {
			return nil, err
		}
		return r, tx.Commit(ctx)
	}

	app, err := dbpool.Open(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	if _, err := rewrite(app, changeFourth); !errors.Is(err, eventstore.ErrNotOwner) {
		t.Fatalf("a rewrite by the application role: %v, want ErrNotOwner", err)
	}
	if r, err := rewrite(db.Pool, func(evs []saasapi.Event) ([]json.RawMessage, error) {
		return make([]json.RawMessage, len(evs)), nil
	}); r != nil || err != nil {
		t.Fatalf("a rewrite that changes nothing: %+v, %v; want nothing", r, err)
	}

	r, err := rewrite(db.Pool, changeFourth)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := eventstore.VerifyLedger(ctx, db.Pool, ledger); err != nil || n != 7 {
		t.Fatalf("the rewritten ledger: %d events, %v", n, err)
	}
	after, err := eventstore.ReadLedger(ctx, db.Pool, ledger, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for i := range after {
		changed := string(after[i].Hash) != string(before[i].Hash)
		if changed != (i >= 3) {
			t.Errorf("event %d: hash changed %v, want a change exactly from the rewritten event on", i+1, changed)
		}
	}
	newHead, err := eventstore.ReadHead(ctx, db.Pool, ledger)
	if err != nil {
		t.Fatal(err)
	}
	newRoot, _ := newHead.Tree.Root()
	if r.FirstSequence != 4 || r.EventsChanged != 1 || r.TreeSize != 7 || r.OldRoot != oldRoot || r.NewRoot != newRoot ||
		string(r.OldHead) != string(oldHead.Hash) || string(r.NewHead) != string(newHead.Hash) || r.DroppedCheckpoint != "old note" {
		t.Errorf("the reseal: %+v", r)
	}
	stored, err := eventstore.LastReseal(ctx, db.Pool, ledger)
	if err != nil || stored == nil || stored.NewRoot != r.NewRoot || stored.OldRoot != r.OldRoot || stored.DroppedCheckpoint != "old note" {
		t.Errorf("the recorded reseal: %+v, %v", stored, err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM ledger_checkpoints WHERE ledger_id = $1`, ledger).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d checkpoints left (%v), want the old one dropped", n, err)
	}
	// A proof from the stored tree hashes agrees with the recomputed root.
	if root, err := eventstore.StoredRoot(ctx, db.Pool, ledger, 7); err != nil || root != newRoot {
		t.Errorf("the stored tree's root: %v, want the new root", err)
	}

	tamper(ctx, t, db, ledger, `UPDATE events SET payload = '{"changed_fields":["forged"]}' WHERE ledger_id = $1 AND sequence = 2`)
	if _, err := rewrite(db.Pool, changeFourth); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("rewriting a tampered ledger: %v, want a refusal", err)
	}
	var reseals int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM ledger_reseals`).Scan(&reseals); err != nil || reseals != 1 {
		t.Errorf("%d reseals recorded (%v), want 1", reseals, err)
	}
}
