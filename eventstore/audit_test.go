package eventstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/internal/testdb"
	"github.com/saasapi/saasapi/projections"
)

// appendTo appends events to a ledger in one transaction, creating the
// ledger (of the events' ledger type) when create is set, and applies them
// to the read tables (the audit totals among them), as a command would.
func appendTo(ctx context.Context, pool *pgxpool.Pool, create bool, evs ...saasapi.NewEvent) ([]saasapi.Event, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	b := &pgx.Batch{}
	var head eventstore.Head
	if create {
		head = eventstore.NewLedger(b, evs[0].LedgerID, evs[0].LedgerType)
	} else if head, err = eventstore.LockLedger(ctx, tx, evs[0].LedgerID); err != nil {
		return nil, err
	}
	recorded, err := eventstore.Append(b, &head, evs)
	if err != nil {
		return nil, err
	}
	for _, e := range recorded {
		if err := projections.Apply(b, e); err != nil {
			return nil, err
		}
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return recorded, tx.Commit(ctx)
}

// grant returns the access an owner gets to read org's audit log.
func grant(t *testing.T, org saasapi.ID) saasapi.Access {
	t.Helper()
	a, err := saasapi.Authorize(saasapi.UserPrincipal(saasapi.NewID()), org, saasapi.RoleOwner, saasapi.PermReadAudit)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// sequences lists the sequences of events, in their order.
func sequences(evs []saasapi.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Sequence
	}
	return out
}

// auditFixture is an organisation ledger with a known mix of actions,
// targets, actors and times, one second apart from t0.
type auditFixture struct {
	org, u1, u2, key, p1, p2 saasapi.ID
	t0                       time.Time
	events                   []saasapi.Event
}

func newAuditFixture(ctx context.Context, t *testing.T, pool *pgxpool.Pool) auditFixture {
	t.Helper()
	f := auditFixture{
		org: saasapi.NewID(), u1: saasapi.NewID(), u2: saasapi.NewID(), key: saasapi.NewID(),
		p1: saasapi.NewID(), p2: saasapi.NewID(),
		t0: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
	}
	user := func(id saasapi.ID) saasapi.Actor { return saasapi.Actor{Type: saasapi.PrincipalUser, UserID: id} }
	key := saasapi.Actor{Type: saasapi.PrincipalAPIKey, APIKeyID: f.key}
	name := "renamed"
	type ev struct {
		stream  string
		id      saasapi.ID
		version int64
		typ     string
		actor   saasapi.Actor
		data    any
	}
	spec := []ev{
		{saasapi.StreamOrganisation, f.org, 1, saasapi.EventOrganisationCreated, user(f.u1), saasapi.OrganisationCreated{Name: "Acme", Slug: "acme-" + strings.ToLower(f.org.String())}},
		{saasapi.StreamMembership, saasapi.NewID(), 1, saasapi.EventMemberAdded, user(f.u1), saasapi.MemberAdded{UserID: f.u1, Role: saasapi.RoleOwner}},
		{saasapi.StreamAPIKey, f.key, 1, saasapi.EventAPIKeyCreated, user(f.u1), saasapi.APIKeyCreated{APIKeyName: "ci", KeyPrefix: "sk_test"}},
		{saasapi.StreamProject, f.p1, 1, saasapi.EventProjectCreated, key, saasapi.ProjectCreated{ProjectName: "one", Status: "active"}},
		{saasapi.StreamProject, f.p1, 2, saasapi.EventProjectUpdated, user(f.u2), saasapi.ProjectUpdated{ChangedFields: []string{"name"}, Name: &name}},
		{saasapi.StreamProject, f.p2, 1, saasapi.EventProjectCreated, user(f.u1), saasapi.ProjectCreated{ProjectName: "two", Status: "active"}},
		{saasapi.StreamProject, f.p1, 3, saasapi.EventProjectDeleted, key, saasapi.ProjectDeleted{ProjectName: "renamed"}},
	}
	for i, s := range spec {
		recorded, err := appendTo(ctx, pool, i == 0, saasapi.NewEvent{
			LedgerID: f.org, LedgerType: saasapi.LedgerOrganisation,
			StreamType: s.stream, StreamID: s.id, StreamVersion: s.version, Type: s.typ,
			Actor: s.actor, RequestID: fmt.Sprintf("req-%d", i+1), OccurredAt: f.t0.Add(time.Duration(i) * time.Second),
			Data: s.data,
		})
		if err != nil {
			t.Fatalf("append event %d: %v", i+1, err)
		}
		f.events = append(f.events, recorded...)
	}
	return f
}

func TestListAuditFilters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	f := newAuditFixture(ctx, t, db.Pool)
	// Another organisation's ledger, to prove the scope.
	newAuditFixture(ctx, t, db.Pool)
	at := func(s int) *time.Time { v := f.t0.Add(time.Duration(s) * time.Second); return &v }
	cases := []struct {
		name   string
		filter eventstore.AuditFilter
		want   []int64
	}{
		{"none", eventstore.AuditFilter{}, []int64{7, 6, 5, 4, 3, 2, 1}},
		{"action", eventstore.AuditFilter{Action: saasapi.EventProjectCreated}, []int64{6, 4}},
		{"target type", eventstore.AuditFilter{TargetType: saasapi.StreamProject}, []int64{7, 6, 5, 4}},
		{"target id", eventstore.AuditFilter{TargetID: f.p1}, []int64{7, 5, 4}},
		{"target type and id", eventstore.AuditFilter{TargetType: saasapi.StreamProject, TargetID: f.p1}, []int64{7, 5, 4}},
		{"target id of another type", eventstore.AuditFilter{TargetType: saasapi.StreamMembership, TargetID: f.p1}, []int64{}},
		{"actor user", eventstore.AuditFilter{ActorUserID: f.u1}, []int64{6, 3, 2, 1}},
		{"actor api key", eventstore.AuditFilter{ActorAPIKeyID: f.key}, []int64{7, 4}},
		{"since is inclusive", eventstore.AuditFilter{Since: at(3)}, []int64{7, 6, 5, 4}},
		{"until is exclusive", eventstore.AuditFilter{Until: at(3)}, []int64{3, 2, 1}},
		{"window", eventstore.AuditFilter{Since: at(2), Until: at(5)}, []int64{5, 4, 3}},
		{"empty window", eventstore.AuditFilter{Since: at(7)}, []int64{}},
		{"window and action", eventstore.AuditFilter{Action: saasapi.EventProjectCreated, Until: at(5)}, []int64{4}},
		{"combined", eventstore.AuditFilter{Action: saasapi.EventProjectCreated, ActorAPIKeyID: f.key}, []int64{4}},
		{"unknown action", eventstore.AuditFilter{Action: "nope"}, []int64{}},
	}
	a := grant(t, f.org)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			evs, total, next, err := eventstore.ListAudit(ctx, db.Pool, a, c.filter, 50, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := sequences(evs); !slices.Equal(got, c.want) || total != len(c.want) || next != nil {
				t.Errorf("got %v, total %d, next %v; want %v, total %d, no next", got, total, next, c.want, len(c.want))
			}
		})
	}
	// Paging through a time window with the cursor.
	window := eventstore.AuditFilter{Since: at(1), Until: at(6)}
	var walked []int64
	var before *int64
	for range 4 {
		evs, total, next, err := eventstore.ListAudit(ctx, db.Pool, a, window, 2, 0, before)
		if err != nil || total != 5 {
			t.Fatalf("window page after %v: total %d, %v; want total 5", before, total, err)
		}
		walked = append(walked, sequences(evs)...)
		if before = next; before == nil {
			break
		}
	}
	if !slices.Equal(walked, []int64{6, 5, 4, 3, 2}) {
		t.Errorf("walking the window by cursor gave %v, want 6 5 4 3 2", walked)
	}

	// The events come back exactly as appended, hashes included.
	evs, _, _, err := eventstore.ListAudit(ctx, db.Pool, a, eventstore.AuditFilter{}, 50, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		want := f.events[len(f.events)-1-i]
		if e.ID != want.ID || !bytes.Equal(e.Hash, want.Hash) || !bytes.Equal(e.PrevHash, want.PrevHash) ||
			string(e.Payload) != string(want.Payload) || e.Actor != want.Actor || e.RequestID != want.RequestID ||
			!e.OccurredAt.Equal(want.OccurredAt) {
			t.Errorf("event %d differs from the appended one:\n got %+v\nwant %+v", e.Sequence, e, want)
		}
	}
}

