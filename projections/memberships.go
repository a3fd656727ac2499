package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
)

// Membership is the memberships read model, joined with its user.
type Membership struct {
	ID             saasapi.ID
	OrganisationID saasapi.ID
	UserID         saasapi.ID
	Role           saasapi.Role
	Version        int64
	CreatedAt      time.Time
	UpdatedAt      time.Time
	User           User
}

func init() {
	register(saasapi.EventMemberAdded, func(b *pgx.Batch, e saasapi.Event, p any) {
		d := p.(*saasapi.MemberAdded)
		b.Queue(`INSERT INTO memberships (organisation_id, id, user_id, role, version, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $6)`, e.LedgerID, e.StreamID, d.UserID, d.Role, e.StreamVersion, e.OccurredAt)
	})
	register(saasapi.EventMemberRoleChanged, func(b *pgx.Batch, e saasapi.Event, p any) {
		d := p.(*saasapi.MemberRoleChanged)
		b.Queue(`UPDATE memberships SET role = $3, version = $4, updated_at = $5
			WHERE organisation_id = $1 AND id = $2`, e.LedgerID, e.StreamID, d.NewRole, e.StreamVersion, e.OccurredAt)
	})
	register(saasapi.EventMemberRemoved, func(b *pgx.Batch, e saasapi.Event, _ any) {
		b.Queue(`DELETE FROM memberships WHERE organisation_id = $1 AND id = $2`, e.LedgerID, e.StreamID)
	})
}

const membershipColumns = `m.id, m.organisation_id, m.user_id, m.role, m.version, m.created_at, m.updated_at,
	u.id, u.email, u.display_name, u.is_active, u.version, u.created_at, u.updated_at`

func scanMembership(row pgx.Row) (Membership, error) {
	var m Membership
	err := row.Scan(&m.ID, &m.OrganisationID, &m.UserID, &m.Role, &m.Version, &m.CreatedAt, &m.UpdatedAt,
		&m.User.ID, &m.User.Email, &m.User.DisplayName, &m.User.IsActive, &m.User.Version, &m.User.CreatedAt, &m.User.UpdatedAt)
	return m, err
}

// GetMembership returns the membership of a user in the authorized
// organisation, or a not-found error.
func GetMembership(ctx context.Context, q Querier, a saasapi.Access, userID saasapi.ID) (Membership, error) {
	if err := checkAccess(a); err != nil {
		return Membership{}, err
	}
	m, err := scanMembership(q.QueryRow(ctx, `SELECT `+membershipColumns+`
		FROM memberships m JOIN users u ON u.id = m.user_id
		WHERE m.organisation_id = $1 AND m.user_id = $2`, a.OrganisationID, userID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Membership{}, saasapi.Errorf(saasapi.ENOTFOUND, saasapi.MsgMembershipNotFound)
	}
	if err != nil {
		return Membership{}, fmt.Errorf("get membership: %w", err)
	}
	return m, nil
}

// ListMembers returns the memberships of the authorized organisation,
// oldest first, and the total count.
func ListMembers(ctx context.Context, q Querier, a saasapi.Access, page Page) ([]Membership, int, error) {
	if err := checkAccess(a); err != nil {
		return nil, 0, err
	}
	return listPage(ctx, q, "members", `SELECT `+membershipColumns+`
		FROM memberships m JOIN users u ON u.id = m.user_id
		WHERE m.organisation_id = $1 ORDER BY m.created_at, m.id LIMIT $2 OFFSET $3`,
		`SELECT count(*) FROM memberships WHERE organisation_id = $1`, scanMembership, page, a.OrganisationID)
}

// CountOwners returns how many owners the organisation has; the caller
// holds the organisation's ledger lock, so the count cannot change before
// commit.
func CountOwners(ctx context.Context, q Querier, a saasapi.Access) (int, error) {
	if err := checkAccess(a); err != nil {
		return 0, err
	}
	var n int
	err := q.QueryRow(ctx, `SELECT count(*) FROM memberships WHERE organisation_id = $1 AND role = 'owner'`,
		a.OrganisationID).Scan(&n)
	return n, err
}

// MembershipSummary is one entry of a user's membership list (GET /me).
type MembershipSummary struct {
	MembershipID     saasapi.ID
	OrganisationID   saasapi.ID
	OrganisationName string
	OrganisationSlug string
	Role             saasapi.Role
}

// ListMembershipsOfUser returns every membership of a user with its
// organisation's name and slug.
func ListMembershipsOfUser(ctx context.Context, q Querier, userID saasapi.ID) ([]MembershipSummary, error) {
	rows, err := q.Query(ctx, `SELECT m.id, o.id, o.name, o.slug, m.role
		FROM memberships m JOIN organisations o ON o.id = m.organisation_id
		WHERE m.user_id = $1 ORDER BY m.created_at, m.id`, userID)
	if err != nil {
		return nil, fmt.Errorf("list memberships: %w", err)
	}
	ms, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (MembershipSummary, error) {
		var s MembershipSummary
		err := row.Scan(&s.MembershipID, &s.OrganisationID, &s.OrganisationName, &s.OrganisationSlug, &s.Role)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("list memberships: %w", err)
	}
	return ms, nil
}
