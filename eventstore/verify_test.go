package eventstore_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/internal/testdb"
)

// appendProjectEvents appends n project.updated events to the ledger in
// one transaction, numbering the stream's versions from fromVersion.
func appendProjectEvents(ctx context.Context, t *testing.T, db *testdb.DB, ledger saasapi.ID, create bool,
	stream saasapi.ID, fromVersion int64, n int,
) []saasapi.Event {
	t.Helper()
	evs := make([]saasapi.NewEvent, n)
	for i := range evs {
		evs[i] = saasapi.NewEvent{
			LedgerID: ledger, LedgerType: saasapi.LedgerOrganisation, StreamType: saasapi.StreamProject,
			StreamID: stream, StreamVersion: fromVersion + int64(i), Type: saasapi.EventProjectUpdated,
			Actor:     saasapi.Actor{Type: saasapi.PrincipalUser, UserID: saasapi.NewID()},
			RequestID: fmt.Sprintf("req-%d", fromVersion+int64(i)), OccurredAt: time.Now(),
			Data: saasapi.ProjectUpdated{ChangedFields: []string{"status"}},
		}
	}
	recorded, err := appendTo(ctx, db.Pool, create, evs...)
	if err != nil {
		t.Fatal(err)
	}
	return recorded
}

func TestVerifyIntactLedgers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)

	// One ledger longer than a read batch, in two transactions; a second
	// organisation; a user ledger; and more ledgers without events than a
	// batch of heads holds.
	big, small := saasapi.NewID(), saasapi.NewID()
	stream := saasapi.NewID()
	appendProjectEvents(ctx, t, db, big, true, stream, 1, 3000)
	appendProjectEvents(ctx, t, db, big, false, stream, 3001, 2001)
	appendProjectEvents(ctx, t, db, small, true, saasapi.NewID(), 1, 3)
	user := saasapi.NewID()
	if _, err := appendTo(ctx, db.Pool, true, saasapi.NewEvent{
		LedgerID: user, LedgerType: saasapi.LedgerUser, StreamType: saasapi.StreamUser, StreamID: user,
		StreamVersion: 1, Type: saasapi.EventUserRegistered, Actor: saasapi.Actor{Type: saasapi.PrincipalUser, UserID: user},
		OccurredAt: time.Now(), Data: saasapi.UserRegistered{Email: "u@example.com", DisplayName: "U"},
	}); err != nil {
		t.Fatal(err)
	}
	const empties = 5001
	b := &pgx.Batch{}
	for range empties {
		eventstore.NewLedger(b, saasapi.NewID(), saasapi.LedgerOrganisation)
	}
	if err := db.Pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}

	for ledger, want := range map[saasapi.ID]int64{big: 5001, small: 3, user: 1} {
		if n, err := eventstore.VerifyLedger(ctx, db.Pool, ledger); err != nil || n != want {
			t.Errorf("VerifyLedger(%s) = %d, %v; want %d, nil", ledger, n, err, want)
		}
	}
	if _, err := eventstore.VerifyLedger(ctx, db.Pool, saasapi.NewID()); !errors.Is(err, eventstore.ErrLedgerNotFound) {
		t.Errorf("VerifyLedger of an unknown ledger: %v, want ErrLedgerNotFound", err)
	}

	var seen []saasapi.ID
	counts := map[saasapi.ID]int64{}
	ledgers, events, err := eventstore.VerifyAll(ctx, db.Pool, func(id saasapi.ID, n int64) {
		seen = append(seen, id)
		counts[id] = n
	})
	if err != nil || ledgers != 3+empties || events != 5001+3+1 {
		t.Fatalf("VerifyAll = %d ledgers, %d events, %v; want %d, %d, nil", ledgers, events, err, 3+empties, 5001+3+1)
	}
	if !slices.IsSorted(seen) || len(seen) != 3+empties || counts[big] != 5001 || counts[small] != 3 || counts[user] != 1 {
		t.Errorf("onLedger saw %d ledgers (sorted: %v), counts %d %d %d", len(seen), slices.IsSorted(seen),
			counts[big], counts[small], counts[user])
	}
}

