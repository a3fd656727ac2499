package commands

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/projections"
)

var (
	fieldErrProjectName = saasapi.FieldError{Field: "name", Message: "name must be between 1 and 160 characters"}
	fieldErrDescription = saasapi.FieldError{Field: "description", Message: "description must be at most 2000 characters"}
	fieldErrStatus      = saasapi.FieldError{Field: "status", Message: "status must be active or archived"}
)

func validProjectStatus(s string) bool {
	return s == projections.ProjectActive || s == projections.ProjectArchived
}

// CreateProjectInput is the body of POST /orgs/{id}/projects.
type CreateProjectInput struct {
	Name        string
	Description *string
	Status      *string // nil means active
}

// decideCreateProject validates the input and returns the payload of
// project.created.
func decideCreateProject(in CreateProjectInput) (saasapi.ProjectCreated, error) {
	status := projections.ProjectActive
	if in.Status != nil {
		status = *in.Status
	}
	var fields []saasapi.FieldError
	fields = checkName(fields, in.Name, 1, 160, fieldErrProjectName)
	if in.Description != nil && !lengthBetween(*in.Description, 0, 2000) {
		fields = append(fields, fieldErrDescription)
	}
	if !validProjectStatus(status) {
		fields = append(fields, fieldErrStatus)
	}
	if len(fields) > 0 {
		return saasapi.ProjectCreated{}, saasapi.Invalid(saasapi.MsgValidation, fields...)
	}
	return saasapi.ProjectCreated{ProjectName: in.Name, Status: status, Description: in.Description}, nil
}

// CreateProject creates a project; a user with write access or an API key
// of the organisation may. With idem set, it executes once per key and
// replays the stored response afterwards.
func (s *Service) CreateProject(ctx context.Context, meta Meta, orgID saasapi.ID, in CreateProjectInput,
	idem *Idempotency, render Render[projections.Project],
) (Outcome, error) {
	created, err := decideCreateProject(in)
	if err != nil {
		return Outcome{}, err
	}
	projectID := saasapi.NewID()
	c := orgCommand(meta, orgID, saasapi.PermWriteProjects)
	c.idem, c.idemOrg = idem, orgID
	// The decision is the input's, validated above: nothing another
	// command of the organisation does can change it (ADR 0009).
	c.shared = true
	c.decide = func(_ saasapi.Access, head eventstore.Head, _ *pgx.Batch) ([]saasapi.NewEvent, error) {
		return one(s.newEvent(meta, head, saasapi.StreamProject, projectID, 1, saasapi.EventProjectCreated, created))
	}
	c.render = func(recorded []saasapi.Event) (Rendered, error) {
		return render(projections.CreatedProject(recorded[0]))
	}
	_, out, err := s.run(ctx, c)
	return out, err
}

// UpdateProjectInput is the body of PATCH /orgs/{id}/projects/{project_id}:
// nil fields stay; Description distinguishes absent from null (clear).
type UpdateProjectInput struct {
	Name        *string
	Status      *string
	Description saasapi.OptionalString
}

// decideUpdateProject returns the project.updated payload, or nil when
// nothing changes.
func decideUpdateProject(current projections.Project, in UpdateProjectInput) (*saasapi.ProjectUpdated, error) {
	if in.Name == nil && in.Status == nil && !in.Description.Set {
		return nil, saasapi.Invalid(saasapi.MsgProjectFieldRequired)
	}
	var fields []saasapi.FieldError
	if in.Name != nil {
		fields = checkName(fields, *in.Name, 1, 160, fieldErrProjectName)
	}
	if in.Description.Value != nil && !lengthBetween(*in.Description.Value, 0, 2000) {
		fields = append(fields, fieldErrDescription)
	}
	if in.Status != nil && !validProjectStatus(*in.Status) {
		fields = append(fields, fieldErrStatus)
	}
	if len(fields) > 0 {
		return nil, saasapi.Invalid(saasapi.MsgValidation, fields...)
	}
	upd := &saasapi.ProjectUpdated{ChangedFields: []string{}}
	if in.Name != nil && *in.Name != current.Name {
		upd.ChangedFields = append(upd.ChangedFields, "name")
		upd.Name = in.Name
	}
	if in.Description.Set && !equalStringPtr(in.Description.Value, current.Description) {
		upd.ChangedFields = append(upd.ChangedFields, "description")
		upd.Description = in.Description
	}
	if in.Status != nil && *in.Status != current.Status {
		upd.ChangedFields = append(upd.ChangedFields, "status")
		upd.Status = in.Status
	}
	if len(upd.ChangedFields) == 0 {
		return nil, nil
	}
	return upd, nil
}

func equalStringPtr(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// ValidateUpdateProject checks an update's input alone.
func ValidateUpdateProject(in UpdateProjectInput) error {
	_, err := decideUpdateProject(projections.Project{}, in)
	return err
}

// projectWrite loads the live project under the ledger lock (404 when
// missing or deleted), checks If-Match, and lets decide pick the event;
// with after set, the project is read back into it.
func (s *Service) projectWrite(ctx context.Context, meta Meta, orgID, projectID saasapi.ID,
	decide func(current projections.Project) (eventType string, data any, err error), after *projections.Lookup[projections.Project],
) error {
	var current projections.Lookup[projections.Project]
	c := orgCommand(meta, orgID, saasapi.PermWriteProjects)
	c.load = func(b *pgx.Batch, sc projections.Scope) error {
		return projections.QueueProject(b, sc, projectID, &current)
	}
	c.decide = func(_ saasapi.Access, head eventstore.Head, _ *pgx.Batch) ([]saasapi.NewEvent, error) {
		p, err := projections.ProjectOf(current)
		if err != nil {
			return nil, err
		}
		if err := checkIfMatch(meta, p.Version); err != nil {
			return nil, err
		}
		eventType, data, err := decide(p)
		if err != nil || eventType == "" {
			return nil, err
		}
		return one(s.newEvent(meta, head, saasapi.StreamProject, projectID, p.Version+1, eventType, data))
	}
	if after != nil {
		c.result = func(b *pgx.Batch, a saasapi.Access) error {
			return projections.QueueProject(b, projections.Within(a), projectID, after)
		}
	}
	_, _, err := s.run(ctx, c)
	return err
}

// UpdateProject changes a project's name, description or status.
func (s *Service) UpdateProject(ctx context.Context, meta Meta, orgID, projectID saasapi.ID, in UpdateProjectInput) (projections.Project, error) {
	if err := ValidateUpdateProject(in); err != nil {
		return projections.Project{}, err
	}
	var after projections.Lookup[projections.Project]
	err := s.projectWrite(ctx, meta, orgID, projectID,
		func(current projections.Project) (string, any, error) {
			upd, err := decideUpdateProject(current, in)
			if err != nil || upd == nil {
				return "", nil, err
			}
			return saasapi.EventProjectUpdated, *upd, nil
		}, &after)
	if err != nil {
		return projections.Project{}, err
	}
	return projections.ProjectOf(after)
}

// DeleteProject soft-deletes a project: it disappears from reads, and its
// history stays in the ledger.
func (s *Service) DeleteProject(ctx context.Context, meta Meta, orgID, projectID saasapi.ID) error {
	return s.projectWrite(ctx, meta, orgID, projectID,
		func(current projections.Project) (string, any, error) {
			return saasapi.EventProjectDeleted, saasapi.ProjectDeleted{ProjectName: current.Name}, nil
		}, nil)
}
