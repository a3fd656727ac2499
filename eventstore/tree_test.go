package eventstore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/internal/testdb"
	"github.com/saasapi/saasapi/migrations"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"
)

// mth is RFC 6962's Merkle Tree Hash, section 2.1, written from the RFC with
// the second implementation's hasher: the reference the stored tree is
// compared with.
func mth(leaves [][]byte) []byte {
	h := rfc6962.DefaultHasher
	switch n := len(leaves); n {
	case 0:
		return h.EmptyRoot()
	case 1:
		return h.HashLeaf(leaves[0])
	default:
		k := 1
		for k*2 < n {
			k *= 2
		}
		return h.HashChildren(mth(leaves[:k]), mth(leaves[k:]))
	}
}

func TestTreeAppendMatchesRFC6962(t *testing.T) {
	t.Parallel()
	var tree eventstore.Tree
	var leaves [][]byte
	stored := map[int64]tlog.Hash{}
	for i := range 300 {
		leaf := eventstore.Hash([]byte{byte(i), byte(i >> 8)}, nil)
		first, hashes, err := tree.Append(leaf)
		if err != nil {
			t.Fatal(err)
		}
		if first != tlog.StoredHashIndex(0, int64(i)) || int64(len(hashes)) != tlog.StoredHashCount(int64(i+1))-tlog.StoredHashCount(int64(i)) {
			t.Fatalf("leaf %d: first index %d and %d hashes, not what tlog stores for a record", i, first, len(hashes))
		}
		for j, h := range hashes {
			stored[first+int64(j)] = h
		}
		leaves = append(leaves, leaf)
		root, err := tree.Root()
		if err != nil {
			t.Fatal(err)
		}
		if want := mth(leaves); !bytes.Equal(root[:], want) {
			t.Fatalf("root of %d leaves %x, RFC 6962 gives %x", i+1, root, want)
		}
		// The frontier's root equals tlog's root from all stored hashes.
		full, err := tlog.TreeHash(tree.Size, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(idx))
			for k, x := range idx {
				out[k] = stored[x]
			}
			return out, nil
		}))
		if err != nil || full != root {
			t.Fatalf("root from the stored hashes %x (%v), from the frontier %x", full, err, root)
		}
	}
	if _, _, err := tree.Append([]byte("short")); err == nil {
		t.Error("Append took leaf data that is not a 32-byte hash")
	}
}

// ledgerLeaves returns the chain hashes of a ledger's events, in sequence
// order: its tree's leaf data.
func ledgerLeaves(ctx context.Context, t *testing.T, q eventstore.Querier, ledger saasapi.ID) [][]byte {
	t.Helper()
	evs, err := eventstore.ReadLedger(ctx, q, ledger, 0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(evs))
	for i, e := range evs {
		out[i] = e.Hash
	}
	return out
}

func TestStoredTreeProofsVerifyIndependently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	ledger, stream := saasapi.NewID(), saasapi.NewID()
	// Appends of several sizes, so that transactions start and end at every
	// kind of position in the tree.
	version := int64(1)
	for i, n := range []int{1, 2, 5, 1, 8, 13, 3} {
		appendProjectEvents(ctx, t, db, ledger, i == 0, stream, version, n)
		version += int64(n)
	}
	leaves := ledgerLeaves(ctx, t, db.Pool, ledger)
	size := int64(len(leaves))
	head, err := eventstore.ReadHead(ctx, db.Pool, ledger)
	if err != nil {
		t.Fatal(err)
	}
	root, err := head.Tree.Root()
	if err != nil || head.Tree.Size != size || !bytes.Equal(root[:], mth(leaves)) {
		t.Fatalf("ledger row tree: size %d root %x (%v); want %d, %x", head.Tree.Size, root, err, size, mth(leaves))
	}

	hasher := rfc6962.DefaultHasher
	for n := int64(1); n <= size; n++ {
		rootN, err := eventstore.StoredRoot(ctx, db.Pool, ledger, n)
		if err != nil || !bytes.Equal(rootN[:], mth(leaves[:n])) {
			t.Fatalf("stored root of size %d: %x (%v), want %x", n, rootN, err, mth(leaves[:n]))
		}
		for seq := int64(1); seq <= n; seq++ {
			p, err := eventstore.InclusionProof(ctx, db.Pool, ledger, seq, n)
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyInclusion(hasher, uint64(seq-1), uint64(n), hasher.HashLeaf(leaves[seq-1]),
				proofBytes(p), rootN[:]); err != nil {
				t.Errorf("inclusion of %d in %d: %v", seq, n, err)
			}
		}
		for m := int64(1); m <= n; m++ {
			p, err := eventstore.ConsistencyProof(ctx, db.Pool, ledger, m, n)
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyConsistency(hasher, uint64(m), uint64(n), proofBytes(p),
				mth(leaves[:m]), rootN[:]); err != nil {
				t.Errorf("consistency of %d with %d: %v", m, n, err)
			}
		}
	}

	for _, c := range []struct{ seq, n int64 }{{0, 1}, {1, 0}, {2, 1}, {1, size + 1}, {-1, 3}} {
		if _, err := eventstore.InclusionProof(ctx, db.Pool, ledger, c.seq, c.n); !errors.Is(err, eventstore.ErrBadTreeSize) {
			t.Errorf("InclusionProof(%d, %d): %v, want ErrBadTreeSize", c.seq, c.n, err)
		}
	}
	for _, c := range []struct{ from, to int64 }{{0, 1}, {2, 1}, {1, size + 1}, {0, 0}} {
		if _, err := eventstore.ConsistencyProof(ctx, db.Pool, ledger, c.from, c.to); !errors.Is(err, eventstore.ErrBadTreeSize) {
			t.Errorf("ConsistencyProof(%d, %d): %v, want ErrBadTreeSize", c.from, c.to, err)
		}
	}

	// The merkle-root recipe of docs/audit.md recomputes the root from the
	// events in plain SQL.
	for _, n := range []int64{1, 2, 7, size} {
		want := base64.StdEncoding.EncodeToString(mth(leaves[:n])) + "\n"
		if got := runRecipe(t, "merkle-root", db.URL, ledger, n); got != want {
			t.Errorf("merkle-root recipe for size %d printed %q, want %q", n, got, want)
		}
	}
}