func TestListAuditPaging(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	org, stream := saasapi.NewID(), saasapi.NewID()
	appendN := func(create bool, from, n int) {
		t.Helper()
		evs := make([]saasapi.NewEvent, n)
		for i := range evs {
			evs[i] = saasapi.NewEvent{
				LedgerID: org, LedgerType: saasapi.LedgerOrganisation, StreamType: saasapi.StreamProject,
				StreamID: stream, StreamVersion: int64(from + i), Type: saasapi.EventProjectUpdated,
				Actor: saasapi.Actor{Type: saasapi.PrincipalSystem}, OccurredAt: time.Now(),
				Data: saasapi.ProjectUpdated{ChangedFields: []string{"status"}},
			}
		}
		if _, err := appendTo(ctx, db.Pool, create, evs...); err != nil {
			t.Fatal(err)
		}
	}
	appendN(true, 1, 25)
	a := grant(t, org)
	none := eventstore.AuditFilter{}

	type page struct {
		seqs  []int64
		total int
		next  *int64
	}
	list := func(offset int, before *int64) page {
		t.Helper()
		evs, total, next, err := eventstore.ListAudit(ctx, db.Pool, a, none, 10, offset, before)
		if err != nil {
			t.Fatal(err)
		}
		return page{sequences(evs), total, next}
	}
	rng := func(from, to int64) []int64 {
		var s []int64
		for i := from; i >= to; i-- {
			s = append(s, i)
		}
		return s
	}
	check := func(name string, got page, seqs []int64, total int, next int64) {
		t.Helper()
		wantNext := "none"
		if next > 0 {
			wantNext = fmt.Sprint(next)
		}
		gotNext := "none"
		if got.next != nil {
			gotNext = fmt.Sprint(*got.next)
		}
		if !slices.Equal(got.seqs, seqs) || got.total != total || gotNext != wantNext {
			t.Errorf("%s: got %v, total %d, next %s; want %v, total %d, next %s",
				name, got.seqs, got.total, gotNext, seqs, total, wantNext)
		}
	}

	first := list(0, nil)
	check("first page", first, rng(25, 16), 25, 16)
	check("offset page", list(10, nil), rng(15, 6), 25, 6)
	check("last offset page", list(20, nil), rng(5, 1), 25, 0)
	check("offset past the end", list(30, nil), nil, 25, 0)

	// Writes between pages: the keyset walk neither repeats nor skips, and
	// the total follows the ledger.
	appendN(false, 26, 5)
	second := list(0, first.next)
	check("second keyset page", second, rng(15, 6), 30, 6)
	appendN(false, 31, 5)
	// The offset is ignored once a cursor is given.
	check("third keyset page", list(7, second.next), rng(5, 1), 35, 0)

	if _, _, _, err := eventstore.ListAudit(ctx, db.Pool, a, none, 0, 0, nil); err == nil {
		t.Error("limit 0 was accepted")
	}
	if _, _, _, err := eventstore.ListAudit(ctx, db.Pool, saasapi.Access{OrganisationID: org}, none, 10, 0, nil); err == nil {
		t.Error("an access that Authorize did not grant read the ledger")
	}
}

