package projections

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
)

// Project is the projects read model.
type Project struct {
	ID                saasapi.ID
	OrganisationID    saasapi.ID
	Name              string
	Description       *string
	Status            string
	CreatedByUserID   *saasapi.ID
	CreatedByAPIKeyID *saasapi.ID
	UpdatedByUserID   *saasapi.ID
	UpdatedByAPIKeyID *saasapi.ID
	Version           int64
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// Project statuses.
const (
	ProjectActive   = "active"
	ProjectArchived = "archived"
)

// Counter statements. They run before the projects row changes, so they
// can read the project's old status; they read it by key through
// projectRow, for the reason given there.
var (
	countUp = `INSERT INTO project_counts (organisation_id, status, live) VALUES ($1, $2, 1)
		ON CONFLICT (organisation_id, status) DO UPDATE SET live = project_counts.live + 1`
	// countMoveOut and countMoveIn move a live project from its current
	// status to $3 (both do nothing when the status stays).
	countMoveOut = `UPDATE project_counts c SET live = c.live - 1 FROM ` + projectRow("$2") + ` p
		WHERE p.deleted_at IS NULL AND p.status <> $3
			AND c.organisation_id = p.organisation_id AND c.status = p.status`
	countMoveIn = `INSERT INTO project_counts (organisation_id, status, live)
		SELECT p.organisation_id, $3, 1 FROM ` + projectRow("$2") + ` p
		WHERE p.deleted_at IS NULL AND p.status <> $3
		ON CONFLICT (organisation_id, status) DO UPDATE SET live = project_counts.live + 1`
	countDown = `UPDATE project_counts c SET live = c.live - 1 FROM ` + projectRow("$2") + ` p
		WHERE p.deleted_at IS NULL
			AND c.organisation_id = p.organisation_id AND c.status = p.status`
	// countPrune drops counters that reached zero: a replay's recompute
	// has no row for a status without live projects, and the two must be
	// equal.
	countPrune = `DELETE FROM project_counts WHERE organisation_id = $1 AND live = 0`
)

func init() {
	aggregates = append(aggregates, &aggregate{
		table: "project_counts",
		recompute: `INSERT INTO project_counts (organisation_id, status, live)
			SELECT organisation_id, status, count(*) FROM projects WHERE deleted_at IS NULL GROUP BY 1, 2`,
		recomputeOrg: `INSERT INTO project_counts (organisation_id, status, live)
			SELECT organisation_id, status, count(*) FROM projects
			WHERE organisation_id = $1 AND deleted_at IS NULL GROUP BY 1, 2`,
		handlers: map[string]handler{
			saasapi.EventProjectCreated: func(b *pgx.Batch, e saasapi.Event, p any) {
				b.Queue(countUp, e.LedgerID, p.(*saasapi.ProjectCreated).Status)
			},
			saasapi.EventProjectUpdated: func(b *pgx.Batch, e saasapi.Event, p any) {
				if d := p.(*saasapi.ProjectUpdated); d.Status != nil {
					b.Queue(countMoveOut, e.LedgerID, e.StreamID, *d.Status)
					b.Queue(countMoveIn, e.LedgerID, e.StreamID, *d.Status)
					b.Queue(countPrune, e.LedgerID)
				}
			},
			saasapi.EventProjectDeleted: func(b *pgx.Batch, e saasapi.Event, _ any) {
				b.Queue(countDown, e.LedgerID, e.StreamID)
				b.Queue(countPrune, e.LedgerID)
			},
		},
	})
	register(saasapi.EventProjectCreated, func(b *pgx.Batch, e saasapi.Event, p any) {
		d := p.(*saasapi.ProjectCreated)
		b.Queue(`INSERT INTO projects (organisation_id, id, name, description, status,
				created_by_user_id, created_by_api_key_id, updated_by_user_id, updated_by_api_key_id,
				version, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $6, $7, $8, $9, $9)`,
			e.LedgerID, e.StreamID, d.ProjectName, d.Description, d.Status,
			e.Actor.UserID.Ptr(), e.Actor.APIKeyID.Ptr(), e.StreamVersion, e.OccurredAt)
	})
	register(saasapi.EventProjectUpdated, func(b *pgx.Batch, e saasapi.Event, p any) {
		d := p.(*saasapi.ProjectUpdated)
		b.Queue(`UPDATE projects SET name = coalesce($3, name), status = coalesce($4, status),
				description = CASE WHEN $5 THEN $6 ELSE description END,
				updated_by_user_id = $7, updated_by_api_key_id = $8, version = $9, updated_at = $10
			WHERE organisation_id = $1 AND id = $2`,
			e.LedgerID, e.StreamID, d.Name, d.Status, d.Description.Set, d.Description.Value,
			e.Actor.UserID.Ptr(), e.Actor.APIKeyID.Ptr(), e.StreamVersion, e.OccurredAt)
	})
	register(saasapi.EventProjectDeleted, func(b *pgx.Batch, e saasapi.Event, _ any) {
		b.Queue(`UPDATE projects SET deleted_at = $3, updated_by_user_id = $4, updated_by_api_key_id = $5,
				version = $6, updated_at = $3
			WHERE organisation_id = $1 AND id = $2`,
			e.LedgerID, e.StreamID, e.OccurredAt, e.Actor.UserID.Ptr(), e.Actor.APIKeyID.Ptr(), e.StreamVersion)
	})
}

// projectFold is a projects row as the bulk path folds it: the handlers
// above, restated in memory.
type projectFold struct {
	orgID, id, name, status     string
	description                 *string
	createdByUser, createdByKey *string
	updatedByUser, updatedByKey *string
	deletedAt                   *time.Time
	version                     int64
	createdAt, updatedAt        time.Time
}

func (r *projectFold) table() string { return "projects" }

func (r *projectFold) values() []any {
	return []any{r.orgID, r.id, r.name, r.description, r.status, r.createdByUser, r.createdByKey,
		r.updatedByUser, r.updatedByKey, r.deletedAt, r.version, r.createdAt, r.updatedAt}
}

func init() {
	copyColumns["projects"] = []string{"organisation_id", "id", "name", "description", "status",
		"created_by_user_id", "created_by_api_key_id", "updated_by_user_id", "updated_by_api_key_id",
		"deleted_at", "version", "created_at", "updated_at"}
	registerFold(saasapi.EventProjectCreated, func(cur row, e saasapi.Event, p any) (row, error) {
		if cur != nil {
			return nil, errCreatedTwice(e)
		}
		d := p.(*saasapi.ProjectCreated)
		return &projectFold{orgID: string(e.LedgerID), id: string(e.StreamID), name: d.ProjectName,
			description: d.Description, status: d.Status,
			createdByUser: idPtr(e.Actor.UserID), createdByKey: idPtr(e.Actor.APIKeyID),
			updatedByUser: idPtr(e.Actor.UserID), updatedByKey: idPtr(e.Actor.APIKeyID),
			version: e.StreamVersion, createdAt: e.OccurredAt, updatedAt: e.OccurredAt}, nil
	})
	registerFold(saasapi.EventProjectUpdated, func(cur row, e saasapi.Event, p any) (row, error) {
		r, ok := cur.(*projectFold)
		if !ok {
			return cur, nil
		}
		d := p.(*saasapi.ProjectUpdated)
		if d.Name != nil {
			r.name = *d.Name
		}
		if d.Status != nil {
			r.status = *d.Status
		}
		if d.Description.Set {
			r.description = d.Description.Value
		}
		r.updatedByUser, r.updatedByKey = idPtr(e.Actor.UserID), idPtr(e.Actor.APIKeyID)
		r.version, r.updatedAt = e.StreamVersion, e.OccurredAt
		return r, nil
	})
	registerFold(saasapi.EventProjectDeleted, func(cur row, e saasapi.Event, _ any) (row, error) {
		r, ok := cur.(*projectFold)
		if !ok {
			return cur, nil
		}
		r.deletedAt = timePtr(e.OccurredAt)
		r.updatedByUser, r.updatedByKey = idPtr(e.Actor.UserID), idPtr(e.Actor.APIKeyID)
		r.version, r.updatedAt = e.StreamVersion, e.OccurredAt
		return r, nil
	})
}

// CreatedProject is the row the project.created handler writes, as the
// read model returns it: what a creation answers without reading it back.
func CreatedProject(e saasapi.Event) Project {
	c := payloadOf[saasapi.ProjectCreated](e)
	return Project{ID: e.StreamID, OrganisationID: e.LedgerID, Name: c.ProjectName, Description: c.Description,
		Status: c.Status, CreatedByUserID: e.Actor.UserID.Ptr(), CreatedByAPIKeyID: e.Actor.APIKeyID.Ptr(),
		UpdatedByUserID: e.Actor.UserID.Ptr(), UpdatedByAPIKeyID: e.Actor.APIKeyID.Ptr(),
		Version: e.StreamVersion, CreatedAt: e.OccurredAt, UpdatedAt: e.OccurredAt}
}

const projectColumns = `id, organisation_id, name, description, status, created_by_user_id, created_by_api_key_id,
	updated_by_user_id, updated_by_api_key_id, version, created_at, updated_at`

func scanProject(row pgx.Row) (Project, error) {
	var p Project
	err := row.Scan(&p.ID, &p.OrganisationID, &p.Name, &p.Description, &p.Status, &p.CreatedByUserID,
		&p.CreatedByAPIKeyID, &p.UpdatedByUserID, &p.UpdatedByAPIKeyID, &p.Version, &p.CreatedAt, &p.UpdatedAt)
	return p, err
}

// projectRow is the FROM item of a project found by its key, $1 the
// organisation and the given parameter the project's ID; whether the
// project is live (deleted_at IS NULL) is asked outside it.
//
// The fence (OFFSET 0) keeps that condition out of the scan, so the scan
// can only be the primary key's probe of one entry. Given the condition
// with the key, the planner may instead pick a partial index (every index
// of projects but the primary key is WHERE deleted_at IS NULL) whose first
// column is the organisation and whose later column is the ID: costed the
// same when the statistics are missing or older than the organisation's
// growth, it reads every entry of the organisation, so that one GET costs
// more the larger the organisation (docs/performance.md).
func projectRow(param string) string {
	return `(SELECT * FROM projects WHERE organisation_id = $1 AND id = ` + param + ` OFFSET 0)`
}

var projectByID = `SELECT ` + projectColumns + ` FROM ` + projectRow("$2") + ` p
	WHERE deleted_at IS NULL{scope}`

// QueueProject queues the read of a live (not deleted) project of s.
func QueueProject(b *pgx.Batch, s Scope, id saasapi.ID, dst *Lookup[Project]) error {
	return queueRow(b, s, projectByID, scanProject, dst, id)
}

// ReadProject is GET project in one statement: the gate (run it with
// GatedOne) and the live project, joined.
func ReadProject(g *Gate, id saasapi.ID, dst *Lookup[Project]) func(b *pgx.Batch) {
	return func(b *pgx.Batch) {
		queueGatedOne(b, g, projectColumns, "id", "t.deleted_at IS NULL", scanProject, dst,
			func(n int) (string, []any) { return projectRow("$" + strconv.Itoa(n)), []any{id} })
	}
}

// ProjectOf is the project a Lookup found, or 404 project was not found.
func ProjectOf(l Lookup[Project]) (Project, error) {
	return l.or(saasapi.Errorf(saasapi.ENOTFOUND, saasapi.MsgProjectNotFound))
}

// GetProject returns a live (not deleted) project of the authorized
// organisation, or 404 project was not found.
func GetProject(ctx context.Context, q Querier, a saasapi.Access, id saasapi.ID) (Project, error) {
	var l Lookup[Project]
	if err := send(ctx, q, "get project", func(b *pgx.Batch) error { return QueueProject(b, Within(a), id, &l) }); err != nil {
		return Project{}, err
	}
	return ProjectOf(l)
}

// ProjectSort is a sort key of the project list.
type ProjectSort string

// The sort keys. Each is followed by the id as a tie-breaker; status is
// followed by created_at first.
const (
	SortCreatedAt ProjectSort = "created_at"
	SortName      ProjectSort = "name"
	SortStatus    ProjectSort = "status"
)

// sortExpr is the SQL of each sort key; names sort case-insensitively.
var sortExpr = map[ProjectSort]string{
	SortCreatedAt: "created_at",
	SortName:      "lower(name)",
	SortStatus:    "status",
}

// ProjectQuery selects a page of projects.
type ProjectQuery struct {
	Status string // "" for any
	Name   string // case-insensitive substring; "" for any
	Sort   ProjectSort
	Desc   bool
	Page   Page
	// After, when set, continues a keyset scan after this project (the
	// last of the previous page); Page.Offset is then ignored.
	After *Project
}

// SortKey returns the value of p that q sorts by, as text, for cursors.
// For names it is the name itself: the database lower-cases it exactly as
// it does the sort column (Go's strings.ToLower can disagree with the
// database's lower() outside ASCII, which would skip or repeat rows).
func (q ProjectQuery) SortKey(p Project) string {
	switch q.Sort {
	case SortName:
		return p.Name
	case SortStatus:
		return p.Status
	}
	return p.CreatedAt.UTC().Format(time.RFC3339Nano)
}

// escapeLike makes s match literally inside a LIKE pattern.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// ProjectPage is a page of the project list.
type ProjectPage struct {
	Items []Project
	Total int
	More  bool
}

// ListProjects returns one page of the authorized organisation's live
// projects and the number of all that match the filters.
func ListProjects(ctx context.Context, q Querier, a saasapi.Access, pq ProjectQuery) (items []Project, total int, more bool, err error) {
	var page ProjectPage
	err = send(ctx, q, "list projects", func(b *pgx.Batch) error { return QueueListProjects(b, Within(a), pq, &page) })
	return page.Items, page.Total, page.More, err
}

// QueueListProjects queues the page and its total (both in one round
// trip). It fetches one row more than the limit to tell whether another
// page follows.
func QueueListProjects(b *pgx.Batch, s Scope, pq ProjectQuery, dst *ProjectPage) error {
	expr, ok := sortExpr[pq.Sort]
	if !ok {
		return fmt.Errorf("list projects: unknown sort %q", pq.Sort)
	}
	where := []string{"organisation_id = $1", "deleted_at IS NULL"}
	var args []any
	if pq.Status != "" {
		args = append(args, pq.Status)
		where = append(where, fmt.Sprintf("status = $%d", len(args)+1))
	}
	if pq.Name != "" {
		// Lower-cased by the database on both sides, so that a name always
		// matches itself whatever letters it holds.
		args = append(args, "%"+escapeLike(pq.Name)+"%")
		where = append(where, fmt.Sprintf("lower(name) LIKE lower($%d)", len(args)+1))
	}
	countSQL := `SELECT count(*) FROM projects WHERE ` + strings.Join(where, " AND ") + gateMark
	countArgs := append([]any(nil), args...)
	if pq.Name == "" {
		// Without a name filter the total is kept by the projection.
		countSQL = `SELECT coalesce(sum(live), 0)::bigint FROM project_counts WHERE organisation_id = $1` + gateMark
		if pq.Status != "" {
			countSQL = `SELECT coalesce(sum(live), 0)::bigint FROM project_counts
				WHERE organisation_id = $1 AND status = $2` + gateMark
		}
	}

	dir, cmp := "ASC", ">"
	if pq.Desc {
		dir, cmp = "DESC", "<"
	}
	// Within a status, projects follow their creation: the order of
	// projects_status_created_idx, which so serves this sort as well as
	// the status filter, and no index of its own is maintained for it.
	cols, order := expr, expr+" "+dir
	if pq.Sort == SortStatus {
		cols, order = expr+", created_at", order+", created_at "+dir
	}
	offset := pq.Page.Offset
	if pq.After != nil {
		key, param := any(pq.SortKey(*pq.After)), fmt.Sprintf("$%d", len(args)+2)
		switch pq.Sort {
		case SortCreatedAt:
			key, param = pq.After.CreatedAt, param+"::timestamptz"
		case SortName:
			param = "lower(" + param + ")" // the same expression as the sort column
		}
		args = append(args, key)
		if pq.Sort == SortStatus {
			args = append(args, pq.After.CreatedAt)
			param += fmt.Sprintf(", $%d::timestamptz", len(args)+1)
		}
		args = append(args, pq.After.ID)
		where = append(where, fmt.Sprintf("(%s, id) %s (%s, $%d)", cols, cmp, param, len(args)+1))
		offset = 0
	}
	args = append(args, pq.Page.Limit+1, offset)
	listSQL := fmt.Sprintf(`SELECT %s FROM projects WHERE %s%s ORDER BY %s, id %s LIMIT $%d OFFSET $%d`,
		projectColumns, strings.Join(where, " AND "), gateMark, order, dir, len(args), len(args)+1)

	listSQL, listArgs, err := scoped(s, listSQL, args...)
	if err != nil {
		return err
	}
	countSQL, countArgs, err = scoped(s, countSQL, countArgs...)
	if err != nil {
		return err
	}
	b.Queue(listSQL, listArgs...).Query(func(rows pgx.Rows) (err error) {
		dst.Items, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Project, error) { return scanProject(row) })
		if len(dst.Items) > pq.Page.Limit {
			dst.Items, dst.More = dst.Items[:pq.Page.Limit], true
		}
		return err
	})
	b.Queue(countSQL, countArgs...).QueryRow(func(row pgx.Row) error { return row.Scan(&dst.Total) })
	return nil
}
