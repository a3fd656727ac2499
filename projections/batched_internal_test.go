package projections

import (
	"testing"

	"github.com/saasapi/saasapi"
)

// Batched restates, for a project creation, what the aggregates do: a new
// aggregate that a creation moves must be added to Batched too.
func TestBatchedKnowsTheAggregatesOfACreation(t *testing.T) {
	for _, agg := range aggregates {
		if agg.handlers[saasapi.EventProjectCreated] != nil && agg.table != "project_counts" {
			t.Errorf("aggregate %s handles project creations, which Batched collects without it", agg.table)
		}
		if agg.every != nil && agg.table != "audit_counts" {
			t.Errorf("aggregate %s counts every event, which Batched does not for creations", agg.table)
		}
	}
}
