package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/saasapi/saasapi"
)

// Gate is the access check of one request, done by the database in the
// same round trip as the reads it guards. The principal's credential was
// verified by the transport (a token's signature, an API key's secret);
// the gate adds what only the database knows: that the user is still
// active or the key not revoked, that the organisation exists, and the
// user's role in it.
//
// A batch of gated reads is the gate's own statement, which says why
// access is refused when it is, followed by the reads, each of which
// carries the gate's predicate in its WHERE clause: a read returns rows
// only when the gate grants access, so no tenant row leaves the database
// for a caller who may not see it, and the whole request costs one round
// trip.
type Gate struct {
	Principal saasapi.Principal
	OrgID     saasapi.ID
	Perm      saasapi.Permission

	state gateState
}

// gateState is what the gate statement found.
type gateState struct {
	callerOK, orgExists bool
	role                *string
	scanned             bool
}

// NewGate returns the gate of principal for perm in orgID.
func NewGate(p saasapi.Principal, orgID saasapi.ID, perm saasapi.Permission) *Gate {
	return &Gate{Principal: p, OrgID: orgID, Perm: perm}
}

// holders are the roles the predicate accepts: the user roles with the
// permission, or for an API key "api_key" when keys hold it.
func (g *Gate) holders() []string {
	if g.Principal.Type == saasapi.PrincipalAPIKey {
		if saasapi.APIKeyMay(g.Perm) {
			return []string{"api_key"}
		}
		return []string{}
	}
	var out []string
	for _, r := range saasapi.RolesWith(g.Perm) {
		out = append(out, string(r))
	}
	return out
}

// callerSQL is true when the principal may still act at all: the user is
// active, or the key exists in its organisation and is not revoked. $a is
// the principal's ID, $b the key's organisation.
func (g *Gate) callerSQL(a, b string) string {
	if g.Principal.Type == saasapi.PrincipalAPIKey {
		return `EXISTS (SELECT 1 FROM api_keys k WHERE k.organisation_id = ` + b + ` AND k.id = ` + a +
			` AND k.revoked_at IS NULL)`
	}
	return `EXISTS (SELECT 1 FROM users u WHERE u.id = ` + a + ` AND u.is_active)`
}

// Predicate returns the SQL condition that holds only when access is
// granted, for a statement whose $1 is the organisation's ID, and the
// arguments it adds from $n on.
func (g *Gate) Predicate(n int) (string, []any) {
	p := func(i int) string { return "$" + strconv.Itoa(n+i) }
	if g.Principal.Type == saasapi.PrincipalAPIKey {
		return `(` + p(1) + ` = $1 AND 'api_key' = ANY(` + p(2) + `::text[]) AND ` + g.callerSQL(p(0), p(1)) + `)`,
			[]any{g.Principal.APIKeyID, g.Principal.OrganisationID, g.holders()}
	}
	return `(` + g.callerSQL(p(0), "") + ` AND EXISTS (SELECT 1 FROM memberships gm WHERE gm.organisation_id = $1
			AND gm.user_id = ` + p(0) + ` AND gm.role = ANY(` + p(1) + `::text[])))`,
		[]any{g.Principal.UserID, g.holders()}
}

// Queue queues the gate's statement on b; it must be the first of the
// batch's gated reads, and Access reads its answer after the batch ran.
func (g *Gate) Queue(b *pgx.Batch) {
	scan := func(row pgx.Row) error {
		g.state.scanned = true
		return row.Scan(&g.state.callerOK, &g.state.orgExists, &g.state.role)
	}
	const org = `EXISTS (SELECT 1 FROM organisations WHERE id = $1)`
	if g.Principal.Type == saasapi.PrincipalAPIKey {
		b.Queue(`SELECT `+g.callerSQL("$2", "$3")+`, `+org+`, NULL::text`,
			g.OrgID, g.Principal.APIKeyID, g.Principal.OrganisationID).QueryRow(scan)
		return
	}
	b.Queue(`SELECT `+g.callerSQL("$2", "")+`, `+org+`,
			(SELECT role FROM memberships WHERE organisation_id = $1 AND user_id = $2)`,
		g.OrgID, g.Principal.UserID).QueryRow(scan)
}

