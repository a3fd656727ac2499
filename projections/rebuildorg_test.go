package projections_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/projections"
)

func readLedger(ctx context.Context, tx pgx.Tx, ledgerID saasapi.ID, after int64, limit int) ([]saasapi.Event, error) {
	return eventstore.ReadLedger(ctx, tx, ledgerID, after, limit)
}

// TestRebuildOrgTouchesOnlyItsOrganisation: a rebuild of one organisation
// repairs every kind of its drifted rows and leaves the drift of another
// organisation and of the users table as it was.
func TestRebuildOrgTouchesOnlyItsOrganisation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	other, err := w.svc.CreateOrganisation(ctx, w.as(w.owner), commands.CreateOrganisationInput{Name: "Other"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.CreateProject(ctx, w.as(w.owner), other.ID, commands.CreateProjectInput{Name: "theirs"}, nil,
		func(projections.Project) (commands.Rendered, error) { return commands.Rendered{Status: 201}, nil }); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`UPDATE projects SET name = 'drifted' WHERE organisation_id = $1`,
		`UPDATE project_counts SET live = live + 7 WHERE organisation_id = $1`,
		`UPDATE audit_counts SET events = events + 3 WHERE ledger_id = $1`,
		`UPDATE organisations SET name = 'drifted' WHERE id = $1`,
		`DELETE FROM memberships WHERE organisation_id = $1`,
		`UPDATE api_keys SET name = 'drifted' WHERE organisation_id = $1`,
	} {
		if _, err := w.db.Pool.Exec(ctx, sql, w.org); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.db.Pool.Exec(ctx, `UPDATE projects SET name = 'drifted' WHERE organisation_id = $1`, other.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := w.db.Pool.Exec(ctx, `UPDATE users SET display_name = 'drifted' WHERE id = $1`, w.owner); err != nil {
		t.Fatal(err)
	}
	_, diffs, err := projections.Verify(ctx, w.db.Pool, readEvents)
	if err != nil {
		t.Fatal(err)
	}
	before := tablesOf(diffs)
	for _, want := range []string{"projects", "project_counts", "audit_counts", "organisations", "memberships", "api_keys", "users"} {
		if !slices.Contains(before, want) {
			t.Fatalf("Verify after tampering reports %v, want a diff in %s", diffs, want)
		}
	}

	n, err := projections.RebuildOrg(ctx, w.db.Pool, w.org, readLedger, nil)
	if err != nil || n < 10 {
		t.Fatalf("RebuildOrg: %d events, %v; want the organisation's history", n, err)
	}
	_, diffs, err = projections.Verify(ctx, w.db.Pool, readEvents)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 2 {
		t.Fatalf("Verify after RebuildOrg: %v; want only the other organisation's project and the user", diffs)
	}
	for _, d := range diffs {
		key := d.Key
		if (d.Table != "projects" || !contains(key, string(other.ID))) && (d.Table != "users" || !contains(key, string(w.owner))) {
			t.Errorf("RebuildOrg left %v, want only the other organisation's and the user's drift", d)
		}
	}

	for _, id := range []saasapi.ID{w.owner, saasapi.ID("01ARZ3NDEKTSV4RRFFQ69G5FAV")} {
		if _, err := projections.RebuildOrg(ctx, w.db.Pool, id, readLedger, nil); !errors.Is(err, projections.ErrNoOrganisation) {
			t.Errorf("RebuildOrg(%s): %v, want ErrNoOrganisation", id, err)
		}
	}
}

func tablesOf(diffs []projections.Diff) []string {
	var out []string
	for _, d := range diffs {
		out = append(out, d.Table)
	}
	return out
}

func contains(s, sub string) bool { return sub != "" && strings.Contains(s, sub) }

// TestReplayReportsProgress: Verify and Rebuild tell their progress
// functions the total first and end with every event done.
func TestReplayReportsProgress(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	total := w.countEvents(t)
	for name, run := range map[string]func(projections.Progress) error{
		"Verify": func(p projections.Progress) error {
			_, _, err := projections.Verify(ctx, w.db.Pool, readEvents, p)
			return err
		},
		"Rebuild": func(p projections.Progress) error {
			_, err := projections.Rebuild(ctx, w.db.Pool, readEvents, nil, p)
			return err
		},
	} {
		var calls [][2]int64
		if err := run(func(done, total int64) { calls = append(calls, [2]int64{done, total}) }); err != nil {
			t.Fatal(err)
		}
		if len(calls) < 2 || calls[0] != [2]int64{0, total} || calls[len(calls)-1] != [2]int64{total, total} {
			t.Errorf("%s reported %v; want (0, %d) first and (%d, %d) last", name, calls, total, total, total)
		}
	}
}
