package eventstore_test

import (
	"context"
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
	b.Logf("seeded a tree of %d leaves (%d stored hashes) in %v", n, len(rows), time.Since(start))
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