// Access applies the contract's order to what the gate found: 401 when
// the principal may no longer act, 404 when the organisation does not
// exist, then 403 (not a member, or without the permission).
func (g *Gate) Access() (saasapi.Access, error) {
	if !g.state.scanned {
		return saasapi.Access{}, errors.New("projections: gate read before its batch ran")
	}
	if !g.state.callerOK {
		return saasapi.Access{}, saasapi.Errorf(saasapi.EUNAUTHENTICATED, saasapi.MsgInvalidTokenOrKey)
	}
	if !g.state.orgExists {
		return saasapi.Access{}, saasapi.Errorf(saasapi.ENOTFOUND, saasapi.MsgOrgNotFound)
	}
	var role saasapi.Role
	if g.state.role != nil && g.Principal.Type == saasapi.PrincipalUser {
		role = saasapi.Role(*g.state.role)
	}
	return saasapi.Authorize(g.Principal, g.OrgID, role, g.Perm)
}

// GatedRead runs the gate and the reads that queue adds to b in one
// round trip and returns the access, or why it was refused. queue builds
// each read with the gate's Predicate; their results are valid only when
// the access is granted.
func GatedRead(ctx context.Context, q Querier, g *Gate, queue func(b *pgx.Batch) error) (saasapi.Access, error) {
	b := &pgx.Batch{}
	g.Queue(b)
	if err := queue(b); err != nil {
		return saasapi.Access{}, err
	}
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return saasapi.Access{}, fmt.Errorf("gated read: %w", err)
	}
	return g.Access()
}

// GatedOne runs a read that carries its gate in its own statement (a
// queueGatedOne read, such as ReadProject) in one round trip and returns
// the access, or why it was refused.
//
// The one statement runs as a query, not as a batch: the same single round
// trip without pgx's pipeline bookkeeping, which costs a tenth of the
// request's allocations.
func GatedOne(ctx context.Context, q Querier, g *Gate, queue func(b *pgx.Batch)) (saasapi.Access, error) {
	b := &pgx.Batch{}
	queue(b)
	var err error
	if len(b.QueuedQueries) == 1 && b.QueuedQueries[0].Fn != nil {
		err = b.QueuedQueries[0].Fn(asQuery{ctx: ctx, q: q, qq: b.QueuedQueries[0]})
	} else {
		err = q.SendBatch(ctx, b).Close()
	}
	if err != nil {
		return saasapi.Access{}, fmt.Errorf("gated read: %w", err)
	}
	return g.Access()
}

// asQuery gives a queued statement's callback the results of running the
// statement as a query of its own.
type asQuery struct {
	ctx context.Context
	q   Querier
	qq  *pgx.QueuedQuery
}

func (r asQuery) Exec() (pgconn.CommandTag, error) {
	return r.q.Exec(r.ctx, r.qq.SQL, r.qq.Arguments...)
}
func (r asQuery) Query() (pgx.Rows, error) { return r.q.Query(r.ctx, r.qq.SQL, r.qq.Arguments...) }
func (r asQuery) QueryRow() pgx.Row        { return r.q.QueryRow(r.ctx, r.qq.SQL, r.qq.Arguments...) }
func (r asQuery) Close() error             { return nil }

// Tx is nil: the statement began no transaction.
func (r asQuery) Tx() pgx.Tx { return nil }

// UserGate is the check of a route that belongs to the signed-in user
// alone (GET /me, the user's organisations): the user still exists and is
// active. Predicate-style, for a statement whose $n is the user's ID.
func UserGate(n int) string {
	return `EXISTS (SELECT 1 FROM users gu WHERE gu.id = $` + strconv.Itoa(n) + ` AND gu.is_active)`
}

// QueueUserActive queues the statement that tells a user route whether its
// caller may act; active is set when the batch runs.
func QueueUserActive(b *pgx.Batch, userID saasapi.ID, active *bool) {
	b.Queue(`SELECT `+UserGate(1), userID).QueryRow(func(row pgx.Row) error { return row.Scan(active) })
}

