package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
)

// The audit log is not a table of its own: it is the events table seen
// through a filter (ADR 0004). This file holds the queries behind
// GET /orgs/{id}/audit-events (list, head, export) and GET /me/audit-events.
// Every organisation query is led by ledger_id, and migration 003_audit adds
// the indexes that keep the filters fast on ledgers of millions of events.

// DefaultExportBatch is how many events Export reads per query when the
// caller passes no batch size: large enough that round trips do not
// dominate, small enough that memory stays flat (a few hundred kilobytes).
const DefaultExportBatch = 1000

// AuditFilter selects events of one ledger. Zero fields do not filter. The
// audit API's names map onto the events table as follows:
//
//	action             event_type
//	target_type        stream_type
//	target_id          stream_id
//	actor_user_id      actor_user_id
//	actor_api_key_id   actor_api_key_id
//	since, until       occurred_at, since inclusive, until exclusive
//
// so that consecutive windows [a, b) and [b, c) neither overlap nor leave a
// gap.
type AuditFilter struct {
	Action        string
	TargetType    string
	ActorUserID   saasapi.ID
	ActorAPIKeyID saasapi.ID
	TargetID      saasapi.ID
	Since, Until  *time.Time
}

// empty reports whether f selects every event of the ledger.
func (f AuditFilter) empty() bool {
	return f.Action == "" && f.TargetType == "" && f.ActorUserID == "" && f.ActorAPIKeyID == "" &&
		f.TargetID == "" && f.Since == nil && f.Until == nil
}

// single returns the filter and value of f when it filters by exactly one
// field that audit_counts keeps a total of.
func (f AuditFilter) single() (filter, value string, ok bool) {
	set := map[string]string{}
	for name, v := range map[string]string{"action": f.Action, "target_type": f.TargetType,
		"actor_user_id": string(f.ActorUserID), "actor_api_key_id": string(f.ActorAPIKeyID), "target_id": string(f.TargetID)} {
		if v != "" {
			set[name] = v
		}
	}
	if len(set) != 1 || f.Since != nil || f.Until != nil || f.TargetID != "" {
		return "", "", false
	}
	for name, v := range set {
		filter, value = name, v
	}
	return filter, value, true
}

// where returns the SQL conditions of f, numbering its parameters after
// the ones already in args, and the extended args. Callers put the ledger
// condition first: every audit index leads with ledger_id.
func (f AuditFilter) where(args []any) ([]string, []any) {
	var conds []string
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, strings.Replace(cond, "?", "$"+strconv.Itoa(len(args)), 1))
	}
	if f.Action != "" {
		add("event_type = ?", f.Action)
	}
	if f.TargetType != "" {
		add("stream_type = ?", f.TargetType)
	}
	if f.TargetID != "" {
		add("stream_id = ?", f.TargetID)
	}
	if f.ActorUserID != "" {
		add("actor_user_id = ?", f.ActorUserID)
	}
	if f.ActorAPIKeyID != "" {
		add("actor_api_key_id = ?", f.ActorAPIKeyID)
	}
	if f.Since != nil {
		add("occurred_at >= ?", *f.Since)
	}
	if f.Until != nil {
		add("occurred_at < ?", *f.Until)
	}
	return conds, args
}

// scopeOf checks that a tenant query runs for an organisation that was
// authorized: only saasapi.Authorize makes a granted Access, so a handler
// cannot forget the check and still read a ledger.
func scopeOf(a saasapi.Access) (saasapi.ID, error) {
	if !a.Granted() || a.OrganisationID == "" {
		return "", errors.New("eventstore: audit query without granted access")
	}
	return a.OrganisationID, nil
}

// Guard is the access condition a tenant statement carries
// (projections.Gate): it holds only when the caller may read the ledger,
// for a statement whose $1 is the ledger's (the organisation's) ID, with
// its arguments from $n on.
type Guard interface {
	Predicate(n int) (string, []any)
}

// guarded appends g's condition, numbered after args, to conds.
func guarded(g Guard, conds []string, args []any) ([]string, []any) {
	if g == nil {
		return conds, args
	}
	cond, gargs := g.Predicate(len(args) + 1)
	return append(conds, cond), append(args, gargs...)
}

// AuditPage is one page of an audit listing.
type AuditPage struct {
	// Events are newest first.
	Events []saasapi.Event
	// Total counts every event under the filter, regardless of the cursor
	// or offset.
	Total int
	// NextCursor is the sequence to pass as beforeSequence for the next
	// page; nil when this page is the last.
	NextCursor *int64
}