func TestListUserAudit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	user := saasapi.NewID()
	mk := func(version int64, typ string, actor saasapi.Actor, data any) saasapi.NewEvent {
		return saasapi.NewEvent{
			LedgerID: user, LedgerType: saasapi.LedgerUser, StreamType: saasapi.StreamUser, StreamID: user,
			StreamVersion: version, Type: typ, Actor: actor, OccurredAt: time.Now(), Data: data,
		}
	}
	self := saasapi.Actor{Type: saasapi.PrincipalUser, UserID: user}
	anonymous := saasapi.Actor{Type: saasapi.PrincipalAnonymous}
	if _, err := appendTo(ctx, db.Pool, true,
		mk(1, saasapi.EventUserRegistered, self, saasapi.UserRegistered{Email: "a@example.com", DisplayName: "A"})); err != nil {
		t.Fatal(err)
	}
	if _, err := appendTo(ctx, db.Pool, false,
		mk(2, saasapi.EventUserLoginFailed, anonymous, saasapi.UserLoginFailed{Reason: "invalid_password"})); err != nil {
		t.Fatal(err)
	}
	if _, err := appendTo(ctx, db.Pool, false, mk(3, saasapi.EventUserLoggedIn, self, saasapi.UserLoggedIn{})); err != nil {
		t.Fatal(err)
	}
	f := newAuditFixture(ctx, t, db.Pool)

	evs, total, next, err := eventstore.ListUserAudit(ctx, db.Pool, user, 2, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	types := []string{}
	for _, e := range evs {
		types = append(types, e.Type)
	}
	if !slices.Equal(types, []string{saasapi.EventUserLoggedIn, saasapi.EventUserLoginFailed}) || total != 3 ||
		next == nil || *next != 2 {
		t.Fatalf("first page: %v, total %d, next %v; want logged_in, login_failed, total 3, next 2", types, total, next)
	}
	evs, total, next, err = eventstore.ListUserAudit(ctx, db.Pool, user, 2, 0, next)
	if err != nil || len(evs) != 1 || evs[0].Type != saasapi.EventUserRegistered || total != 3 || next != nil {
		t.Fatalf("second page: %v, total %d, next %v, %v; want registered only", sequences(evs), total, next, err)
	}
	// An organisation's ledger is not a user's, even by ID.
	evs, total, _, err = eventstore.ListUserAudit(ctx, db.Pool, f.org, 10, 0, nil)
	if err != nil || len(evs) != 0 || total != 0 {
		t.Fatalf("organisation ledger read as a user's: %d events, total %d, %v", len(evs), total, err)
	}
}

