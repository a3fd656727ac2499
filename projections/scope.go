package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
)

// Scope limits a tenant read to one organisation: either an access that
// was already granted (Within), or a Gate, whose predicate the statement
// then carries so that it returns nothing unless the gate grants access.
type Scope interface {
	// tenant returns the organisation, the SQL condition to AND into the
	// statement's WHERE clause (with its arguments from $n on), or an
	// error when the scope may not be read at all.
	tenant(n int) (orgID saasapi.ID, cond string, args []any, err error)
}

type within saasapi.Access

// Within scopes reads to an access granted before.
func Within(a saasapi.Access) Scope { return within(a) }

func (w within) tenant(int) (saasapi.ID, string, []any, error) {
	if err := checkAccess(saasapi.Access(w)); err != nil {
		return "", "", nil, err
	}
	return w.OrganisationID, "", nil, nil
}

func (g *Gate) tenant(n int) (saasapi.ID, string, []any, error) {
	cond, args := g.Predicate(n)
	return g.OrgID, " AND " + cond, args, nil
}

// gateMark is where a tenant statement's text takes its scope condition.
const gateMark = "{scope}"

// scoped fills in sql's scope condition: $1 is the organisation, args
// follow from $2, and the condition's own arguments after them.
func scoped(s Scope, sql string, args ...any) (string, []any, error) {
	org, cond, cargs, err := s.tenant(len(args) + 2)
	if err != nil {
		return "", nil, err
	}
	all := make([]any, 0, 1+len(args)+len(cargs))
	all = append(append(append(all, org), args...), cargs...)
	if !strings.Contains(sql, gateMark) {
		return "", nil, errors.New("projections: tenant statement without a scope mark")
	}
	return strings.Replace(sql, gateMark, cond, 1), all, nil
}

// Lookup is the answer of a queued read of one row.
type Lookup[T any] struct {
	Value T
	Found bool
}

// queueRow queues a scoped read of at most one row into dst.
func queueRow[T any](b *pgx.Batch, s Scope, sql string, scan func(pgx.Row) (T, error), dst *Lookup[T], args ...any) error {
	sql, all, err := scoped(s, sql, args...)
	if err != nil {
		return err
	}
	b.Queue(sql, all...).QueryRow(func(row pgx.Row) error {
		v, err := scan(row)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		dst.Value, dst.Found = v, true
		return nil
	})
	return nil
}

// or returns the value found, or err.
func (l Lookup[T]) or(err error) (T, error) {
	if !l.Found {
		var zero T
		return zero, err
	}
	return l.Value, nil
}

// send runs the reads that queue adds to a batch, in one round trip.
func send(ctx context.Context, q Querier, what string, queue func(b *pgx.Batch) error) error {
	b := &pgx.Batch{}
	if err := queue(b); err != nil {
		return err
	}
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