// tamper runs statements as the superuser with the append-only triggers
// disabled, in one transaction: the attack the chain must reveal. $1 is the
// ledger.
func tamper(ctx context.Context, t *testing.T, db *testdb.DB, ledger saasapi.ID, stmts ...string) {
	t.Helper()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, s := range []string{`ALTER TABLE events DISABLE TRIGGER events_append_only`,
		`ALTER TABLE ledger_tree_hashes DISABLE TRIGGER ledger_tree_hashes_append_only`} {
		if _, err := tx.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s, ledger); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	for _, s := range []string{`ALTER TABLE events ENABLE TRIGGER events_append_only`,
		`ALTER TABLE ledger_tree_hashes ENABLE TRIGGER ledger_tree_hashes_append_only`} {
		if _, err := tx.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// canonicalSQL is the canonical form in SQL, as docs/audit.md defines it;
// TestVerifyDetectsTampering uses it to forge a consistent hash.
const canonicalSQL = `convert_to(concat_ws(E'\n',
	'saasapi-event-v1', event_id, ledger_type, ledger_id, sequence::text,
	stream_type, stream_id, stream_version::text, event_type, schema_version::text,
	actor_type, coalesce(actor_user_id, ''), coalesce(actor_api_key_id, ''), coalesce(request_id, ''),
	to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), payload::text), 'UTF8')`

func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	const where = ` WHERE ledger_id = $1 AND sequence = `
	cases := []struct {
		name   string
		stmts  []string
		seq    int64
		reason string
		// chainSQL is what the ledger-chain recipe of docs/audit.md prints;
		// it does not read the head, so head-only damage looks intact to it.
		chainSQL string
	}{
		{"payload altered", []string{`UPDATE events SET payload = '{"changed_fields":["name"]}'` + where + `3`},
			3, "stored hash does not match", "first bad sequence 3"},
		{"event deleted", []string{`DELETE FROM events` + where + `3`},
			3, "event is missing", "first bad sequence 3"},
		{"last event deleted", []string{`DELETE FROM events` + where + `5`},
			5, "event is missing", ""},
		{"events reordered", []string{
			`UPDATE events SET sequence = 1000` + where + `2`,
			`UPDATE events SET sequence = 2` + where + `3`,
			`UPDATE events SET sequence = 3` + where + `1000`,
		}, 2, "prev_hash does not equal the hash of sequence 1", "first bad sequence 2"},
		{"prev_hash changed", []string{`UPDATE events SET prev_hash = sha256('forged')` + where + `4`},
			4, "prev_hash does not equal the hash of sequence 3", "first bad sequence 4"},
		{"first prev_hash changed", []string{`UPDATE events SET prev_hash = sha256('forged')` + where + `1`},
			1, "prev_hash is not the zero hash", "first bad sequence 1"},
		{"edited and rehashed", []string{
			`UPDATE events SET payload = '{"changed_fields":["name"]}'` + where + `3`,
			`UPDATE events SET hash = sha256(prev_hash || ` + canonicalSQL + `)` + where + `3`,
		}, 3, "stored tree hash 3 does not match the tree recomputed from the events", "first bad sequence 4"},
		{"actor altered", []string{`UPDATE events SET actor_user_id = '` + strings.Repeat("A", 26) + `'` + where + `2`},
			2, "stored hash does not match", "first bad sequence 2"},
		{"time altered", []string{`UPDATE events SET occurred_at = occurred_at - interval '1 day'` + where + `2`},
			2, "stored hash does not match", "first bad sequence 2"},
		{"type altered", []string{`UPDATE events SET event_type = 'project.deleted'` + where + `4`},
			4, "stored hash does not match", "first bad sequence 4"},
		{"event copied past the head", []string{`INSERT INTO events (event_id, ledger_id, ledger_type, sequence,
				stream_type, stream_id, stream_version, event_type, schema_version, actor_type, actor_user_id,
				actor_api_key_id, request_id, occurred_at, payload, prev_hash, hash)
			SELECT '` + strings.Repeat("B", 26) + `', ledger_id, ledger_type, 6, stream_type, stream_id, 100, event_type,
				schema_version, actor_type, actor_user_id, actor_api_key_id, request_id, occurred_at, payload, prev_hash, hash
			FROM events` + where + `5`}, 6, "prev_hash does not equal the hash of sequence 5", "first bad sequence 6"},
		{"tree hash altered", []string{
			`UPDATE ledger_tree_hashes SET hash = sha256('forged') WHERE ledger_id = $1 AND hash_index = 5`},
			4, "stored tree hash 5 does not match", ""},
		{"tree hash deleted", []string{
			`DELETE FROM ledger_tree_hashes WHERE ledger_id = $1 AND hash_index = 7`},
			5, "tree hash 7 is missing", ""},
		{"tree frontier altered", []string{`UPDATE ledgers SET tree_frontier = sha256('forged') || sha256('forged') WHERE ledger_id = $1`},
			5, "tree_frontier does not match", ""},
		{"tree size rewound", []string{`UPDATE ledgers SET tree_size = 4 WHERE ledger_id = $1`},
			5, "tree_size 4 does not equal the number of events 5", ""},
		{"head hash changed", []string{`UPDATE ledgers SET last_hash = sha256('forged') WHERE ledger_id = $1`},
			5, "ledger head hash", ""},
		{"head behind", []string{`UPDATE ledgers SET last_sequence = 4 WHERE ledger_id = $1`},
			5, "beyond the ledger head", ""},
		{"ledger row deleted", []string{`DELETE FROM ledgers WHERE ledger_id = $1`},
			1, "no row in ledgers", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := testdb.New(t)
			ledger, stream := saasapi.NewID(), saasapi.NewID()
			appendProjectEvents(ctx, t, db, ledger, true, stream, 1, 2)
			appendProjectEvents(ctx, t, db, ledger, false, stream, 3, 3)
			// Intact ledgers on either side of it in ledger order.
			appendProjectEvents(ctx, t, db, saasapi.ID(strings.Repeat("0", 26)), true, saasapi.NewID(), 1, 2)
			appendProjectEvents(ctx, t, db, saasapi.ID(strings.Repeat("Z", 26)), true, saasapi.NewID(), 1, 2)
			if _, err := eventstore.VerifyLedger(ctx, db.Pool, ledger); err != nil {
				t.Fatalf("before tampering: %v", err)
			}
			tamper(ctx, t, db, ledger, c.stmts...)

			check := func(fn string, err error) {
				t.Helper()
				var ce *eventstore.ChainError
				if !errors.As(err, &ce) || ce.LedgerID != ledger || ce.Sequence != c.seq || !strings.Contains(ce.Reason, c.reason) {
					t.Errorf("%s: got %v; want a ChainError for ledger %s at sequence %d, reason containing %q",
						fn, err, ledger, c.seq, c.reason)
				}
			}
			_, err := eventstore.VerifyLedger(ctx, db.Pool, ledger)
			check("VerifyLedger", err)
			ledgers, _, err := eventstore.VerifyAll(ctx, db.Pool, nil)
			check("VerifyAll", err)
			if ledgers != 1 {
				t.Errorf("VerifyAll verified %d ledgers before the tampered one, want 1", ledgers)
			}
			if c.chainSQL != "" {
				if got := runRecipe(t, "ledger-chain", db.URL, ledger, 0); got != c.chainSQL+"\n" {
					t.Errorf("ledger-chain recipe printed %q, want %q", got, c.chainSQL)
				}
			}
		})
	}
}

