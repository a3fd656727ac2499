package projections

import (
	"slices"
	"testing"
)

// TestEveryTableIsScopedOrGlobal: a read table added to Tables must say
// whether a rebuild of one organisation empties its rows (orgColumns) or
// leaves it alone (GlobalTables), and every aggregate can be recomputed
// for one organisation.
func TestEveryTableIsScopedOrGlobal(t *testing.T) {
	for _, table := range Tables {
		_, scoped := orgColumns[table]
		if scoped == slices.Contains(GlobalTables, table) {
			t.Errorf("read table %s must be in exactly one of orgColumns and GlobalTables", table)
		}
	}
	for _, agg := range aggregates {
		if _, ok := orgColumns[agg.table]; !ok || agg.recomputeOrg == "" {
			t.Errorf("aggregate %s has no organisation column or no per-organisation recompute", agg.table)
		}
	}
}
