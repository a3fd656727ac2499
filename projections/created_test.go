package projections_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/internal/testdb"
	"github.com/saasapi/saasapi/projections"
)

// utc normalises the time fields that the database returns in its session
// time zone, so that rows compare by value.
func utc(ts ...*time.Time) {
	for _, t := range ts {
		*t = t.UTC()
	}
}

// TestCreatedRowsMatchTheReadTables: a creation answers (and stores for
// replays) the row computed next to its projection, without reading it
// back; it must be the row the read table then returns.
func TestCreatedRowsMatchTheReadTables(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	app, svc := service(t, db.URL)
	user, err := svc.Register(ctx, commands.Meta{}, commands.RegisterInput{
		Email: "creator@example.com", Password: "correct horse battery staple", DisplayName: "Creator"})
	if err != nil {
		t.Fatal(err)
	}
	meta := commands.Meta{Principal: saasapi.UserPrincipal(user.ID), RequestID: "req-created"}

	var org projections.Organisation
	if _, err := svc.CreateOrganisationIdempotent(ctx, meta, commands.CreateOrganisationInput{Name: "Created"}, nil,
		func(o projections.Organisation) (commands.Rendered, error) { org = o; return commands.Rendered{}, nil }); err != nil {
		t.Fatal(err)
	}
	a, err := saasapi.Authorize(meta.Principal, org.ID, saasapi.RoleOwner, saasapi.PermManageAPIKeys)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := projections.GetOrganisation(ctx, app, a)
	if err != nil {
		t.Fatal(err)
	}
	utc(&org.CreatedAt, &org.UpdatedAt, &stored.CreatedAt, &stored.UpdatedAt)
	if !reflect.DeepEqual(org, stored) {
		t.Errorf("created organisation %+v, read table has %+v", org, stored)
	}

	description := "with a description"
	var project projections.Project
	if _, err := svc.CreateProject(ctx, meta, org.ID, commands.CreateProjectInput{Name: "Created", Description: &description}, nil,
		func(p projections.Project) (commands.Rendered, error) { project = p; return commands.Rendered{}, nil }); err != nil {
		t.Fatal(err)
	}
	storedProject, err := projections.GetProject(ctx, app, a, project.ID)
	if err != nil {
		t.Fatal(err)
	}
	utc(&project.CreatedAt, &project.UpdatedAt, &storedProject.CreatedAt, &storedProject.UpdatedAt)
	if !reflect.DeepEqual(project, storedProject) {
		t.Errorf("created project %+v, read table has %+v", project, storedProject)
	}

	var key projections.APIKey
	if _, err := svc.CreateAPIKey(ctx, meta, org.ID, "Created", nil,
		func(c commands.CreatedAPIKey) (commands.Rendered, error) {
			key = c.Key
			return commands.Rendered{}, nil
		}); err != nil {
		t.Fatal(err)
	}
	storedKey, err := projections.GetAPIKey(ctx, app, a, key.ID)
	if err != nil {
		t.Fatal(err)
	}
	utc(&key.CreatedAt, &key.UpdatedAt, &storedKey.CreatedAt, &storedKey.UpdatedAt)
	if !reflect.DeepEqual(key, storedKey) {
		t.Errorf("created key %+v, read table has %+v", key, storedKey)
	}
}
