package projections

import (
	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
)

// audit_counts holds the exact totals of the audit list's single-field
// filters per organisation ledger (migration 004): one counter per filter
// and value, so that a filtered total is one lookup instead of a count of
// every matching event. Each event of an organisation ledger adds one to
// its action, its target type and its actor; eventstore.ListAudit reads
// them.

// countEvent adds e to the counters of its filters, in one statement.
const countEvent = `INSERT INTO audit_counts (ledger_id, filter, value, events)
	SELECT $1, c.f, c.v, 1 FROM (VALUES ('action', $2::text), ('target_type', $3::text),
		('actor_user_id', $4::text), ('actor_api_key_id', $5::text)) AS c(f, v)
	WHERE c.v IS NOT NULL
	ON CONFLICT (ledger_id, filter, value) DO UPDATE SET events = audit_counts.events + 1`

// countEvents fills audit_counts from the events that match where, in one
// scan of them: each event is counted under its four filters.
func countEvents(where string) string {
	return `INSERT INTO audit_counts (ledger_id, filter, value, events)
		SELECT e.ledger_id, c.f, c.v, count(*) FROM events e
			CROSS JOIN LATERAL (VALUES ('action', e.event_type), ('target_type', e.stream_type),
				('actor_user_id', e.actor_user_id), ('actor_api_key_id', e.actor_api_key_id)) AS c(f, v)
		WHERE ` + where + ` AND c.v IS NOT NULL GROUP BY 1, 2, 3`
}

func init() {
	aggregates = append(aggregates, &aggregate{
		table:        "audit_counts",
		recompute:    countEvents(`e.ledger_type = 'organisation'`),
		recomputeOrg: countEvents(`e.ledger_id = $1`),
		every: func(b *pgx.Batch, e saasapi.Event, _ any) {
			if e.LedgerType != saasapi.LedgerOrganisation {
				return
			}
			b.Queue(countEvent, e.LedgerID, e.Type, e.StreamType, e.Actor.UserID.Ptr(), e.Actor.APIKeyID.Ptr())
		},
	})
}
