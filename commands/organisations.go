package commands

import (
	"context"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/projections"
)

var (
	slugPattern  = regexp.MustCompile(`^[a-z0-9]+(?:-[a-z0-9]+)*$`)
	nonSlugChars = regexp.MustCompile(`[^a-z0-9]+`)
)

// DeriveSlug turns an organisation name into a slug the way the original
// service did: lower-case, runs of other characters become "-", trimmed;
// shorter than 3 gets an "-org" suffix (or is "org" when empty); at most 80.
func DeriveSlug(name string) string {
	slug := strings.Trim(nonSlugChars.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if len(slug) < 3 {
		if slug == "" {
			slug = "org"
		} else {
			slug += "-org"
		}
	}
	if len(slug) > 80 {
		slug = slug[:80]
	}
	return strings.Trim(slug, "-")
}

func validSlug(slug string) bool {
	return len(slug) >= 3 && len(slug) <= 80 && slugPattern.MatchString(slug)
}

var (
	fieldErrOrgName = saasapi.FieldError{Field: "name", Message: "name must be between 1 and 120 characters"}
	fieldErrSlug    = saasapi.FieldError{Field: "slug",
		Message: "slug must be 3 to 80 lower-case letters, digits and single hyphens"}
)

// CreateOrganisationInput is the body of POST /orgs.
type CreateOrganisationInput struct {
	Name string
	Slug *string
}

// decideCreateOrganisation validates the input and returns the payload of
// organisation.created.
func decideCreateOrganisation(in CreateOrganisationInput) (saasapi.OrganisationCreated, error) {
	var fields []saasapi.FieldError
	fields = checkName(fields, in.Name, 1, 120, fieldErrOrgName)
	slug := ""
	if in.Slug != nil {
		slug = *in.Slug
		if !validSlug(slug) {
			fields = append(fields, fieldErrSlug)
		}
	} else {
		slug = DeriveSlug(in.Name)
	}
	if len(fields) > 0 {
		return saasapi.OrganisationCreated{}, saasapi.Invalid(saasapi.MsgValidation, fields...)
	}
	return saasapi.OrganisationCreated{Name: in.Name, Slug: slug}, nil
}

// CreateOrganisation creates an organisation with its own ledger; the
// creator becomes its first owner in the same transaction.
func (s *Service) CreateOrganisation(ctx context.Context, meta Meta, in CreateOrganisationInput) (projections.Organisation, error) {
	var org projections.Organisation
	_, err := s.CreateOrganisationIdempotent(ctx, meta, in, nil, func(o projections.Organisation) (Rendered, error) {
		org = o
		return Rendered{}, nil
	})
	return org, err
}

// CreateOrganisationIdempotent is CreateOrganisation for the transport: with
// idem set it executes once per key and replays the stored response
// afterwards; render turns the new organisation into that response.
func (s *Service) CreateOrganisationIdempotent(ctx context.Context, meta Meta, in CreateOrganisationInput,
	idem *Idempotency, render Render[projections.Organisation],
) (Outcome, error) {
	created, err := decideCreateOrganisation(in)
	if err != nil {
		return Outcome{}, err
	}
	if meta.Principal.Type != saasapi.PrincipalUser {
		return Outcome{}, saasapi.Errorf(saasapi.EUNAUTHENTICATED, saasapi.MsgInvalidToken)
	}
	orgID := saasapi.NewID()
	// No ledger exists yet to lock: a concurrent request with the same
	// key waits on the idempotency record instead.
	c := command{meta: meta, ledger: orgID, newLedger: saasapi.LedgerOrganisation, userGate: true, idem: idem}
	c.decide = func(_ saasapi.Access, head eventstore.Head, _ *pgx.Batch) ([]saasapi.NewEvent, error) {
		return []saasapi.NewEvent{
			s.newEvent(meta, head, saasapi.StreamOrganisation, orgID, 1, saasapi.EventOrganisationCreated, created),
			s.newEvent(meta, head, saasapi.StreamMembership, saasapi.NewID(), 1, saasapi.EventMemberAdded,
				saasapi.MemberAdded{UserID: meta.Principal.UserID, Role: saasapi.RoleOwner}),
		}, nil
	}
	c.render = func(recorded []saasapi.Event) (Rendered, error) {
		return render(projections.CreatedOrganisation(recorded[0]))
	}
	_, out, err := s.run(ctx, c)
	return out, err
}

// UpdateOrganisationInput is the body of PATCH /orgs/{id}; nil fields are
// left unchanged.
type UpdateOrganisationInput struct {
	Name *string
	Slug *string
}

// decideUpdateOrganisation returns the organisation.updated payload, or nil
// when the request changes nothing.
func decideUpdateOrganisation(current projections.Organisation, in UpdateOrganisationInput) (*saasapi.OrganisationUpdated, error) {
	if in.Name == nil && in.Slug == nil {
		return nil, saasapi.Invalid(saasapi.MsgOrgFieldRequired)
	}
	var fields []saasapi.FieldError
	if in.Name != nil {
		fields = checkName(fields, *in.Name, 1, 120, fieldErrOrgName)
	}
	if in.Slug != nil && !validSlug(*in.Slug) {
		fields = append(fields, fieldErrSlug)
	}
	if len(fields) > 0 {
		return nil, saasapi.Invalid(saasapi.MsgValidation, fields...)
	}
	upd := &saasapi.OrganisationUpdated{ChangedFields: []string{}}
	if in.Name != nil && *in.Name != current.Name {
		upd.ChangedFields = append(upd.ChangedFields, "name")
		upd.Name = in.Name
	}
	if in.Slug != nil && *in.Slug != current.Slug {
		upd.ChangedFields = append(upd.ChangedFields, "slug")
		upd.Slug = in.Slug
	}
	if len(upd.ChangedFields) == 0 {
		return nil, nil
	}
	return upd, nil
}

// ValidateUpdateOrganisation checks an update's input alone, so that the
// transport can reject bad input before any lookup.
func ValidateUpdateOrganisation(in UpdateOrganisationInput) error {
	_, err := decideUpdateOrganisation(projections.Organisation{}, in)
	return err
}

// UpdateOrganisation renames an organisation or changes its slug.
func (s *Service) UpdateOrganisation(ctx context.Context, meta Meta, orgID saasapi.ID, in UpdateOrganisationInput) (projections.Organisation, error) {
	if err := ValidateUpdateOrganisation(in); err != nil {
		return projections.Organisation{}, err
	}
	var current, after projections.Lookup[projections.Organisation]
	c := orgCommand(meta, orgID, saasapi.PermUpdateOrganisation)
	c.load = func(b *pgx.Batch, sc projections.Scope) error { return projections.QueueOrganisation(b, sc, &current) }
	c.decide = func(_ saasapi.Access, head eventstore.Head, _ *pgx.Batch) ([]saasapi.NewEvent, error) {
		o, err := projections.OrganisationOf(current)
		if err != nil {
			return nil, err
		}
		if err := checkIfMatch(meta, o.Version); err != nil {
			return nil, err
		}
		upd, err := decideUpdateOrganisation(o, in)
		if err != nil || upd == nil {
			return nil, err
		}
		return one(s.newEvent(meta, head, saasapi.StreamOrganisation, orgID, o.Version+1,
			saasapi.EventOrganisationUpdated, *upd))
	}
	c.result = func(b *pgx.Batch, a saasapi.Access) error {
		return projections.QueueOrganisation(b, projections.Within(a), &after)
	}
	if _, _, err := s.run(ctx, c); err != nil {
		return projections.Organisation{}, err
	}
	return projections.OrganisationOf(after)
}
