package eventstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/internal/testdb"
)

// BenchmarkProofsMillion measures the proof queries and the checkpoint on a
// ledger whose tree has a million leaves. The tree is computed in Go with
// the code Append uses and copied straight into ledger_tree_hashes and the
// ledgers row (proofs and checkpoints read only those): this measures the
// reads, not the write path.
func BenchmarkProofsMillion(b *testing.B) {
	ctx := context.Background()
	db := testdb.New(b)
	const n = 1_000_000
	ledger := saasapi.NewID()
	start := time.Now()
	var tree eventstore.Tree
	rows := make([][]any, 0, 2*n)
	for i := range n {
		leaf := eventstore.Hash([]byte{byte(i), byte(i >> 8), byte(i >> 16)}, nil)
		first, hashes, err := tree.Append(leaf)
		if err != nil {
			b.Fatal(err)
		}
		for j, h := range hashes {
			rows = append(rows, []any{ledger, first + int64(j), h[:]})
		}
	}
	if _, err := db.Pool.CopyFrom(ctx, pgx.Identifier{"ledger_tree_hashes"}, []string{"ledger_id", "hash_index", "hash"},
		pgx.CopyFromRows(rows)); err != nil {
		b.Fatal(err)
	}
	frontier := make([]byte, 0, len(tree.Frontier)*eventstore.HashSize)
	for _, h := range tree.Frontier {
		frontier = append(frontier, h[:]...)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO ledgers (ledger_id, ledger_type, last_sequence, tree_size, tree_frontier)
		VALUES ($1, 'organisation', $2, $2, $3)`, ledger, n, frontier); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `VACUUM ANALYZE ledger_tree_hashes`); err != nil {
		b.Fatal(err)
	}
	var size string
	if err := db.Pool.QueryRow(ctx, `SELECT pg_size_pretty(pg_total_relation_size('ledger_tree_hashes'))`).Scan(&size); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded a tree of %d leaves (%d stored hashes, %s with the index) in %v", n, len(rows), size, time.Since(start))
	key, _ := eventstore.GenerateSigningKey("bench")
	signer, err := eventstore.NewLedgerSigner(key, "bench")
	if err != nil {
		b.Fatal(err)
	}
	root, _ := tree.Root()

	b.Run("inclusion", func(b *testing.B) {
		i := int64(0)
		for b.Loop() {
			i = (i*7919 + 104729) % n
			p, err := eventstore.InclusionProof(ctx, db.Pool, ledger, i+1, n)
			if err != nil || len(p) < 19 {
				b.Fatalf("inclusion proof of %d: %d hashes, %v", i+1, len(p), err)
			}
		}
	})
	b.Run("consistency", func(b *testing.B) {
		m := int64(0)
		for b.Loop() {
			m = (m*7919+104729)%(n-1) + 1
			p, err := eventstore.ConsistencyProof(ctx, db.Pool, ledger, m, n)
			if err != nil || len(p) == 0 {
				b.Fatalf("consistency proof from %d: %v", m, err)
			}
		}
	})
	b.Run("stored-root", func(b *testing.B) {
		for b.Loop() {
			r, err := eventstore.StoredRoot(ctx, db.Pool, ledger, n)
			if err != nil || r != root {
				b.Fatalf("stored root %x, %v", r, err)
			}
		}
	})
	// The checkpoint after a first one was signed at half the size: a
	// consistency check from the last signed checkpoint, then a signature.
	b.Run("checkpoint", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			if _, err := db.Pool.Exec(ctx, `DELETE FROM ledger_checkpoints`); err != nil {
				b.Fatal(err)
			}
			half, err := eventstore.StoredRoot(ctx, db.Pool, ledger, n/2)
			if err != nil {
				b.Fatal(err)
			}
			signed, err := signer.Sign(eventstore.Checkpoint{Origin: signer.Origin(saasapi.LedgerOrganisation, ledger), Size: n / 2, Root: half})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := db.Pool.Exec(ctx, `INSERT INTO ledger_checkpoints (ledger_id, tree_size, root_hash, note) VALUES ($1, $2, $3, $4)`,
				ledger, n/2, half[:], string(signed)); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := signer.SignCheckpoint(ctx, db.Pool, ledger); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAppendTreeCost measures what the tree adds to an append: every
// iteration commits a transaction of n events the way Append did before the
// tree existed (lock the head, insert the events, update the head; the
// statements written out here) and one through Append (which also inserts
// the tree hashes and writes the tree into the head), alternately into two
// ledgers of the same history, so that load on the machine affects both
// alike. It reports both averages and the difference per event;
// docs/audit.md sets the difference against the cost of a whole POST. n is
// 1 (a command) and 500 (a bulk load).
func BenchmarkAppendTreeCost(b *testing.B) {
	for _, n := range []int{1, 500} {
		b.Run(fmt.Sprintf("events-%d", n), func(b *testing.B) { benchAppendTreeCost(b, n) })
	}
}

func benchAppendTreeCost(b *testing.B, n int) {
	ctx := context.Background()
	db := testdb.New(b)
	chainOnly, withTree := saasapi.NewID(), saasapi.NewID()
	stream := saasapi.NewID()
	for _, l := range []saasapi.ID{chainOnly, withTree} {
		if _, err := db.Pool.Exec(ctx, `INSERT INTO ledgers (ledger_id, ledger_type) VALUES ($1, 'organisation')`, l); err != nil {
			b.Fatal(err)
		}
	}
	var version int64
	events := func(ledger saasapi.ID) []saasapi.NewEvent {
		out := make([]saasapi.NewEvent, n)
		for i := range out {
			version++
			out[i] = saasapi.NewEvent{LedgerID: ledger, LedgerType: saasapi.LedgerOrganisation, StreamType: saasapi.StreamProject,
				StreamID: stream, StreamVersion: version, Type: saasapi.EventProjectUpdated,
				Actor: saasapi.Actor{Type: saasapi.PrincipalUser, UserID: saasapi.NewID()}, RequestID: "req",
				OccurredAt: time.Now(), Data: saasapi.ProjectUpdated{ChangedFields: []string{"name"}}}
		}
		return out
	}
	commit := func(tx pgx.Tx, batch *pgx.Batch) {
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	before := func() time.Duration {
		start := time.Now()
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		head := eventstore.Head{LedgerID: chainOnly, LedgerType: saasapi.LedgerOrganisation}
		if err := tx.QueryRow(ctx, `SELECT last_sequence, last_hash FROM ledgers WHERE ledger_id = $1 FOR UPDATE`,
			chainOnly).Scan(&head.Sequence, &head.Hash); err != nil {
			b.Fatal(err)
		}
		// Append computes the rows; its own batch, with the tree's
		// statements, is not sent.
		evs, err := eventstore.Append(&pgx.Batch{}, &head, events(chainOnly))
		if err != nil {
			b.Fatal(err)
		}
		batch := &pgx.Batch{}
		for _, e := range evs {
			batch.Queue(`INSERT INTO events (event_id, ledger_id, ledger_type, sequence, stream_type, stream_id,
					stream_version, event_type, schema_version, actor_type, actor_user_id, actor_api_key_id,
					request_id, occurred_at, payload, prev_hash, hash)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
				e.ID, e.LedgerID, e.LedgerType, e.Sequence, e.StreamType, e.StreamID,
				e.StreamVersion, e.Type, e.SchemaVersion, string(e.Actor.Type), e.Actor.UserID.Ptr(), e.Actor.APIKeyID.Ptr(),
				e.RequestID, e.OccurredAt, string(e.Payload), e.PrevHash, e.Hash)
		}
		batch.Queue(`UPDATE ledgers SET last_sequence = $2, last_hash = $3, updated_at = $4 WHERE ledger_id = $1`,
			chainOnly, head.Sequence, head.Hash, head.UpdatedAt)
		commit(tx, batch)
		return time.Since(start)
	}
	after := func() time.Duration {
		start := time.Now()
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		head, err := eventstore.LockLedger(ctx, tx, withTree)
		if err != nil {
			b.Fatal(err)
		}
		batch := &pgx.Batch{}
		if _, err := eventstore.Append(batch, &head, events(withTree)); err != nil {
			b.Fatal(err)
		}
		commit(tx, batch)
		return time.Since(start)
	}
	var tb, ta time.Duration
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			tb += before()
			ta += after()
		} else {
			ta += after()
			tb += before()
		}
	}
	per := float64(b.N * n)
	b.ReportMetric(float64(tb.Microseconds())/per, "µs/event-chain-only")
	b.ReportMetric(float64(ta.Microseconds())/per, "µs/event-with-tree")
	b.ReportMetric(float64((ta-tb).Microseconds())/per, "µs/event-tree")
}
