package eventstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/saasapi/saasapi"
	"golang.org/x/mod/sumdb/tlog"
)

// Every ledger has an RFC 6962 Merkle tree (docs/audit.md): leaf s-1 is the
// event with sequence s, and its data is the event's 32-byte chain hash, so
// leaf hash = SHA-256(0x00 || hash) and node = SHA-256(0x01 || left || right).
// golang.org/x/mod/sumdb/tlog computes the hashes: every record adds the
// hashes that tlog.StoredHashes returns for it (its leaf and the roots of the
// complete subtrees it closes), stored in ledger_tree_hashes at consecutive
// stored-hash indexes. The ledgers row keeps the tree's size and frontier,
// which is all an append needs, so the tree costs an append no round trip.

// Tree is what a ledgers row keeps of its Merkle tree: the number of leaves
// and the frontier, the roots of the complete subtrees that the binary
// decomposition of Size splits the leaves into, largest (leftmost) first.
// The frontier alone gives the root and the hashes the next append needs.
type Tree struct {
	Size     int64
	Frontier []tlog.Hash
}

// frontierIndexes returns the stored-hash index of every frontier entry of a
// tree of n leaves, in frontier order.
func frontierIndexes(n int64) []int64 {
	var out []int64
	start := int64(0)
	for level := 62; level >= 0; level-- {
		if n&(1<<level) == 0 {
			continue
		}
		out = append(out, tlog.StoredHashIndex(level, start>>level))
		start += 1 << level
	}
	return out
}

// reader answers tlog's reads from the frontier; any other index is an error,
// which tlog's append and root computations never cause.
func (t Tree) reader() tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		idx := frontierIndexes(t.Size)
		if len(idx) != len(t.Frontier) {
			return nil, fmt.Errorf("tree of size %d has %d frontier hashes, want %d", t.Size, len(t.Frontier), len(idx))
		}
		out := make([]tlog.Hash, len(indexes))
	next:
		for i, want := range indexes {
			for j, have := range idx {
				if have == want {
					out[i] = t.Frontier[j]
					continue next
				}
			}
			return nil, fmt.Errorf("stored hash %d is not on the frontier of a tree of size %d", want, t.Size)
		}
		return out, nil
	})
}

// Root returns the tree's root hash (the SHA-256 of the empty string for an
// empty tree, as RFC 6962 defines it).
func (t Tree) Root() (tlog.Hash, error) { return tlog.TreeHash(t.Size, t.reader()) }

// Append adds the leaf whose data is chainHash, the next event's hash. It
// returns the stored-hash index of the first new hash and the hashes to store
// from there on (tlog.StoredHashes), and advances t.
func (t *Tree) Append(chainHash []byte) (first int64, hashes []tlog.Hash, err error) {
	if len(chainHash) != HashSize {
		return 0, nil, fmt.Errorf("leaf data is %d bytes, want %d", len(chainHash), HashSize)
	}
	hashes, err = tlog.StoredHashes(t.Size, chainHash, t.reader())
	if err != nil {
		return 0, nil, err
	}
	// The new record closed len(hashes)-1 subtrees: they merge the same
	// number of frontier entries into the last hash, the root of the new
	// rightmost complete subtree.
	merged := len(hashes) - 1
	frontier := append(t.Frontier[:len(t.Frontier)-merged:len(t.Frontier)-merged], hashes[merged])
	first = tlog.StoredHashIndex(0, t.Size)
	t.Size++
	t.Frontier = frontier
	return first, hashes, nil
}

// encodeFrontier is the ledgers.tree_frontier column: the hashes
// concatenated.
func encodeFrontier(f []tlog.Hash) []byte {
	out := make([]byte, 0, len(f)*HashSize)
	for _, h := range f {
		out = append(out, h[:]...)
	}
	return out
}

// decodeTree rebuilds a Tree from the ledgers row's columns.
func decodeTree(size int64, frontier []byte) (Tree, error) {
	if len(frontier)%HashSize != 0 {
		return Tree{}, fmt.Errorf("tree_frontier is %d bytes, not a multiple of %d", len(frontier), HashSize)
	}
	t := Tree{Size: size, Frontier: make([]tlog.Hash, len(frontier)/HashSize)}
	for i := range t.Frontier {
		copy(t.Frontier[i][:], frontier[i*HashSize:])
	}
	return t, nil
}

