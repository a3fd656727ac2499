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

func init() {
	aggregates = append(aggregates, &aggregate{
		table: "audit_counts",
		recompute: `INSERT INTO audit_counts (ledger_id, filter, value, events)
			SELECT ledger_id, 'action', event_type, count(*) FROM events WHERE ledger_type = 'organisation' GROUP BY 1, 3
			UNION ALL
			SELECT ledger_id, 'target_type', stream_type, count(*) FROM events WHERE ledger_type = 'organisation' GROUP BY 1, 3
			UNION ALL
			SELECT ledger_id, 'actor_user_id', actor_user_id, count(*) FROM events
				WHERE ledger_type = 'organisation' AND actor_user_id IS NOT NULL GROUP BY 1, 3
			UNION ALL
			SELECT ledger_id, 'actor_api_key_id', actor_api_key_id, count(*) FROM events
				WHERE ledger_type = 'organisation' AND actor_api_key_id IS NOT NULL GROUP BY 1, 3`,
		recomputeOrg: `INSERT INTO audit_counts (ledger_id, filter, value, events)
			SELECT ledger_id, 'action', event_type, count(*) FROM events WHERE ledger_id = $1 GROUP BY 1, 3
			UNION ALL
			SELECT ledger_id, 'target_type', stream_type, count(*) FROM events WHERE ledger_id = $1 GROUP BY 1, 3
			UNION ALL
			SELECT ledger_id, 'actor_user_id', actor_user_id, count(*) FROM events
				WHERE ledger_id = $1 AND actor_user_id IS NOT NULL GROUP BY 1, 3
			UNION ALL
			SELECT ledger_id, 'actor_api_key_id', actor_api_key_id, count(*) FROM events
				WHERE ledger_id = $1 AND actor_api_key_id IS NOT NULL GROUP BY 1, 3`,
		every: func(b *pgx.Batch, e saasapi.Event, _ any) {
			if e.LedgerType != saasapi.LedgerOrganisation {
				return
			}
			b.Queue(countEvent, e.LedgerID, e.Type, e.StreamType, e.Actor.UserID.Ptr(), e.Actor.APIKeyID.Ptr())
		},
	})
}
