package projections

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
)

// Organisation is the organisations read model.
type Organisation struct {
	ID        saasapi.ID
	Name      string
	Slug      string
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

func init() {
	register(saasapi.EventOrganisationCreated, func(b *pgx.Batch, e saasapi.Event, p any) {
		d := p.(*saasapi.OrganisationCreated)
		b.Queue(`INSERT INTO organisations (id, name, slug, version, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $5)`, e.StreamID, d.Name, d.Slug, e.StreamVersion, e.OccurredAt)
	})
	register(saasapi.EventOrganisationUpdated, func(b *pgx.Batch, e saasapi.Event, p any) {
		d := p.(*saasapi.OrganisationUpdated)
		b.Queue(`UPDATE organisations SET name = coalesce($2, name), slug = coalesce($3, slug),
				version = $4, updated_at = $5 WHERE id = $1`,
			e.StreamID, d.Name, d.Slug, e.StreamVersion, e.OccurredAt)
	})
}

// organisationFold is an organisations row as the bulk path folds it.
type organisationFold struct {
	id, name, slug       string
	version              int64
	createdAt, updatedAt time.Time
}

func (r *organisationFold) table() string { return "organisations" }

func (r *organisationFold) values() []any {
	return []any{r.id, r.name, r.slug, r.version, r.createdAt, r.updatedAt}
}

func init() {
	copyColumns["organisations"] = []string{"id", "name", "slug", "version", "created_at", "updated_at"}
	registerFold(saasapi.EventOrganisationCreated, func(cur row, e saasapi.Event, p any) (row, error) {
		if cur != nil {
			return nil, errCreatedTwice(e)
		}
		d := p.(*saasapi.OrganisationCreated)
		return &organisationFold{id: string(e.StreamID), name: d.Name, slug: d.Slug, version: e.StreamVersion,
			createdAt: e.OccurredAt, updatedAt: e.OccurredAt}, nil
	})
	registerFold(saasapi.EventOrganisationUpdated, func(cur row, e saasapi.Event, p any) (row, error) {
		if r, ok := cur.(*organisationFold); ok {
			d := p.(*saasapi.OrganisationUpdated)
			if d.Name != nil {
				r.name = *d.Name
			}
			if d.Slug != nil {
				r.slug = *d.Slug
			}
			r.version, r.updatedAt = e.StreamVersion, e.OccurredAt
		}
		return cur, nil
	})
}

// CreatedOrganisation is the row the organisation.created handler
// writes, as the read model returns it.
func CreatedOrganisation(e saasapi.Event) Organisation {
	c := payloadOf[saasapi.OrganisationCreated](e)
	return Organisation{ID: e.StreamID, Name: c.Name, Slug: c.Slug, Version: e.StreamVersion,
		CreatedAt: e.OccurredAt, UpdatedAt: e.OccurredAt}
}

const organisationColumns = `o.id, o.name, o.slug, o.version, o.created_at, o.updated_at`

func scanOrganisation(row pgx.Row) (Organisation, error) {
	var o Organisation
	err := row.Scan(&o.ID, &o.Name, &o.Slug, &o.Version, &o.CreatedAt, &o.UpdatedAt)
	return o, err
}

// QueueOrganisation queues the read of the organisation of s.
func QueueOrganisation(b *pgx.Batch, s Scope, dst *Lookup[Organisation]) error {
	return queueRow(b, s, `SELECT `+organisationColumns+` FROM organisations o WHERE o.id = $1{scope}`, scanOrganisation, dst)
}

// OrganisationOf is the organisation a Lookup found, or 404.
func OrganisationOf(l Lookup[Organisation]) (Organisation, error) {
	return l.or(saasapi.Errorf(saasapi.ENOTFOUND, saasapi.MsgOrgNotFound))
}

// GetOrganisation returns the organisation the access was granted for.
func GetOrganisation(ctx context.Context, q Querier, a saasapi.Access) (Organisation, error) {
	var l Lookup[Organisation]
	if err := send(ctx, q, "get organisation", func(b *pgx.Batch) error { return QueueOrganisation(b, Within(a), &l) }); err != nil {
		return Organisation{}, err
	}
	return OrganisationOf(l)
}

// QueueListOrganisationsOfUser queues a page of the organisations the
// user is a member of, oldest first, and how many there are in all; both
// return nothing once the user is no longer active.
func QueueListOrganisationsOfUser(b *pgx.Batch, userID saasapi.ID, page Page, dst *PageOf[Organisation]) {
	b.Queue(`SELECT `+organisationColumns+`
		FROM memberships m JOIN organisations o ON o.id = m.organisation_id
		WHERE m.user_id = $1 AND `+UserGate(1)+` ORDER BY o.created_at, o.id LIMIT $2 OFFSET $3`,
		userID, page.Limit, page.Offset).Query(func(rows pgx.Rows) (err error) {
		dst.Items, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Organisation, error) { return scanOrganisation(row) })
		return err
	})
	b.Queue(`SELECT count(*) FROM memberships WHERE user_id = $1 AND `+UserGate(1), userID).
		QueryRow(func(row pgx.Row) error { return row.Scan(&dst.Total) })
}