// hashesParam turns hashes into the bytea[] parameter of an insert.
func hashesParam(hs []tlog.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// ErrBadTreeSize is what a TreeSizeError is: a proof request whose sizes the
// tree cannot answer (zero, beyond the tree, or a from greater than to).
var ErrBadTreeSize = errors.New("tree size out of range")

// TreeSizeError names the proof parameter that is out of range.
type TreeSizeError struct {
	Field   string
	Message string
}

func (e *TreeSizeError) Error() string { return e.Field + ": " + e.Message }

// Is makes errors.Is(err, ErrBadTreeSize) true.
func (e *TreeSizeError) Is(target error) bool { return target == ErrBadTreeSize }

// checkSizes returns a TreeSizeError unless 1 <= lo <= hi <= size; loField
// and hiField name lo and hi.
func checkSizes(lo, hi, size int64, loField, hiField string) error {
	switch {
	case hi < 1 || hi > size:
		return &TreeSizeError{Field: hiField, Message: fmt.Sprintf("%s must be from 1 to the tree size, %d", hiField, size)}
	case lo < 1 || lo > hi:
		return &TreeSizeError{Field: loField, Message: fmt.Sprintf("%s must be from 1 to %s", loField, hiField)}
	}
	return nil
}

// storedHashReader reads stored hashes of one ledger's tree from
// ledger_tree_hashes in one query per call (tlog asks for every hash a proof
// needs at once).
func storedHashReader(ctx context.Context, q Querier, ledgerID saasapi.ID) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		rows, err := q.Query(ctx, `SELECT i.n, h.hash FROM unnest($2::bigint[]) WITH ORDINALITY AS i(idx, n)
			JOIN ledger_tree_hashes h ON h.ledger_id = $1 AND h.hash_index = i.idx`, ledgerID, indexes)
		if err != nil {
			return nil, fmt.Errorf("read tree hashes of ledger %s: %w", ledgerID, err)
		}
		defer rows.Close()
		out := make([]tlog.Hash, len(indexes))
		found := 0
		for rows.Next() {
			var (
				n int
				h []byte
			)
			if err := rows.Scan(&n, &h); err != nil {
				return nil, fmt.Errorf("read tree hashes of ledger %s: %w", ledgerID, err)
			}
			if len(h) != HashSize || n < 1 || n > len(indexes) {
				return nil, fmt.Errorf("read tree hashes of ledger %s: malformed row", ledgerID)
			}
			copy(out[n-1][:], h)
			found++
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read tree hashes of ledger %s: %w", ledgerID, err)
		}
		if found != len(indexes) {
			return nil, fmt.Errorf("read tree hashes of ledger %s: %d of %d stored hashes are missing",
				ledgerID, len(indexes)-found, len(indexes))
		}
		return out, nil
	})
}

// InclusionProof returns the proof that the event with sequence seq is leaf
// seq-1 of the ledger's tree of size treeSize, from the stored tree hashes.
// Sizes outside 1 <= seq <= treeSize <= the ledger's tree size are
// ErrBadTreeSize.
func InclusionProof(ctx context.Context, q Querier, ledgerID saasapi.ID, seq, treeSize int64) (tlog.RecordProof, error) {
	head, err := ReadHead(ctx, q, ledgerID)
	if err != nil {
		return nil, err
	}
	if err := checkSizes(seq, treeSize, head.Tree.Size, "sequence", "tree_size"); err != nil {
		return nil, err
	}
	return tlog.ProveRecord(treeSize, seq-1, storedHashReader(ctx, q, ledgerID))
}

// ConsistencyProof returns the proof that the ledger's tree of size from is a
// prefix of its tree of size to. Sizes outside 1 <= from <= to <= the
// ledger's tree size are ErrBadTreeSize.
func ConsistencyProof(ctx context.Context, q Querier, ledgerID saasapi.ID, from, to int64) (tlog.TreeProof, error) {
	head, err := ReadHead(ctx, q, ledgerID)
	if err != nil {
		return nil, err
	}
	if err := checkSizes(from, to, head.Tree.Size, "from", "to"); err != nil {
		return nil, err
	}
	return tlog.ProveTree(to, from, storedHashReader(ctx, q, ledgerID))
}

// AuditInclusionProof is InclusionProof for the authorized organisation's
// ledger.
func AuditInclusionProof(ctx context.Context, q Querier, a saasapi.Access, seq, treeSize int64) (tlog.RecordProof, error) {
	ledgerID, err := scopeOf(a)
	if err != nil {
		return nil, err
	}
	return InclusionProof(ctx, q, ledgerID, seq, treeSize)
}