// queueGatedOne queues the gate and the read of at most one row as a
// single statement, for the hottest reads: the gate's row is joined to
// the row, which the join's condition (on, plus the gate's grant) leaves
// out unless access is granted. row returns the FROM item that finds the
// row by its key (a subquery, using $1 for the organisation and the args
// from $n on, where n follows the gate's own arguments) and those args; on
// refers to it as t; cols are the row's columns in the order scan reads
// them, and id is a column that is never NULL in a row found.
//
// The gate is fenced (OFFSET 0) so that its three probes run once: pulled
// up into the join, each would be planned twice, in the select list and in
// the join's condition.
//
// The statement's text is built once per shape (gatedOneSQL), and a row
// found is scanned in one Scan of all its columns: pgx plans the scan of
// every column anew whenever a Scan's destinations differ from the last.
func queueGatedOne[T any](b *pgx.Batch, g *Gate, cols, id, on string, scan func(pgx.Row) (T, error),
	dst *Lookup[T], row func(n int) (string, []any),
) {
	apiKey := g.Principal.Type == saasapi.PrincipalAPIKey
	gargs := []any{g.OrgID, g.Principal.UserID}
	if apiKey {
		gargs = []any{g.OrgID, g.Principal.APIKeyID, g.Principal.OrganisationID}
	}
	from, qargs := row(len(gargs) + 1)
	sql := gatedOneSQL(gatedOneShape{apiKey: apiKey, perm: g.Perm, cols: cols, id: id, on: on, from: from}, g)
	b.Queue(sql, append(gargs, qargs...)...).Query(func(rows pgx.Rows) error {
		defer rows.Close()
		if !rows.Next() {
			if err := rows.Err(); err != nil {
				return err
			}
			return errors.New("projections: gated read returned no gate row")
		}
		// The fourth column is the row's id: NULL (no raw value) unless a
		// row was found and access granted.
		found := rows.RawValues()[3] != nil
		head := offsetRow{rows: rows, head: []any{&g.state.callerOK, &g.state.orgExists, &g.state.role, nil}}
		if !found {
			if err := head.Scan(make([]any, len(rows.FieldDescriptions())-len(head.head))...); err != nil {
				return err
			}
			g.state.scanned = true
			return rows.Err()
		}
		v, err := scan(head)
		if err != nil {
			return err
		}
		g.state.scanned = true
		dst.Value, dst.Found = v, true
		return rows.Err()
	})
}

// gatedOneShape is what the text of a queueGatedOne statement depends on.
type gatedOneShape struct {
	apiKey             bool
	perm               saasapi.Permission
	cols, id, on, from string
}

var gatedOneTexts sync.Map // gatedOneShape -> string

// gatedOneSQL returns the statement of queueGatedOne for the shape. The
// roles that hold the permission are code's constants, written into the
// text as a literal array rather than sent as a parameter on every read.
func gatedOneSQL(k gatedOneShape, g *Gate) string {
	if v, ok := gatedOneTexts.Load(k); ok {
		return v.(string)
	}
	var gate, granted string
	const org = `EXISTS (SELECT 1 FROM organisations WHERE id = $1) AS org_exists`
	holders := roleArray(g.holders())
	if k.apiKey {
		gate = `SELECT ` + g.callerSQL("$2", "$3") + ` AS caller_ok, ` + org + `, NULL::text AS role`
		granted = `g.caller_ok AND g.org_exists AND $3 = $1 AND 'api_key' = ANY(` + holders + `)`
	} else {
		gate = `SELECT ` + g.callerSQL("$2", "") + ` AS caller_ok, ` + org + `,
			(SELECT role FROM memberships WHERE organisation_id = $1 AND user_id = $2) AS role`
		granted = `g.caller_ok AND g.org_exists AND g.role = ANY(` + holders + `)`
	}
	sql := `SELECT g.caller_ok, g.org_exists, g.role, t.` + k.id + `, ` + k.cols + `
		FROM (` + gate + ` OFFSET 0) g LEFT JOIN ` + k.from + ` t ON ` + k.on + ` AND ` + granted
	gatedOneTexts.Store(k, sql)
	return sql
}

// roleArray writes role names, which are constants of the code, as an SQL
// text array literal.
func roleArray(roles []string) string {
	var b strings.Builder
	b.WriteString("ARRAY[")
	for i, r := range roles {
		if r == "" || strings.TrimLeft(r, "abcdefghijklmnopqrstuvwxyz_") != "" {
			panic("projections: role name " + strconv.Quote(r) + " is not an SQL-safe constant")
		}
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("'" + r + "'")
	}
	b.WriteString("]::text[]")
	return b.String()
}

// offsetRow scans a row whose first columns go to head (nil skips one),
// and the rest to the destinations Scan is given, in one Scan of the row.
type offsetRow struct {
	rows pgx.Rows
	head []any
}

func (r offsetRow) Scan(dest ...any) error {
	return r.rows.Scan(append(r.head, dest...)...)
}