// ListAudit returns a page of the authorized organisation's ledger, newest
// first, under filter f. With beforeSequence set it is a keyset page of the
// events with a smaller sequence (offset is then ignored): because a
// ledger's sequence is gapless and commits in order (ADR 0002), such pages
// never skip or repeat an event while writes go on, and a deep page costs
// what the first does. Without it, offset skips that many events.
func ListAudit(ctx context.Context, q Querier, a saasapi.Access, f AuditFilter, limit, offset int,
	beforeSequence *int64,
) (events []saasapi.Event, total int, nextCursor *int64, err error) {
	ledgerID, err := scopeOf(a)
	if err != nil {
		return nil, 0, nil, err
	}
	var p AuditPage
	b := &pgx.Batch{}
	if err := QueueListAudit(b, nil, ledgerID, f, limit, offset, beforeSequence, &p); err != nil {
		return nil, 0, nil, err
	}
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return nil, 0, nil, fmt.Errorf("list audit events of %s: %w", ledgerID, err)
	}
	return p.Events, p.Total, p.NextCursor, nil
}

// QueueListAudit queues what ListAudit reads, guarded by g: the page and
// its total, one round trip. It reads one event more than limit to tell
// whether more follow.
func QueueListAudit(b *pgx.Batch, g Guard, orgID saasapi.ID, f AuditFilter, limit, offset int,
	beforeSequence *int64, dst *AuditPage,
) error {
	return queueLedger(b, g, orgID, saasapi.LedgerOrganisation, f, limit, offset, beforeSequence, dst)
}

// ListUserAudit returns a page of a user's own ledger (registration,
// sign-ins, failed sign-ins), newest first, for GET /me/audit-events.
// userID must be the authenticated user's. Paging is as in ListAudit.
func ListUserAudit(ctx context.Context, q Querier, userID saasapi.ID, limit, offset int,
	beforeSequence *int64,
) (events []saasapi.Event, total int, nextCursor *int64, err error) {
	if userID == "" {
		return nil, 0, nil, errors.New("eventstore: user audit query without a user")
	}
	var p AuditPage
	b := &pgx.Batch{}
	if err := queueLedger(b, nil, userID, saasapi.LedgerUser, AuditFilter{}, limit, offset, beforeSequence, &p); err != nil {
		return nil, 0, nil, err
	}
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return nil, 0, nil, fmt.Errorf("list audit events of user %s: %w", userID, err)
	}
	return p.Events, p.Total, p.NextCursor, nil
}

// userGuard holds when the ledger's user ($1) is still active.
type userGuard struct{}

func (userGuard) Predicate(int) (string, []any) {
	return `EXISTS (SELECT 1 FROM users gu WHERE gu.id = $1 AND gu.is_active)`, nil
}

// QueueListUserAudit queues what ListUserAudit reads; the statements
// return nothing unless the user is still active.
func QueueListUserAudit(b *pgx.Batch, userID saasapi.ID, limit, offset int, beforeSequence *int64, dst *AuditPage) error {
	if userID == "" {
		return errors.New("eventstore: user audit query without a user")
	}
	return queueLedger(b, userGuard{}, userID, saasapi.LedgerUser, AuditFilter{}, limit, offset, beforeSequence, dst)
}

