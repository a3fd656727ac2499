package eventstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/internal/dbpool"
	"github.com/saasapi/saasapi/internal/testdb"
)

func TestMain(m *testing.M) { os.Exit(testdb.Run(m)) }

// appendEvents appends events of one stream to a ledger in its own
// transaction, creating the ledger when create is set.
func appendEvents(ctx context.Context, pool *pgxpool.Pool, ledger saasapi.ID, create bool, stream saasapi.ID, fromVersion int64, n int) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	b := &pgx.Batch{}
	var head eventstore.Head
	if create {
		head = eventstore.NewLedger(b, ledger, saasapi.LedgerOrganisation)
	} else if head, err = eventstore.LockLedger(ctx, tx, ledger); err != nil {
		return err
	}
	evs := make([]saasapi.NewEvent, n)
	for i := range evs {
		evs[i] = saasapi.NewEvent{
			LedgerID: ledger, LedgerType: saasapi.LedgerOrganisation,
			StreamType: saasapi.StreamProject, StreamID: stream, StreamVersion: fromVersion + int64(i),
			Type:  saasapi.EventProjectUpdated,
			Actor: saasapi.Actor{Type: saasapi.PrincipalSystem}, RequestID: "req-1", OccurredAt: time.Now(),
			Data: saasapi.ProjectUpdated{ChangedFields: []string{"name"}},
		}
	}
	if _, err := eventstore.Append(b, &head, evs); err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func TestAppendGaplessSequenceAndChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	ledger, stream := saasapi.NewID(), saasapi.NewID()
	if err := appendEvents(ctx, db.Pool, ledger, true, stream, 1, 3); err != nil {
		t.Fatalf("first append: %v", err)
	}
	if err := appendEvents(ctx, db.Pool, ledger, false, stream, 4, 2); err != nil {
		t.Fatalf("second append: %v", err)
	}
	evs, err := eventstore.ReadLedger(ctx, db.Pool, ledger, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 5 {
		t.Fatalf("got %d events, want 5", len(evs))
	}
	prev := eventstore.ZeroHash
	for i, e := range evs {
		if e.Sequence != int64(i+1) {
			t.Errorf("event %d has sequence %d, want %d", i, e.Sequence, i+1)
		}
		if !bytes.Equal(e.PrevHash, prev) {
			t.Errorf("event %d: prev_hash does not equal the previous event's hash", e.Sequence)
		}
		if want := eventstore.Hash(prev, eventstore.Canonical(e)); !bytes.Equal(e.Hash, want) {
			t.Errorf("event %d: stored hash %x, recomputed from the row %x", e.Sequence, e.Hash, want)
		}
		prev = e.Hash
	}
	head, err := headOf(ctx, db.Pool, ledger)
	if err != nil {
		t.Fatal(err)
	}
	if head.Sequence != 5 || !bytes.Equal(head.Hash, prev) {
		t.Errorf("ledger head is (%d, %x), want (5, %x)", head.Sequence, head.Hash, prev)
	}
}

func headOf(ctx context.Context, pool *pgxpool.Pool, ledger saasapi.ID) (eventstore.Head, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return eventstore.Head{}, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	return eventstore.LockLedger(ctx, tx, ledger)
}

func TestConcurrentAppendAtSameStreamVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	ledger, stream := saasapi.NewID(), saasapi.NewID()
	if err := appendEvents(ctx, db.Pool, ledger, true, stream, 1, 1); err != nil {
		t.Fatal(err)
	}
	const writers = 2
	errs := make([]error, writers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range writers {
		wg.Go(func() {
			<-start
			errs[i] = appendEvents(ctx, db.Pool, ledger, false, stream, 2, 1)
		})
	}
	close(start)
	wg.Wait()
	ok, conflicts := 0, 0
	for _, err := range errs {
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &pgErr) && pgErr.Code == "23505" &&
			pgErr.ConstraintName == "events_stream_key":
			conflicts++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 || conflicts != 1 {
		t.Fatalf("got %d successes and %d version conflicts, want exactly 1 and 1", ok, conflicts)
	}
	evs, err := eventstore.ReadLedger(ctx, db.Pool, ledger, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[1].Sequence != 2 || evs[1].StreamVersion != 2 {
		t.Fatalf("ledger holds %d events; want the first and one winner at sequence 2", len(evs))
	}
}

// TestEventsAreAppendOnly proves both guards: the trigger stops even the
// schema owner, and the application role lacks the privilege altogether.
func TestEventsAreAppendOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	if err := appendEvents(ctx, db.Pool, saasapi.NewID(), true, saasapi.NewID(), 1, 1); err != nil {
		t.Fatal(err)
	}
	app, err := dbpool.Open(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	var role string
	if err := app.QueryRow(ctx, "SELECT current_user").Scan(&role); err != nil || role != "saas_api_app" {
		t.Fatalf("application pool runs as %q (%v), want saas_api_app", role, err)
	}
	statements := map[string]string{
		"UPDATE":   `UPDATE events SET event_type = 'tampered'`,
		"DELETE":   `DELETE FROM events`,
		"TRUNCATE": `TRUNCATE events`,
	}
	for name, sql := range statements {
		for who, pool := range map[string]*pgxpool.Pool{"owner": db.Pool, "application role": app} {
			_, err := pool.Exec(ctx, sql)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Errorf("%s as %s: got %v, want insufficient_privilege (42501)", name, who, err)
			}
		}
	}
	if _, err := app.Exec(ctx, `INSERT INTO events (event_id) VALUES ('x')`); err == nil {
		t.Error("a malformed insert succeeded")
	}
	n, err := eventstore.CountEvents(ctx, db.Pool)
	if err != nil || n != 1 {
		t.Fatalf("events after the attempts: %d (%v), want 1", n, err)
	}
}

func TestCanonicalIsStable(t *testing.T) {
	t.Parallel()
	e := saasapi.Event{
		ID: "01J00000000000000000000000", LedgerID: "01J00000000000000000000001", LedgerType: "organisation",
		Sequence: 7, StreamType: "project", StreamID: "01J00000000000000000000002", StreamVersion: 3,
		Type: "project.updated", SchemaVersion: 1, Actor: saasapi.Actor{Type: "user", UserID: "01J00000000000000000000003"},
		RequestID: "req", OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
		Payload: []byte(`{"changed_fields":["name"]}`),
	}
	want := "saasapi-event-v1\n01J00000000000000000000000\norganisation\n01J00000000000000000000001\n7\nproject\n" +
		"01J00000000000000000000002\n3\nproject.updated\n1\nuser\n01J00000000000000000000003\n\nreq\n" +
		"2026-01-02T03:04:05.000006Z\n" + `{"changed_fields":["name"]}`
	if got := string(eventstore.Canonical(e)); got != want {
		t.Fatalf("canonical form changed:\n got %q\nwant %q", got, want)
	}
}