// TestHashRecipe runs the psql recipes of docs/audit.md, as they stand in
// the document, against real events, and compares with the stored hashes:
// the documented definition of the hash cannot drift from the code.
func TestHashRecipe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	org, user, project := saasapi.NewID(), saasapi.NewID(), saasapi.NewID()
	// Fields that are easy to get wrong: NULL actor columns and request ID,
	// non-ASCII text, characters that Go's JSON encoder escapes, and
	// timestamps whose fraction has trailing or leading zeros.
	description := "Zürich — ✓ 🚀 <b>&\"quoted\"\nsecond line\ttab \\ backslash"
	name := "naïve"
	orgEvents, err := appendTo(ctx, db.Pool, true,
		saasapi.NewEvent{LedgerID: org, LedgerType: saasapi.LedgerOrganisation, StreamType: saasapi.StreamProject,
			StreamID: project, StreamVersion: 1, Type: saasapi.EventProjectCreated,
			Actor:      saasapi.Actor{Type: saasapi.PrincipalAPIKey, APIKeyID: saasapi.NewID()},
			RequestID:  "req-ünïcode",
			OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.UTC),
			Data:       saasapi.ProjectCreated{ProjectName: "Grüße", Status: "active", Description: &description}},
		saasapi.NewEvent{LedgerID: org, LedgerType: saasapi.LedgerOrganisation, StreamType: saasapi.StreamProject,
			StreamID: project, StreamVersion: 2, Type: saasapi.EventProjectUpdated,
			Actor:      saasapi.Actor{Type: saasapi.PrincipalSystem},
			OccurredAt: time.Date(2026, 1, 2, 3, 4, 6, 1000, time.UTC),
			Data: saasapi.ProjectUpdated{ChangedFields: []string{"name", "description"}, Name: &name,
				Description: saasapi.OptionalString{Set: true}}},
		saasapi.NewEvent{LedgerID: org, LedgerType: saasapi.LedgerOrganisation, StreamType: saasapi.StreamProject,
			StreamID: project, StreamVersion: 3, Type: saasapi.EventProjectDeleted,
			Actor:      saasapi.Actor{Type: saasapi.PrincipalUser, UserID: user},
			RequestID:  "req-3",
			OccurredAt: time.Date(2026, 1, 2, 3, 4, 7, 0, time.UTC),
			Data:       saasapi.ProjectDeleted{ProjectName: "naïve"}})
	if err != nil {
		t.Fatal(err)
	}
	userEvents, err := appendTo(ctx, db.Pool, true,
		saasapi.NewEvent{LedgerID: user, LedgerType: saasapi.LedgerUser, StreamType: saasapi.StreamUser,
			StreamID: user, StreamVersion: 1, Type: saasapi.EventUserLoginFailed,
			Actor: saasapi.Actor{Type: saasapi.PrincipalAnonymous}, OccurredAt: time.Now(),
			Data: saasapi.UserLoginFailed{Reason: "invalid_password"}})
	if err != nil {
		t.Fatal(err)
	}

	for _, e := range append(orgEvents, userEvents...) {
		want := hex.EncodeToString(e.Hash)
		got := runRecipe(t, "event-hash", db.URL, e.LedgerID, e.Sequence)
		if wantOut := want + "  -\n" + want + "\n"; got != wantOut {
			t.Errorf("event-hash recipe for %s/%d printed\n%s\nwant\n%s", e.LedgerID, e.Sequence, got, wantOut)
		}
	}
	last := orgEvents[len(orgEvents)-1]
	if got, want := runRecipe(t, "ledger-chain", db.URL, org, 0),
		fmt.Sprintf("intact: 3 events, head %x\n", last.Hash); got != want {
		t.Errorf("ledger-chain recipe printed %q, want %q", got, want)
	}
}