// queueLedger is the query behind the audit listings. ledgerType pins the
// kind of ledger in the page query, so that an organisation's ID passed as
// a user's (or the reverse) selects nothing. The filtered count leaves it
// out: ledger_type is in no index, and testing it would turn the count's
// index-only scan into a visit of every counted row.
func queueLedger(b *pgx.Batch, g Guard, ledgerID saasapi.ID, ledgerType string, f AuditFilter,
	limit, offset int, beforeSequence *int64, dst *AuditPage,
) error {
	if limit < 1 || offset < 0 {
		return fmt.Errorf("limit %d and offset %d out of range", limit, offset)
	}
	filter, args := f.where([]any{ledgerID, ledgerType})
	// The time conditions are the last of filter (where puts them there).
	var window []string
	if f.Since != nil {
		window = append(window, "")
	}
	if f.Until != nil {
		window = append(window, "")
	}
	copy(window, filter[len(filter)-len(window):])
	conds := append([]string{"ledger_id = $1", "ledger_type = $2"}, filter[:len(filter)-len(window)]...)
	if beforeSequence != nil {
		args = append(args, *beforeSequence)
		conds = append(conds, "sequence < $"+strconv.Itoa(len(args)))
		offset = 0
	}
	bounds := ""
	if len(window) > 0 {
		// A time window: the page is read between the window's first and
		// last sequence. The page is ordered by sequence, and the planner,
		// not knowing that occurred_at follows sequence, would otherwise
		// scan the primary key backwards from the newest event until it
		// reached the window (every event since the window, hundreds of
		// milliseconds for a window a million events ago), or read the
		// whole window from the time index and sort it. The bounds are
		// found first, in the same statement, by one index-only scan of the
		// window in the time index (the count in it keeps PostgreSQL from
		// turning min and max into scans of the primary key filtered by
		// time, which read every event after the window); the inner query,
		// which OFFSET 0 keeps the window's conditions out of, then scans
		// the primary key between the bounds, and the outer one drops the
		// few events within the bounds but outside the window. So a window
		// costs no round trip of its own.
		within := strings.Join(append([]string{"ledger_id = $1"}, filter...), " AND ")
		bounds = `WITH w AS MATERIALIZED (SELECT min(sequence) AS lo, max(sequence) AS hi, count(*) AS n FROM events WHERE ` +
			within + `) `
		conds = append(conds, "sequence BETWEEN (SELECT lo FROM w) AND (SELECT hi FROM w)")
	}
	// Unfiltered, the total is the head's sequence: the sequence is
	// gapless from 1, so this is exact, and it reads one row instead of
	// counting a ledger that may hold millions of events.
	countConds, countArgs := []string{"ledger_id = $1", "ledger_type = $2"}, []any{ledgerID, ledgerType}
	countSQL := `SELECT coalesce((SELECT last_sequence FROM ledgers WHERE %s), 0)`
	if filter, value, ok := f.single(); ok {
		// One filter on a field with a counter (migration 004): its total
		// is kept by the projections.
		countConds, countArgs = []string{"ledger_id = $1", "filter = $2", "value = $3"}, []any{ledgerID, filter, value}
		countSQL = `SELECT coalesce((SELECT events FROM audit_counts WHERE %s), 0)`
	} else if !f.empty() {
		var where string
		where, countArgs = f.onLedger(ledgerID)
		countConds = []string{where}
		countSQL = `SELECT count(*) FROM events WHERE %s`
	}
	countConds, countArgs = guarded(g, countConds, countArgs)
	b.Queue(fmt.Sprintf(countSQL, strings.Join(countConds, " AND ")), countArgs...).QueryRow(func(row pgx.Row) error {
		var total int64
		err := row.Scan(&total)
		dst.Total = int(total)
		return err
	})
	conds, args = guarded(g, conds, args)
	args = append(args, limit+1, offset)
	page := ` ORDER BY sequence DESC LIMIT $` + strconv.Itoa(len(args)-1) + ` OFFSET $` + strconv.Itoa(len(args))
	listSQL := `SELECT ` + eventColumns + ` FROM events WHERE ` + strings.Join(conds, " AND ") + page
	if len(window) > 0 {
		listSQL = bounds + `SELECT ` + eventColumns + ` FROM (SELECT * FROM events WHERE ` +
			strings.Join(conds, " AND ") + ` ORDER BY sequence DESC OFFSET 0) e WHERE ` + strings.Join(window, " AND ") + page
	}
	b.Queue(listSQL, args...).Query(func(rows pgx.Rows) error {
		evs, err := pgx.CollectRows(rows, scanEvent)
		if err != nil {
			return err
		}
		if len(evs) > limit {
			evs = evs[:limit]
			next := evs[limit-1].Sequence
			dst.NextCursor = &next
		}
		dst.Events = evs
		return nil
	})
	return nil
}

// onLedger returns f's conditions on one ledger as a WHERE clause, and its
// arguments, for statements that need no more than the indexed columns
// (counts, bounds).
func (f AuditFilter) onLedger(ledgerID saasapi.ID) (string, []any) {
	conds, args := f.where([]any{ledgerID})
	return strings.Join(append([]string{"ledger_id = $1"}, conds...), " AND "), args
}

// AuditHead returns the head of the authorized organisation's ledger: the
// sequence and hash of its last event and when it was recorded (the
// ledger's creation for a ledger without events, whose head is sequence 0
// and the zero hash). An auditor who keeps this triple can later prove that
// the ledger still extends it (docs/audit.md).
func AuditHead(ctx context.Context, q Querier, a saasapi.Access) (sequence int64, hash []byte, recordedAt time.Time, err error) {
	ledgerID, err := scopeOf(a)
	if err != nil {
		return 0, nil, time.Time{}, err
	}
	h, err := ReadHead(ctx, q, ledgerID)
	if err != nil {
		return 0, nil, time.Time{}, err
	}
	return h.Sequence, h.Hash, h.UpdatedAt, nil
}

