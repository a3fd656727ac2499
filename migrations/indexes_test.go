package migrations_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/saasapi/saasapi/internal/testdb"
)

func TestMain(m *testing.M) { os.Exit(testdb.Run(m)) }

// indexUse is an index and the query of the service it serves, in the
// shape the service sends it (docs/performance.md, "Indexes").
type indexUse struct {
	index, query string
	args         []any
	// set, if not empty, is a planner setting for the check (SET LOCAL).
	set string
}

// uses documents every index that a write maintains by a query that
// needs it. An index that serves no query costs every write and buys
// nothing; one missing here fails TestEveryIndexServesAQuery.
var uses = []indexUse{
	// events: the audit list (unfiltered), the export, the cursor.
	{"events_pkey", `SELECT sequence FROM events WHERE ledger_id = $1 ORDER BY sequence DESC LIMIT 51`, []any{"l1"}, ""},
	// A replay (rebuild, verify) reads every event in position order.
	{"events_position_key", `SELECT sequence FROM events WHERE position > $1 ORDER BY position LIMIT 5000`, []any{0}, ""},
	// The stream-version guard, and the audit target_id filter.
	{"events_stream_key", `SELECT sequence FROM events WHERE ledger_id = $1 AND stream_id = $2 ORDER BY sequence DESC LIMIT 51`,
		[]any{"l1", "s1"}, ""},
	{"events_audit_action_idx", `SELECT sequence FROM events WHERE ledger_id = $1 AND event_type = $2 ORDER BY sequence DESC LIMIT 51`,
		[]any{"l1", "project.created"}, ""},
	{"events_audit_target_type_idx", `SELECT sequence FROM events WHERE ledger_id = $1 AND stream_type = $2
		ORDER BY sequence DESC LIMIT 51`, []any{"l1", "organisation"}, ""},
	{"events_audit_actor_user_idx", `SELECT sequence FROM events WHERE ledger_id = $1 AND actor_user_id = $2
		ORDER BY sequence DESC LIMIT 51`, []any{"l1", "u1"}, ""},
	{"events_audit_actor_api_key_idx", `SELECT sequence FROM events WHERE ledger_id = $1 AND actor_api_key_id = $2
		ORDER BY sequence DESC LIMIT 51`, []any{"l1", "k1"}, ""},
	{"events_audit_time_idx", `SELECT min(sequence) FROM events WHERE ledger_id = $1 AND occurred_at >= $2`,
		[]any{"l1", time.Now()}, ""},
	// The ledger lock.
	{"ledgers_pkey", `SELECT last_sequence FROM ledgers WHERE ledger_id = $1 FOR UPDATE`, []any{"l1"}, ""},
	// The Merkle tree: every proof and the check before a checkpoint read
	// the stored hashes they need by index, in one query.
	{"ledger_tree_hashes_pkey", `SELECT i.n, h.hash FROM unnest($2::bigint[]) WITH ORDINALITY AS i(idx, n)
		JOIN ledger_tree_hashes h ON h.ledger_id = $1 AND h.hash_index = i.idx`, []any{"l1", []int64{3, 7, 12}}, ""},
	// The last checkpoint signed for a ledger, read before signing the next.
	{"ledger_checkpoints_pkey", `SELECT note FROM ledger_checkpoints WHERE ledger_id = $1`, []any{"l1"}, ""},
	// The gate (a user still active), GET /me.
	{"users_pkey", `SELECT is_active FROM users WHERE id = $1`, []any{"u1"}, ""},
	// Sign-in, and the 409 email taken.
	{"users_email_key", `SELECT id FROM users WHERE email = $1`, []any{"a@example.com"}, ""},
	{"user_credentials_pkey", `SELECT password_hash FROM user_credentials WHERE user_id = $1`, []any{"u1"}, ""},
	// GET /me/audit-events (the person's own data key), erasure, rebuild.
	{"person_keys_pkey", `SELECT wrapped_key FROM person_keys WHERE user_id = $1`, []any{"u1"}, ""},
	// A checkpoint that no longer extends: was it resealed away? audit
	// verify --checkpoint: the last reseal of the ledger.
	{"ledger_reseals_pkey", `SELECT new_root_hash FROM ledger_reseals WHERE ledger_id = $1 ORDER BY id DESC LIMIT 1`, []any{"l1"}, ""},
	// The gate (the organisation exists), GET /orgs/{id}, the projection.
	{"organisations_pkey", `SELECT name FROM organisations WHERE id = $1`, []any{"o1"}, ""},
	// The projection of member.role_changed and member.removed.
	{"memberships_pkey", `SELECT role FROM memberships WHERE organisation_id = $1 AND id = $2`, []any{"o1", "m1"}, ""},
	// The gate (the caller's role), the 409 already a member, and GET
	// /orgs and GET /me (the organisations of a user).
	{"memberships_user_organisation_key", `SELECT role FROM memberships WHERE organisation_id = $1 AND user_id = $2`,
		[]any{"o1", "u1"}, ""},
	{"memberships_user_organisation_key", `SELECT organisation_id FROM memberships WHERE user_id = $1`, []any{"u1"}, ""},
	// GET project, the projections of updates and deletes.
	// (Fenced from the live condition, which would let a partial index
	// led by the organisation compete: projections.projectRow.)
	{"projects_pkey", `SELECT name FROM (SELECT * FROM projects WHERE organisation_id = $1 AND id = $2 OFFSET 0) p
		WHERE deleted_at IS NULL`,
		[]any{"o1", "p1"}, ""},
	{"projects_created_idx", `SELECT id FROM projects WHERE organisation_id = $1 AND deleted_at IS NULL
		ORDER BY created_at DESC, id DESC LIMIT 21`, []any{"o1"}, ""},
	{"projects_name_idx", `SELECT id FROM projects WHERE organisation_id = $1 AND deleted_at IS NULL
		ORDER BY lower(name), id LIMIT 21`, []any{"o1"}, ""},
	// The status filter, and sort_by=status (status, then created_at).
	{"projects_status_created_idx", `SELECT id FROM projects WHERE organisation_id = $1 AND deleted_at IS NULL AND status = $2
		ORDER BY created_at DESC, id DESC LIMIT 21`, []any{"o1", "archived"}, ""},
	{"projects_status_name_idx", `SELECT id FROM projects WHERE organisation_id = $1 AND deleted_at IS NULL AND status = $2
		ORDER BY lower(name), id LIMIT 21`, []any{"o1", "archived"}, ""},
	// The name filter, a substring.
	{"projects_name_trgm_idx", `SELECT count(*) FROM projects WHERE organisation_id = $1 AND deleted_at IS NULL
		AND lower(name) LIKE lower($2)`, []any{"o1", "%needle%"},
		""},
	{"project_counts_pkey", `SELECT sum(live) FROM project_counts WHERE organisation_id = $1 AND status = $2`, []any{"o1", "active"}, ""},
	{"audit_counts_pkey", `SELECT events FROM audit_counts WHERE ledger_id = $1 AND filter = $2 AND value = $3`,
		[]any{"o1", "action", "project.created"}, ""},
	// The gate (a key not revoked), the API key list and its projection.
	{"api_keys_pkey", `SELECT revoked_at FROM api_keys WHERE organisation_id = $1 AND id = $2`, []any{"o1", "k1"}, ""},
	// Authentication with a key.
	{"api_key_secrets_pkey", `SELECT api_key_id FROM api_key_secrets WHERE key_hash = $1`, []any{make([]byte, 32)}, ""},
	{"api_key_usage_pkey", `SELECT last_used_at FROM api_key_usage WHERE organisation_id = $1 AND api_key_id = $2`,
		[]any{"o1", "k1"}, ""},
	// The idempotency claim, and the pruning of expired records.
	{"idempotency_records_pkey", `SELECT status_code FROM idempotency_records WHERE principal_type = $1 AND principal_id = $2
		AND organisation_id = $3 AND idempotency_key = $4 AND method = $5 AND path = $6`,
		[]any{"user", "u1", "o1", "k", "POST", "/orgs"}, ""},
	{"idempotency_records_expires_idx", `SELECT ctid FROM idempotency_records WHERE expires_at <= $1 LIMIT 1000`,
		[]any{time.Now()}, ""},
}

