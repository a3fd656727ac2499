-- The Merkle tree of every ledger and the checkpoints signed over it
-- (docs/audit.md, "The Merkle tree, byte for byte").
--
-- Leaf s-1 of a ledger's tree is the event with sequence s; its data is the
-- event's 32-byte chain hash. ledger_tree_hashes holds, at the stored-hash
-- indexes of golang.org/x/mod/sumdb/tlog, every leaf hash and the root of
-- every complete subtree: what tlog.StoredHashes returns per record, and
-- what inclusion and consistency proofs are built from. The ledgers row keeps
-- the tree's size and frontier (the roots of the complete subtrees that make
-- up the tree, largest first, concatenated), which is all an append needs.
-- The events stay the source of truth: `saasapi audit verify` recomputes the
-- tree from them and compares every stored hash.

ALTER TABLE ledgers
    ADD COLUMN tree_size bigint NOT NULL DEFAULT 0 CHECK (tree_size >= 0),
    ADD COLUMN tree_frontier bytea NOT NULL DEFAULT '\x'::bytea CHECK (length(tree_frontier) % 32 = 0);

CREATE TABLE ledger_tree_hashes (
    ledger_id  text COLLATE "C" NOT NULL,
    hash_index bigint NOT NULL CHECK (hash_index >= 0),
    hash       bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (ledger_id, hash_index)
);

-- Append-only, as the events are.
CREATE TRIGGER ledger_tree_hashes_append_only
    BEFORE UPDATE OR DELETE ON ledger_tree_hashes
    FOR EACH ROW EXECUTE FUNCTION events_reject_change();
CREATE TRIGGER ledger_tree_hashes_no_truncate
    BEFORE TRUNCATE ON ledger_tree_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION events_reject_change();

-- The last checkpoint the service signed per ledger. Before it signs a new
-- one it checks the signature of this one with its own key and that the
-- current tree extends it: rows here are only as good as that signature.
CREATE TABLE ledger_checkpoints (
    ledger_id text COLLATE "C" PRIMARY KEY,
    tree_size bigint NOT NULL CHECK (tree_size >= 0),
    root_hash bytea NOT NULL CHECK (length(root_hash) = 32),
    note      text NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT ON ledger_tree_hashes TO saas_api_app;
GRANT SELECT, INSERT, UPDATE ON ledger_checkpoints TO saas_api_app;

-- Backfill the trees of the events that exist. Writers lock a ledgers row
-- before they append, and this lock waits for them and keeps them out
-- until the migration commits, so no event escapes the backfill. It costs
-- about two inserts per event (docs/audit.md gives a figure); run it at a
-- quiet moment on a large database.
LOCK TABLE ledgers IN EXCLUSIVE MODE;

DO $$
DECLARE
    l        record;
    e        record;
    frontier bytea[];
    n        bigint;
    h        bytea;
    idx      bigint;
    k        bigint;
    lvl      int;
BEGIN
    FOR l IN SELECT ledger_id FROM ledgers ORDER BY ledger_id LOOP
        frontier := '{}';
        n := 0;
        FOR e IN SELECT hash FROM events WHERE ledger_id = l.ledger_id ORDER BY sequence LOOP
            -- The leaf hash, at tlog's stored-hash index of record n,
            -- 2n - popcount(n).
            h := sha256('\x00'::bytea || e.hash);
            idx := 2 * n - length(replace(n::bit(64)::text, '0', ''));
            INSERT INTO ledger_tree_hashes VALUES (l.ledger_id, idx, h);
            -- Every trailing 1 bit of n closes a complete subtree with the
            -- last frontier entry; its root is stored at the next index.
            k := n;
            lvl := 0;
            WHILE k & 1 = 1 LOOP
                h := sha256('\x01'::bytea || frontier[array_length(frontier, 1)] || h);
                frontier := frontier[1:array_length(frontier, 1) - 1];
                lvl := lvl + 1;
                k := k >> 1;
                INSERT INTO ledger_tree_hashes VALUES (l.ledger_id, idx + lvl, h);
            END LOOP;
            frontier := frontier || h;
            n := n + 1;
        END LOOP;
        UPDATE ledgers SET tree_size = n,
            tree_frontier = (SELECT coalesce(string_agg(f, '\x'::bytea ORDER BY i), '\x'::bytea)
                             FROM unnest(frontier) WITH ORDINALITY AS t(f, i))
        WHERE ledger_id = l.ledger_id;
    END LOOP;
END
$$;
