// Package projections owns the read tables. Each read model has a file with
// the events it handles and the queries that read it. Apply is the only code
// that writes read tables: the commands run it inline in their transaction,
// and a rebuild runs the same code over the whole event stream.
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

// Apply queues on b the read-table statements that event e implies. The
// statements run when the caller sends the batch, in the caller's
// transaction, so the read tables change exactly when the event commits.
func Apply(b *pgx.Batch, e saasapi.Event) error {
	h, ok := handlers[e.Type]
	if !ok {
		return fmt.Errorf("projections: no handler for event type %q", e.Type)
	}
	payload, err := saasapi.DecodePayload(e)
	if err != nil {
		return err
	}
	h(b, e, payload)
	return nil
}

// Tables lists the projected read tables in the order a rebuild empties
// them. Secrets (user_credentials) and operational data are not projected
// and are never touched by a rebuild.
var Tables = []string{"api_keys", "project_counts", "projects", "memberships", "organisations", "users"}

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