// constraints are indexes that exist for a uniqueness the service relies
// on rather than for a query.
var constraints = map[string]string{
	"events_event_id_key":                            "an event's ID names it in the audit API and exports",
	"organisations_slug_key":                         "409 slug already taken",
	"api_key_secrets_organisation_id_api_key_id_key": "one secret per key (written once, with the key)",
	"data_key_check_pkey":                            "one key check value per database",
}

// TestEveryIndexServesAQuery: each index of the schema is either used by
// the planner for the query documented for it (EXPLAIN, with sequential
// scans disabled so that an empty table does not hide the choice), or a
// uniqueness constraint; a new index must be documented here.
func TestEveryIndexServesAQuery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	rows, err := db.Pool.Query(ctx, `SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename <> 'schema_version'`)
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		all = append(all, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// Tables of some size, with statistics, so that the planner's choice
	// reflects the shapes of the data rather than the defaults of empty
	// tables: 20 ledgers of 1,000 events in streams of 4, 200,000 projects
	// in 2 organisations, 20 members in each of 20.
	if _, err := db.Pool.Exec(ctx, `
		INSERT INTO events (event_id, ledger_id, ledger_type, sequence, stream_type, stream_id, stream_version,
			event_type, actor_type, actor_user_id, occurred_at, payload, prev_hash, hash)
		SELECT 'e' || i, 'l' || (i % 20), 'organisation', i / 20 + 1, 'project', 's' || (i / 4), i % 4 + 1,
			(ARRAY['project.created', 'project.updated', 'member.added', 'api_key.created'])[i % 4 + 1],
			'user', 'u' || (i % 50), now() - i * interval '1 second', '{}', decode(repeat('00', 32), 'hex'),
			decode(repeat('00', 32), 'hex')
		FROM generate_series(0, 19999) i;
		INSERT INTO projects (organisation_id, id, name, status, version, created_at, updated_at)
		SELECT 'o' || (i % 2), 'p' || i, 'project ' || md5(i::text), CASE WHEN i % 10 = 0 THEN 'archived' ELSE 'active' END,
			1, now() - i * interval '1 second', now()
		FROM generate_series(0, 199999) i;
		INSERT INTO memberships (organisation_id, id, user_id, role, version, created_at, updated_at)
		SELECT 'o' || (i % 20), 'm' || i, 'u' || i, 'member', 1, now(), now() FROM generate_series(0, 399) i;
		ANALYZE`); err != nil {
		t.Fatal(err)
	}
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, u := range uses {
		documented[u.index] = true
		var plan string
		set := "enable_indexscan = on"
		if u.set != "" {
			set = u.set
		}
		if _, err := conn.Exec(ctx, `SET `+set); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, `EXPLAIN (FORMAT JSON) `+u.query, u.args...).Scan(&plan); err != nil {
			t.Fatalf("%s: %v", u.index, err)
		}
		if !strings.Contains(plan, `"Index Name": "`+u.index+`"`) {
			t.Errorf("the query documented for %s does not use it:\n%s\nplan: %s", u.index, u.query, plan)
		}
	}
	for name := range constraints {
		documented[name] = true
	}
	for _, name := range all {
		if !documented[name] {
			t.Errorf("index %s serves no documented query: document it here and in docs/performance.md, or drop it", name)
		}
	}
	for name := range documented {
		if !slices.Contains(all, name) {
			t.Errorf("documented index %s does not exist", name)
		}
	}
}