// runRecipe runs the shell block of docs/audit.md marked
// "<!-- recipe: name" with DATABASE_URL, LEDGER and SEQ set, under bash with
// errexit and pipefail, and returns its standard output.
func runRecipe(t *testing.T, name, databaseURL string, ledger saasapi.ID, seq int64) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "docs", "audit.md"))
	if err != nil {
		t.Fatal(err)
	}
	marker := "<!-- recipe: " + name + " "
	_, rest, ok := strings.Cut(string(doc), marker)
	if !ok {
		t.Fatalf("docs/audit.md has no %q block", marker)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatalf("the %s recipe is not followed by a sh block", name)
	}
	block, _, ok := strings.Cut(rest, "\n```\n")
	if !ok {
		t.Fatalf("the %s recipe's block does not end", name)
	}

	path := os.Getenv("PATH")
	if _, err := exec.LookPath("psql"); err != nil {
		// Debian puts the client in the server's directory too.
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
		if len(dirs) == 0 {
			t.Skip("psql is not installed (on PATH or under /usr/lib/postgresql/*/bin): the recipe cannot run")
		}
		path = filepath.Dir(dirs[len(dirs)-1]) + string(os.PathListSeparator) + path
	}
	cmd := exec.CommandContext(t.Context(), "bash", "-e", "-o", "pipefail", "-c", block)
	cmd.Env = append(os.Environ(), "PATH="+path, "DATABASE_URL="+databaseURL,
		"LEDGER="+string(ledger), fmt.Sprintf("SEQ=%d", seq))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the %s recipe failed: %v\n%s", name, err, stderr.String())
	}
	return string(out)
}
