package projections

import (
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
)

// Batched applies the events of a group of commands that share one
// transaction (commands/group.go): the same rows as Apply, event by event,
// except that project creations and the counters they move are collected
// and written by Flush in one statement per table for the whole group,
// instead of four statements per creation. PostgreSQL spends about as much
// on starting and ending a small statement as on the rows it writes, so a
// group of sixteen creations costs it far less this way.
//
// Any other event first flushes what was collected and is then applied
// as Apply applies it, so that its statements see the rows of the
// creations before it (a deletion's counter reads the project's row).
// Flush must run before the batch is sent.
type Batched struct {
	b *pgx.Batch

	projects      createdRows
	projectCounts counters
	auditCounts   counters
}

// NewBatched returns a Batched that queues on b.
func NewBatched(b *pgx.Batch) *Batched {
	return &Batched{b: b}
}

// createdRows are the projects rows of collected creations, a slice per
// column.
type createdRows struct {
	orgs, ids, names, statuses []string
	descriptions               []*string
	users, keys                []*saasapi.ID
	versions                   []int64
	at                         []time.Time
}

// counters sums increments per key, in the order the keys came.
type counters struct {
	order []counterKey
	n     map[counterKey]int64
}

// counterKey is a counter row's key: (organisation, status) of
// project_counts, or (ledger, filter, value) of audit_counts.
type counterKey struct{ a, b, c string }

func (c *counters) add(k counterKey) {
	if c.n == nil {
		c.n = map[counterKey]int64{}
	}
	if _, ok := c.n[k]; !ok {
		c.order = append(c.order, k)
	}
	c.n[k]++
}

// columns returns the keys' columns and the sums, in order.
func (c *counters) columns() (a, b, cs []string, n []int64) {
	for _, k := range c.order {
		a, b, cs, n = append(a, k.a), append(b, k.b), append(cs, k.c), append(n, c.n[k])
	}
	return a, b, cs, n
}

// Apply collects a project creation, or flushes and applies any other
// event as Apply does.
func (a *Batched) Apply(e saasapi.Event) error {
	if e.Type != saasapi.EventProjectCreated {
		a.Flush()
		return Apply(a.b, e)
	}
	payload, err := saasapi.DecodePayload(e)
	if err != nil {
		return err
	}
	d := payload.(*saasapi.ProjectCreated)
	p := &a.projects
	p.orgs, p.ids, p.names, p.statuses = append(p.orgs, string(e.LedgerID)), append(p.ids, string(e.StreamID)),
		append(p.names, d.ProjectName), append(p.statuses, d.Status)
	p.descriptions = append(p.descriptions, d.Description)
	p.users, p.keys = append(p.users, e.Actor.UserID.Ptr()), append(p.keys, e.Actor.APIKeyID.Ptr())
	p.versions, p.at = append(p.versions, e.StreamVersion), append(p.at, e.OccurredAt)
	a.projectCounts.add(counterKey{string(e.LedgerID), d.Status, ""})
	// What countEvent counts (auditcounts.go), for the same event.
	if e.LedgerType == saasapi.LedgerOrganisation {
		l := string(e.LedgerID)
		a.auditCounts.add(counterKey{l, "action", e.Type})
		a.auditCounts.add(counterKey{l, "target_type", e.StreamType})
		if e.Actor.UserID != "" {
			a.auditCounts.add(counterKey{l, "actor_user_id", string(e.Actor.UserID)})
		}
		if e.Actor.APIKeyID != "" {
			a.auditCounts.add(counterKey{l, "actor_api_key_id", string(e.Actor.APIKeyID)})
		}
	}
	return nil
}

// Flush queues the collected rows: the projects, then their counters.
func (a *Batched) Flush() {
	p := &a.projects
	if len(p.ids) > 0 {
		a.b.Queue(`INSERT INTO projects (organisation_id, id, name, description, status,
				created_by_user_id, created_by_api_key_id, updated_by_user_id, updated_by_api_key_id,
				version, created_at, updated_at)
			SELECT org, id, name, description, status, by_user, by_key, by_user, by_key, version, at, at
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
				$8::bigint[], $9::timestamptz[]) AS p(org, id, name, description, status, by_user, by_key, version, at)`,
			p.orgs, p.ids, p.names, p.descriptions, p.statuses, p.users, p.keys, p.versions, p.at)
		*p = createdRows{}
	}
	if len(a.projectCounts.order) > 0 {
		orgs, statuses, _, n := a.projectCounts.columns()
		a.b.Queue(`INSERT INTO project_counts (organisation_id, status, live)
			SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
			ON CONFLICT (organisation_id, status) DO UPDATE SET live = project_counts.live + EXCLUDED.live`,
			orgs, statuses, n)
		a.projectCounts = counters{}
	}
	if len(a.auditCounts.order) > 0 {
		ledgers, filters, values, n := a.auditCounts.columns()
		a.b.Queue(`INSERT INTO audit_counts (ledger_id, filter, value, events)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
			ON CONFLICT (ledger_id, filter, value) DO UPDATE SET events = audit_counts.events + EXCLUDED.events`,
			ledgers, filters, values, n)
		a.auditCounts = counters{}
	}
}
