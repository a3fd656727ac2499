package projections_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi/projections"
)

// TestBatchedEqualsApply empties the read tables of a world that has every
// kind of event, with a run of creations between the others, and writes
// them again from its events through Batched in one batch; the tables must
// then equal a replay (Verify), as the ones Apply wrote did.
func TestBatchedEqualsApply(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	for _, name := range []string{"delta", "epsilon", "zeta", "eta"} {
		w.createProject(t, w.owner, name)
	}
	before := dump(t, w.db.Pool)

	tx, err := w.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, table := range projections.Tables {
		if _, err := tx.Exec(ctx, `DELETE FROM `+pgx.Identifier{table}.Sanitize()); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := readEvents.Positions(ctx, tx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	batched := projections.NewBatched(b)
	created := 0
	for _, e := range evs {
		if e.Type == "project.created" {
			created++
		}
		if err := batched.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	batched.Flush()
	if created < 5 {
		t.Fatalf("the world has %d creations, want a run of them", created)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if after := dump(t, w.db.Pool); !sameDump(before, after) {
		t.Errorf("Batched wrote other tables than Apply:\nApply   %v\nBatched %v", before, after)
	}
	if _, diffs, err := projections.Verify(ctx, w.db.Pool, readEvents); err != nil || len(diffs) != 0 {
		t.Fatalf("Verify after Batched: diffs %v, %v", diffs, err)
	}
}