// QueueAuditHead queues the read of the organisation's head, guarded by
// g; found is false when g refused or the ledger does not exist.
func QueueAuditHead(b *pgx.Batch, g Guard, orgID saasapi.ID, dst *Head, found *bool) {
	conds, args := guarded(g, []string{"ledger_id = $1", "ledger_type = $2"}, []any{orgID, saasapi.LedgerOrganisation})
	b.Queue(`SELECT last_sequence, last_hash, updated_at FROM ledgers WHERE `+strings.Join(conds, " AND "), args...).
		QueryRow(func(row pgx.Row) error {
			h := Head{LedgerID: orgID, LedgerType: saasapi.LedgerOrganisation}
			err := row.Scan(&h.Sequence, &h.Hash, &h.UpdatedAt)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			h.UpdatedAt = h.UpdatedAt.UTC()
			*dst, *found = h, err == nil
			return err
		})
}

// ReadHead returns a ledger's head without locking it, or ErrLedgerNotFound.
// It is for operators and verification; tenant reads go through AuditHead.
func ReadHead(ctx context.Context, q Querier, ledgerID saasapi.ID) (Head, error) {
	h := Head{LedgerID: ledgerID}
	err := scanHead(q.QueryRow(ctx, `SELECT `+headColumns+` FROM ledgers WHERE ledger_id = $1`, ledgerID), &h)
	if errors.Is(err, pgx.ErrNoRows) {
		return Head{}, ErrLedgerNotFound
	}
	if err != nil {
		return Head{}, fmt.Errorf("read head of ledger %s: %w", ledgerID, err)
	}
	h.UpdatedAt = h.UpdatedAt.UTC()
	return h, nil
}

// Export streams the authorized organisation's ledger under filter f to
// emit, oldest first, starting after afterSequence (0 for the beginning),
// and stops at the first error emit returns, which it returns.
//
// It reads batch events per query (DefaultExportBatch when batch < 1),
// keyset by sequence, and hands a batch to emit only after the query is
// done, so memory stays flat whatever the ledger's size and a slow consumer
// never holds a database connection. The export ends at the head the ledger
// had when it began: events appended meanwhile are left for the next export
// (resumed with afterSequence), so a busy ledger cannot keep it running for
// ever, and what was exported is a prefix of the chain that an auditor can
// verify on its own.
func Export(ctx context.Context, q Querier, a saasapi.Access, f AuditFilter, afterSequence int64, batch int,
	emit func(saasapi.Event) error,
) error {
	ledgerID, err := scopeOf(a)
	if err != nil {
		return err
	}
	if batch < 1 {
		batch = DefaultExportBatch
	}
	head, err := ReadHead(ctx, q, ledgerID)
	if err != nil {
		return err
	}
	after, last := afterSequence, head.Sequence
	if f.Since != nil || f.Until != nil {
		// Narrow a time window to its sequences first, for the reason
		// given in listLedger: otherwise the first batch would scan every
		// event before the window.
		where, args := f.onLedger(ledgerID)
		args = append(args, after, last)
		var lo, hi *int64
		if err := q.QueryRow(ctx, `SELECT min(sequence), max(sequence) FROM events WHERE `+where+
			` AND sequence > $`+strconv.Itoa(len(args)-1)+` AND sequence <= $`+strconv.Itoa(len(args)),
			args...).Scan(&lo, &hi); err != nil {
			return fmt.Errorf("export ledger %s: %w", ledgerID, err)
		}
		if lo == nil {
			return nil
		}
		after, last = *lo-1, *hi
	}
	conds, args := f.where([]any{ledgerID, last})
	n := len(args)
	sql := `SELECT ` + eventColumns + ` FROM events WHERE ` +
		strings.Join(append([]string{"ledger_id = $1", "sequence <= $2"}, conds...), " AND ") +
		` AND sequence > $` + strconv.Itoa(n+1) + ` ORDER BY sequence LIMIT $` + strconv.Itoa(n+2)
	for after < last {
		rows, err := q.Query(ctx, sql, append(args, after, batch)...)
		if err != nil {
			return fmt.Errorf("export ledger %s: %w", ledgerID, err)
		}
		evs, err := pgx.CollectRows(rows, scanEvent)
		if err != nil {
			return fmt.Errorf("export ledger %s: %w", ledgerID, err)
		}
		for _, e := range evs {
			if err := emit(e); err != nil {
				return err
			}
		}
		if len(evs) < batch {
			return nil
		}
		after = evs[len(evs)-1].Sequence
	}
	return nil
}
