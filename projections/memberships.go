package projections

import (
	"context"
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

// membershipFold is a memberships row as the bulk path folds it.
type membershipFold struct {
	orgID, id, userID, role string
	version                 int64
	createdAt, updatedAt    time.Time
}

func (r *membershipFold) table() string { return "memberships" }

func (r *membershipFold) values() []any {
	return []any{r.orgID, r.id, r.userID, r.role, r.version, r.createdAt, r.updatedAt}
}

func init() {
	copyColumns["memberships"] = []string{"organisation_id", "id", "user_id", "role", "version", "created_at", "updated_at"}
	registerFold(saasapi.EventMemberAdded, func(cur row, e saasapi.Event, p any) (row, error) {
		if cur != nil {
			return nil, errCreatedTwice(e)
		}
		d := p.(*saasapi.MemberAdded)
		return &membershipFold{orgID: string(e.LedgerID), id: string(e.StreamID), userID: string(d.UserID),
			role: string(d.Role), version: e.StreamVersion, createdAt: e.OccurredAt, updatedAt: e.OccurredAt}, nil
	})
	registerFold(saasapi.EventMemberRoleChanged, func(cur row, e saasapi.Event, p any) (row, error) {
		if r, ok := cur.(*membershipFold); ok {
			r.role = string(p.(*saasapi.MemberRoleChanged).NewRole)
			r.version, r.updatedAt = e.StreamVersion, e.OccurredAt
		}
		return cur, nil
	})
	registerFold(saasapi.EventMemberRemoved, func(row, saasapi.Event, any) (row, error) { return nil, nil })
}

const membershipColumns = `m.id, m.organisation_id, m.user_id, m.role, m.version, m.created_at, m.updated_at,
	u.id, coalesce(u.email, ''), coalesce(u.display_name, ''), u.is_active, u.version, u.created_at, u.updated_at`

func scanMembership(row pgx.Row) (Membership, error) {
	var m Membership
	err := row.Scan(&m.ID, &m.OrganisationID, &m.UserID, &m.Role, &m.Version, &m.CreatedAt, &m.UpdatedAt,
		&m.User.ID, &m.User.Email, &m.User.DisplayName, &m.User.IsActive, &m.User.Version, &m.User.CreatedAt, &m.User.UpdatedAt)
	return m, err
}

const membershipByUser = `SELECT ` + membershipColumns + `
	FROM memberships m JOIN users u ON u.id = m.user_id
	WHERE m.organisation_id = $1 AND m.user_id = $2{scope}`

// QueueMembership queues the read of userID's membership in s.
func QueueMembership(b *pgx.Batch, s Scope, userID saasapi.ID, dst *Lookup[Membership]) error {
	return queueRow(b, s, membershipByUser, scanMembership, dst, userID)
}

// MembershipOf is the membership a Lookup found, or 404.
func MembershipOf(l Lookup[Membership]) (Membership, error) {
	return l.or(saasapi.Errorf(saasapi.ENOTFOUND, saasapi.MsgMembershipNotFound))
}

// GetMembership returns the membership of a user in the authorized
// organisation, or a not-found error.
func GetMembership(ctx context.Context, q Querier, a saasapi.Access, userID saasapi.ID) (Membership, error) {
	var l Lookup[Membership]
	if err := send(ctx, q, "get membership", func(b *pgx.Batch) error { return QueueMembership(b, Within(a), userID, &l) }); err != nil {
		return Membership{}, err
	}
	return MembershipOf(l)
}

// QueueListMembers queues a page of the memberships of s, oldest first,
// and their total.
func QueueListMembers(b *pgx.Batch, s Scope, page Page, dst *PageOf[Membership]) error {
	return queuePage(b, s, `SELECT `+membershipColumns+`
		FROM memberships m JOIN users u ON u.id = m.user_id
		WHERE m.organisation_id = $1{scope} ORDER BY m.created_at, m.id LIMIT $2 OFFSET $3`,
		`SELECT count(*) FROM memberships WHERE organisation_id = $1{scope}`, scanMembership, page, dst)
}

// QueueCountOwners queues the count of the owners of s. Under the
// organisation's ledger lock the count cannot change before commit.
func QueueCountOwners(b *pgx.Batch, s Scope, dst *int) error {
	sql, args, err := scoped(s, `SELECT count(*) FROM memberships WHERE organisation_id = $1 AND role = 'owner'{scope}`)
	if err != nil {
		return err
	}
	b.Queue(sql, args...).QueryRow(func(row pgx.Row) error { return row.Scan(dst) })
	return nil
}

// MembershipSummary is one entry of a user's membership list (GET /me).
type MembershipSummary struct {
	MembershipID     saasapi.ID
	OrganisationID   saasapi.ID
	OrganisationName string
	OrganisationSlug string
	Role             saasapi.Role
}

// QueueMembershipsOfUser queues the read of every membership of a user
// with its organisation's name and slug (nothing once the user is no
// longer active).
func QueueMembershipsOfUser(b *pgx.Batch, userID saasapi.ID, dst *[]MembershipSummary) {
	b.Queue(`SELECT m.id, o.id, o.name, o.slug, m.role
		FROM memberships m JOIN organisations o ON o.id = m.organisation_id
		WHERE m.user_id = $1 AND `+UserGate(1)+` ORDER BY m.created_at, m.id`, userID).Query(func(rows pgx.Rows) (err error) {
		*dst, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (MembershipSummary, error) {
			var s MembershipSummary
			err := row.Scan(&s.MembershipID, &s.OrganisationID, &s.OrganisationName, &s.OrganisationSlug, &s.Role)
			return s, err
		})
		return err
	})
}