func TestAuditHead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)

	// A ledger without events: sequence 0 and the zero hash.
	empty := saasapi.NewID()
	b := &pgx.Batch{}
	eventstore.NewLedger(b, empty, saasapi.LedgerOrganisation)
	if err := db.Pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	seq, hash, recordedAt, err := eventstore.AuditHead(ctx, db.Pool, grant(t, empty))
	if err != nil || seq != 0 || !bytes.Equal(hash, eventstore.ZeroHash) || recordedAt.IsZero() {
		t.Fatalf("empty ledger head: %d %x %v %v; want 0, zero hash, its creation time", seq, hash, recordedAt, err)
	}

	f := newAuditFixture(ctx, t, db.Pool)
	last := f.events[len(f.events)-1]
	seq, hash, recordedAt, err = eventstore.AuditHead(ctx, db.Pool, grant(t, f.org))
	if err != nil || seq != last.Sequence || !bytes.Equal(hash, last.Hash) || !recordedAt.Equal(last.OccurredAt) {
		t.Fatalf("head: %d %x %v %v; want %d %x %v", seq, hash, recordedAt, err, last.Sequence, last.Hash, last.OccurredAt)
	}

	if _, _, _, err := eventstore.AuditHead(ctx, db.Pool, grant(t, saasapi.NewID())); !errors.Is(err, eventstore.ErrLedgerNotFound) {
		t.Fatalf("head of a missing ledger: %v, want ErrLedgerNotFound", err)
	}
	if _, _, _, err := eventstore.AuditHead(ctx, db.Pool, saasapi.Access{OrganisationID: f.org}); err == nil {
		t.Fatal("an access that Authorize did not grant read the head")
	}
}

