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

// auditPage is one page of an audit listing.
type auditPage struct {
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
//
// It reads one event more than limit to tell whether more follow. The page
// and the total travel in one round trip, or two for a time window (since
// or until), which is first narrowed to its sequences.
func ListAudit(ctx context.Context, q Querier, a saasapi.Access, f AuditFilter, limit, offset int,
	beforeSequence *int64,
) (events []saasapi.Event, total int, nextCursor *int64, err error) {
	ledgerID, err := scopeOf(a)
	if err != nil {
		return nil, 0, nil, err
	}
	p, err := listLedger(ctx, q, ledgerID, saasapi.LedgerOrganisation, f, limit, offset, beforeSequence)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("list audit events of %s: %w", ledgerID, err)
	}
	return p.Events, p.Total, p.NextCursor, nil
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
	p, err := listLedger(ctx, q, userID, saasapi.LedgerUser, AuditFilter{}, limit, offset, beforeSequence)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("list audit events of user %s: %w", userID, err)
	}
	return p.Events, p.Total, p.NextCursor, nil
}

// listLedger is the query behind ListAudit and ListUserAudit. ledgerType
// pins the kind of ledger in the page query, so that an organisation's ID
// passed as a user's (or the reverse) selects nothing. The filtered count
// leaves it out: ledger_type is in no index, and testing it would turn the
// count's index-only scan into a visit of every counted row.
func listLedger(ctx context.Context, q Querier, ledgerID saasapi.ID, ledgerType string, f AuditFilter,
	limit, offset int, beforeSequence *int64,
) (auditPage, error) {
	if limit < 1 || offset < 0 {
		return auditPage{}, fmt.Errorf("limit %d and offset %d out of range", limit, offset)
	}
	conds, args := f.where([]any{ledgerID, ledgerType})
	conds = append([]string{"ledger_id = $1", "ledger_type = $2"}, conds...)
	if beforeSequence != nil {
		args = append(args, *beforeSequence)
		conds = append(conds, "sequence < $"+strconv.Itoa(len(args)))
		offset = 0
	}

	var p auditPage
	var total int64
	b := &pgx.Batch{}
	if f.Since != nil || f.Until != nil {
		// A time window: count it and find its first and last sequence
		// first, and page within those bounds. The page is ordered by
		// sequence, and the planner, not knowing that occurred_at follows
		// sequence, would otherwise scan the primary key backwards from the
		// newest event until it reached the window: every event since the
		// window, hundreds of milliseconds for a window a million events
		// ago. The bounds cost one index-only scan of the window (the same
		// scan that counts it) and one more round trip.
		var lo, hi *int64
		where, wargs := f.onLedger(ledgerID)
		if err := q.QueryRow(ctx, `SELECT count(*), min(sequence), max(sequence) FROM events WHERE `+where,
			wargs...).Scan(&total, &lo, &hi); err != nil {
			return auditPage{}, err
		}
		if total == 0 {
			return auditPage{}, nil
		}
		args = append(args, *lo, *hi)
		conds = append(conds, "sequence BETWEEN $"+strconv.Itoa(len(args)-1)+" AND $"+strconv.Itoa(len(args)))
	} else {
		// Unfiltered, the total is the head's sequence: the sequence is
		// gapless from 1, so this is exact, and it reads one row instead of
		// counting a ledger that may hold millions of events.
		countSQL := `SELECT coalesce((SELECT last_sequence FROM ledgers WHERE ledger_id = $1 AND ledger_type = $2), 0)`
		countArgs := []any{ledgerID, ledgerType}
		if !f.empty() {
			var where string
			where, countArgs = f.onLedger(ledgerID)
			countSQL = `SELECT count(*) FROM events WHERE ` + where
		}
		b.Queue(countSQL, countArgs...).QueryRow(func(row pgx.Row) error { return row.Scan(&total) })
	}
	args = append(args, limit+1, offset)
	listSQL := `SELECT ` + eventColumns + ` FROM events WHERE ` + strings.Join(conds, " AND ") +
		` ORDER BY sequence DESC LIMIT $` + strconv.Itoa(len(args)-1) + ` OFFSET $` + strconv.Itoa(len(args))
	b.Queue(listSQL, args...).Query(func(rows pgx.Rows) error {
		var err error
		p.Events, err = pgx.CollectRows(rows, scanEvent)
		return err
	})
	// The page and, without a time window, the total: one round trip.
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return auditPage{}, err
	}
	p.Total = int(total)
	if len(p.Events) > limit {
		p.Events = p.Events[:limit]
		next := p.Events[limit-1].Sequence
		p.NextCursor = &next
	}
	return p, nil
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