// AuditConsistencyProof is ConsistencyProof for the authorized
// organisation's ledger.
func AuditConsistencyProof(ctx context.Context, q Querier, a saasapi.Access, from, to int64) (tlog.TreeProof, error) {
	ledgerID, err := scopeOf(a)
	if err != nil {
		return nil, err
	}
	return ConsistencyProof(ctx, q, ledgerID, from, to)
}

// StoredRoot returns the root of the ledger's tree of size n computed from
// the stored tree hashes (not from the events).
func StoredRoot(ctx context.Context, q Querier, ledgerID saasapi.ID, n int64) (tlog.Hash, error) {
	return tlog.TreeHash(n, storedHashReader(ctx, q, ledgerID))
}

// treeCheck recomputes one ledger's tree from its events' chain hashes, fed
// in sequence order, and compares every stored hash and the ledgers row's
// tree with it.
type treeCheck struct {
	ledgerID saasapi.ID
	tree     Tree
	// rootAt, when not nil, receives the recomputed root of the tree of
	// wantSize leaves (a checkpoint's size to compare with).
	wantSize int64
	rootAt   *tlog.Hash
}

func (c *treeCheck) fail(seq int64, format string, args ...any) error {
	return &ChainError{LedgerID: c.ledgerID, Sequence: seq, Reason: fmt.Sprintf(format, args...)}
}

// add appends the event's chain hash and checks the hashes it adds against
// the stored ones, which next yields in stored-hash index order.
func (c *treeCheck) add(seq int64, chainHash []byte, next func() (int64, []byte, bool, error)) error {
	first, hashes, err := c.tree.Append(chainHash)
	if err != nil {
		return c.fail(seq, "recompute tree: %v", err)
	}
	for i, h := range hashes {
		idx, stored, ok, err := next()
		if err != nil {
			return err
		}
		want := first + int64(i)
		switch {
		case !ok || idx > want:
			return c.fail(seq, "tree hash %d is missing", want)
		case idx < want:
			// Indexes arrive in order and are unique, so a smaller one
			// belongs to no event of the ledger.
			return c.fail(seq, "tree hash %d belongs to no event", idx)
		case !bytes.Equal(stored, h[:]):
			return c.fail(seq, "stored tree hash %d does not match the tree recomputed from the events", want)
		}
	}
	if c.rootAt != nil && c.tree.Size == c.wantSize {
		root, err := c.tree.Root()
		if err != nil {
			return c.fail(seq, "recompute tree: %v", err)
		}
		*c.rootAt = root
	}
	return nil
}

// finish checks the ledgers row's tree and that no stored hash follows the
// last event's.
func (c *treeCheck) finish(stored Tree, extra bool, extraIndex int64) error {
	if extra {
		return c.fail(c.tree.Size, "tree hash %d lies beyond the last event", extraIndex)
	}
	if stored.Size != c.tree.Size {
		return c.fail(c.tree.Size, "ledger tree_size %d does not equal the number of events %d", stored.Size, c.tree.Size)
	}
	if !bytes.Equal(encodeFrontier(stored.Frontier), encodeFrontier(c.tree.Frontier)) {
		return c.fail(c.tree.Size, "ledger tree_frontier does not match the tree recomputed from the events")
	}
	return nil
}

// LeafRoot computes the root of a tree over the given chain hashes, in
// order, without a database: what an auditor recomputes from an export.
type LeafRoot struct{ t Tree }

// Add appends the next event's chain hash.
func (r *LeafRoot) Add(chainHash []byte) error {
	_, _, err := r.t.Append(chainHash)
	return err
}

// Size is the number of leaves added.
func (r *LeafRoot) Size() int64 { return r.t.Size }

// Root is the root of the leaves added so far.
func (r *LeafRoot) Root() (tlog.Hash, error) { return r.t.Root() }

// treeRows collects the tree hashes that one Append adds.
type treeRows struct {
	first  int64 // stored-hash index of hashes[0]; -1 before the first
	hashes []tlog.Hash
}

// add appends a leaf to t and collects the hashes to store.
func (r *treeRows) add(t *Tree, chainHash []byte) error {
	first, hs, err := t.Append(chainHash)
	if err != nil {
		return err
	}
	if r.first < 0 {
		r.first = first
	}
	r.hashes = append(r.hashes, hs...)
	return nil
}