func TestExport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	f := newAuditFixture(ctx, t, db.Pool)
	a := grant(t, f.org)
	export := func(filter eventstore.AuditFilter, after int64, batch int) []int64 {
		t.Helper()
		var got []int64
		err := eventstore.Export(ctx, db.Pool, a, filter, after, batch, func(e saasapi.Event) error {
			got = append(got, e.Sequence)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, batch := range []int{0, 1, 3, 7, 100} {
		if got := export(eventstore.AuditFilter{}, 0, batch); !slices.Equal(got, []int64{1, 2, 3, 4, 5, 6, 7}) {
			t.Errorf("batch %d: exported %v, want 1..7 in order", batch, got)
		}
	}
	if got := export(eventstore.AuditFilter{}, 4, 2); !slices.Equal(got, []int64{5, 6, 7}) {
		t.Errorf("resumed after 4: %v, want 5 6 7", got)
	}
	if got := export(eventstore.AuditFilter{}, 7, 2); len(got) != 0 {
		t.Errorf("resumed after the head: %v, want nothing", got)
	}
	if got := export(eventstore.AuditFilter{TargetID: f.p1}, 0, 1); !slices.Equal(got, []int64{4, 5, 7}) {
		t.Errorf("filtered export: %v, want 4 5 7", got)
	}
	if got := export(eventstore.AuditFilter{TargetID: f.p1}, 4, 1); !slices.Equal(got, []int64{5, 7}) {
		t.Errorf("filtered export resumed after 4: %v, want 5 7", got)
	}
	at := func(s int) *time.Time { v := f.t0.Add(time.Duration(s) * time.Second); return &v }
	window := eventstore.AuditFilter{Since: at(2), Until: at(5)}
	if got := export(window, 0, 2); !slices.Equal(got, []int64{3, 4, 5}) {
		t.Errorf("time window export: %v, want 3 4 5", got)
	}
	if got := export(window, 3, 1); !slices.Equal(got, []int64{4, 5}) {
		t.Errorf("time window export resumed after 3: %v, want 4 5", got)
	}
	if got := export(eventstore.AuditFilter{Since: at(7)}, 0, 0); len(got) != 0 {
		t.Errorf("export of an empty window: %v, want nothing", got)
	}
	if got := export(eventstore.AuditFilter{Since: at(2), Until: at(5), Action: saasapi.EventProjectCreated}, 0, 0); !slices.Equal(got, []int64{4}) {
		t.Errorf("export of a window and an action: %v, want 4", got)
	}

	// The consumer's error stops the export and comes back as it is.
	stop := errors.New("client went away")
	var got []int64
	err := eventstore.Export(ctx, db.Pool, a, eventstore.AuditFilter{}, 0, 2, func(e saasapi.Event) error {
		got = append(got, e.Sequence)
		if e.Sequence == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || !slices.Equal(got, []int64{1, 2, 3}) {
		t.Errorf("stopped export: %v after %v, want the consumer's error after 1 2 3", err, got)
	}

	// Events appended during an export are left for the next one: it ends at
	// the head it started from.
	got = nil
	err = eventstore.Export(ctx, db.Pool, a, eventstore.AuditFilter{}, 0, 2, func(e saasapi.Event) error {
		got = append(got, e.Sequence)
		if e.Sequence == 1 {
			_, err := appendTo(ctx, db.Pool, false, saasapi.NewEvent{
				LedgerID: f.org, LedgerType: saasapi.LedgerOrganisation, StreamType: saasapi.StreamProject,
				StreamID: f.p2, StreamVersion: 2, Type: saasapi.EventProjectDeleted,
				Actor: saasapi.Actor{Type: saasapi.PrincipalSystem}, OccurredAt: time.Now(),
				Data: saasapi.ProjectDeleted{ProjectName: "two"},
			})
			return err
		}
		return nil
	})
	if err != nil || !slices.Equal(got, []int64{1, 2, 3, 4, 5, 6, 7}) {
		t.Errorf("export with a concurrent append: %v, %v; want 1..7", got, err)
	}
	if got := export(eventstore.AuditFilter{}, 7, 0); !slices.Equal(got, []int64{8}) {
		t.Errorf("the next export: %v, want 8", got)
	}

	if err := eventstore.Export(ctx, db.Pool, saasapi.Access{OrganisationID: f.org}, eventstore.AuditFilter{}, 0, 0,
		func(saasapi.Event) error { return nil }); err == nil {
		t.Error("an access that Authorize did not grant exported the ledger")
	}
}

// TestSingleFilterTotalsComeFromTheCounters: the total of a single-field
// filter is the projection's counter, not a count of the events (a count
// that grows with the ledger); combined filters are still counted.
func TestSingleFilterTotalsComeFromTheCounters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	f := newAuditFixture(ctx, t, db.Pool)
	if _, err := db.Pool.Exec(ctx, `UPDATE audit_counts SET events = events + 100
		WHERE ledger_id = $1 AND filter = 'action' AND value = $2`, f.org, saasapi.EventProjectCreated); err != nil {
		t.Fatal(err)
	}
	a := grant(t, f.org)
	_, total, _, err := eventstore.ListAudit(ctx, db.Pool, a, eventstore.AuditFilter{Action: saasapi.EventProjectCreated}, 10, 0, nil)
	if err != nil || total != 102 {
		t.Fatalf("action total %d, %v; want the counter's 102", total, err)
	}
	_, total, _, err = eventstore.ListAudit(ctx, db.Pool, a,
		eventstore.AuditFilter{Action: saasapi.EventProjectCreated, ActorUserID: f.u1}, 10, 0, nil)
	if err != nil || total != 1 {
		t.Fatalf("combined total %d, %v; want the counted 1", total, err)
	}
}