func proofBytes[T ~[]tlog.Hash](p T) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

// TestMigrationBackfillsTrees writes ledgers with the schema before the tree
// existed, migrates, and checks that the backfilled trees are the ones
// Append would have written.
func TestMigrationBackfillsTrees(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.NewEmpty(t)
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	version := migrations.VersionNamed("_ledger_tree.sql")
	if version < 2 {
		t.Fatalf("the ledger tree migration has version %d", version)
	}
	if err := migrations.MigrateTo(ctx, conn, version-1); err != nil {
		t.Fatal(err)
	}
	sizes := map[saasapi.ID]int{saasapi.NewID(): 0, saasapi.NewID(): 1, saasapi.NewID(): 6, saasapi.NewID(): 33}
	leaves := map[saasapi.ID][][]byte{}
	for ledger, n := range sizes {
		if _, err := conn.Exec(ctx, `INSERT INTO ledgers (ledger_id, ledger_type) VALUES ($1, 'organisation')`, ledger); err != nil {
			t.Fatal(err)
		}
		prev := eventstore.ZeroHash
		stream := saasapi.NewID()
		for s := 1; s <= n; s++ {
			e := saasapi.Event{ID: saasapi.NewID(), LedgerID: ledger, LedgerType: saasapi.LedgerOrganisation,
				Sequence: int64(s), StreamType: saasapi.StreamProject, StreamID: stream, StreamVersion: int64(s),
				Type: saasapi.EventProjectUpdated, SchemaVersion: 1, Actor: saasapi.Actor{Type: saasapi.PrincipalSystem},
				OccurredAt: time.Now().UTC().Truncate(time.Microsecond), Payload: []byte(`{"changed_fields":["name"]}`),
				PrevHash: prev}
			e.Hash = eventstore.Hash(e.PrevHash, eventstore.Canonical(e))
			if _, err := conn.Exec(ctx, `INSERT INTO events (event_id, ledger_id, ledger_type, sequence, stream_type,
					stream_id, stream_version, event_type, schema_version, actor_type, occurred_at, payload, prev_hash, hash)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
				e.ID, e.LedgerID, e.LedgerType, e.Sequence, e.StreamType, e.StreamID, e.StreamVersion, e.Type,
				e.SchemaVersion, string(e.Actor.Type), e.OccurredAt, string(e.Payload), e.PrevHash, e.Hash); err != nil {
				t.Fatal(err)
			}
			prev = e.Hash
			leaves[ledger] = append(leaves[ledger], e.Hash)
		}
		if _, err := conn.Exec(ctx, `UPDATE ledgers SET last_sequence = $2, last_hash = $3 WHERE ledger_id = $1`,
			ledger, n, prev); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := migrations.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	// VerifyAll compares every stored tree hash and every ledgers row's
	// tree with the tree recomputed from the events.
	if ledgers, events, err := eventstore.VerifyAll(ctx, conn, nil); err != nil || ledgers != 4 || events != 40 {
		t.Fatalf("VerifyAll after the backfill: %d ledgers, %d events, %v", ledgers, events, err)
	}
	for ledger := range sizes {
		head, err := eventstore.ReadHead(ctx, conn, ledger)
		if err != nil {
			t.Fatal(err)
		}
		root, err := head.Tree.Root()
		if err != nil || !bytes.Equal(root[:], mth(leaves[ledger])) {
			t.Errorf("ledger of %d events: backfilled root %x (%v), want %x", sizes[ledger], root, err, mth(leaves[ledger]))
		}
	}
}
