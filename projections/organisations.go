package projections

import (
	"context"
	"errors"
	"fmt"
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

const organisationColumns = `o.id, o.name, o.slug, o.version, o.created_at, o.updated_at`

func scanOrganisation(row pgx.Row) (Organisation, error) {
	var o Organisation
	err := row.Scan(&o.ID, &o.Name, &o.Slug, &o.Version, &o.CreatedAt, &o.UpdatedAt)
	return o, err
}

// OrganisationAccess reports whether the organisation exists and the role
// the user holds in it (empty when not a member, or when userID is empty as
// for API keys). It runs before any tenant row is read.
func OrganisationAccess(ctx context.Context, q Querier, orgID, userID saasapi.ID) (exists bool, role saasapi.Role, err error) {
	var r *string
	err = q.QueryRow(ctx, `SELECT m.role FROM organisations o
		LEFT JOIN memberships m ON m.organisation_id = o.id AND m.user_id = $2
		WHERE o.id = $1`, orgID, userID).Scan(&r)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("organisation access: %w", err)
	}
	if r != nil {
		role = saasapi.Role(*r)
	}
	return true, role, nil
}

// GetOrganisation returns the organisation the access was granted for.
func GetOrganisation(ctx context.Context, q Querier, a saasapi.Access) (Organisation, error) {
	if err := checkAccess(a); err != nil {
		return Organisation{}, err
	}
	o, err := scanOrganisation(q.QueryRow(ctx, `SELECT `+organisationColumns+` FROM organisations o WHERE o.id = $1`,
		a.OrganisationID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Organisation{}, saasapi.Errorf(saasapi.ENOTFOUND, saasapi.MsgOrgNotFound)
	}
	if err != nil {
		return Organisation{}, fmt.Errorf("get organisation: %w", err)
	}
	return o, nil
}

// ListOrganisationsOfUser returns the organisations the user is a member of,
// oldest first, and how many there are in all.
func ListOrganisationsOfUser(ctx context.Context, q Querier, userID saasapi.ID, page Page) ([]Organisation, int, error) {
	return listPage(ctx, q, "organisations", `SELECT `+organisationColumns+`
		FROM memberships m JOIN organisations o ON o.id = m.organisation_id
		WHERE m.user_id = $1 ORDER BY o.created_at, o.id LIMIT $2 OFFSET $3`,
		`SELECT count(*) FROM memberships WHERE user_id = $1`, scanOrganisation, page, userID)
}
