// Package projections owns the read tables. Each read model has a file with
// the events it handles and the queries that read it. Only this package
// writes read tables: the commands run Apply inline in their transaction,
// event by event; a rebuild or a verify folds the whole event stream in
// memory through each model's folds, which restate its handlers next to
// them (fold.go), and copies the rows in. Every verify proves the two equal
// on the whole history, and the tests prove it on random command sequences.
package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/saasapi/saasapi"
)

// Querier is what the read queries need from a pool or transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// handler queues the read-table writes of one event type.
type handler func(b *pgx.Batch, e saasapi.Event, payload any)

// handlers maps every event type to its read-model handler. Event types
// that change no read table still bump their stream's version where the
// read table tracks it, so that versions (ETags) stay exact.
var handlers = map[string]handler{}

func register(eventType string, h handler) {
	if _, dup := handlers[eventType]; dup {
		panic("projections: two handlers for " + eventType)
	}
	handlers[eventType] = h
}

// aggregate is a read table that summarises another (project_counts sums
// live projects): commands keep it up to date event by event, and a replay
// recomputes it once at the end instead. Updating one counter row per
// event inside a single replay transaction would pile up row versions that
// PostgreSQL cannot prune before commit, making a long replay quadratic.
type aggregate struct {
	table string
	// recompute fills the emptied table from the read tables, with
	// unqualified names so that it also works on a verification's shadow
	// copies.
	recompute string
	// recomputeOrg does the same for the rows of one organisation ($1),
	// whose rows a per-organisation rebuild has emptied.
	recomputeOrg string
	// handlers queue the incremental update of an event type; they run
	// before the row handler, so they can still read the old row.
	handlers map[string]handler
	// every, if set, queues the update of any event, after handlers.
	every handler
}

var aggregates []*aggregate

// Apply queues on b the read-table statements that event e implies. The
// statements run when the caller sends the batch, in the caller's
// transaction, so the read tables change exactly when the event commits.
func Apply(b *pgx.Batch, e saasapi.Event) error { return apply(b, e, true) }

// apply queues the statements of e; withAggregates is false during a
// replay, which recomputes the aggregates at its end (recomputeAggregates).
func apply(b *pgx.Batch, e saasapi.Event, withAggregates bool) error {
	h, ok := handlers[e.Type]
	if !ok {
		return fmt.Errorf("projections: no handler for event type %q", e.Type)
	}
	payload, err := saasapi.DecodePayload(e)
	if err != nil {
		return err
	}
	if withAggregates {
		for _, agg := range aggregates {
			if ah := agg.handlers[e.Type]; ah != nil {
				ah(b, e, payload)
			}
			if agg.every != nil {
				agg.every(b, e, payload)
			}
		}
	}
	h(b, e, payload)
	return nil
}

// recomputeAggregates refills every aggregate table from the read tables
// after a replay.
func recomputeAggregates(ctx context.Context, tx pgx.Tx) error {
	for _, agg := range aggregates {
		if _, err := tx.Exec(ctx, `DELETE FROM `+agg.table); err != nil {
			return fmt.Errorf("empty %s: %w", agg.table, err)
		}
		if _, err := tx.Exec(ctx, agg.recompute); err != nil {
			return fmt.Errorf("recompute %s: %w", agg.table, err)
		}
	}
	return nil
}

// recomputeOrgAggregates refills the rows of one organisation in every
// aggregate table after a replay of its ledger.
func recomputeOrgAggregates(ctx context.Context, tx pgx.Tx, org saasapi.ID) error {
	for _, agg := range aggregates {
		if _, err := tx.Exec(ctx, `DELETE FROM `+agg.table+` WHERE `+orgColumns[agg.table]+` = $1`, org); err != nil {
			return fmt.Errorf("empty %s of %s: %w", agg.table, org, err)
		}
		if _, err := tx.Exec(ctx, agg.recomputeOrg, org); err != nil {
			return fmt.Errorf("recompute %s of %s: %w", agg.table, org, err)
		}
	}
	return nil
}

// orgColumns names, for each read table that holds an organisation's rows,
// the column holding its ID: what a rebuild of one organisation empties
// and refills. Every other table in Tables holds rows of no organisation
// (users, written by user ledgers) and is left alone by it.
var orgColumns = map[string]string{
	"audit_counts":   "ledger_id",
	"api_keys":       "organisation_id",
	"project_counts": "organisation_id",
	"projects":       "organisation_id",
	"memberships":    "organisation_id",
	"organisations":  "id",
}

// GlobalTables are the read tables written by no organisation ledger: a
// rebuild of one organisation leaves them alone.
var GlobalTables = []string{"users"}

// Tables lists the projected read tables in the order a rebuild empties
// them. Secrets (user_credentials) and operational data are not projected
// and are never touched by a rebuild.
var Tables = []string{"audit_counts", "api_keys", "project_counts", "projects", "memberships", "organisations", "users"}

// Page is the offset window of a list query.
type Page struct {
	Limit  int
	Offset int
}

// checkAccess guards every tenant read: the scope must come from a
// successful authorization, so a query cannot run for an organisation the
// caller was not checked against.
func checkAccess(a saasapi.Access) error {
	if !a.Granted() || a.OrganisationID == "" {
		return fmt.Errorf("projections: tenant query without granted access")
	}
	return nil
}

// PageOf is one page of a list and the number of all its items.
type PageOf[T any] struct {
	Items []T
	Total int
}

// queuePage queues one page and the total of a tenant list: pageSQL takes
// LIMIT and OFFSET as $2 and $3, countSQL no argument besides $1; both
// carry the scope mark.
func queuePage[T any](b *pgx.Batch, s Scope, pageSQL, countSQL string, scan func(pgx.Row) (T, error),
	page Page, dst *PageOf[T],
) error {
	pageSQL, pageArgs, err := scoped(s, pageSQL, page.Limit, page.Offset)
	if err != nil {
		return err
	}
	countSQL, countArgs, err := scoped(s, countSQL)
	if err != nil {
		return err
	}
	b.Queue(pageSQL, pageArgs...).Query(func(rows pgx.Rows) (err error) {
		dst.Items, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) { return scan(row) })
		return err
	})
	b.Queue(countSQL, countArgs...).QueryRow(func(row pgx.Row) error { return row.Scan(&dst.Total) })
	return nil
}

// payloadOf decodes e's payload as a *T, or returns a zero T when it is
// of another type (a caller's mistake that the tests of Created* catch).
func payloadOf[T any](e saasapi.Event) *T {
	d, _ := saasapi.DecodePayload(e)
	if p, ok := d.(*T); ok {
		return p
	}
	return new(T)
}
