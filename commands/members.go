package commands

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/projections"
)

// errOwnerOnly is what an admin gets for touching owners: granting,
// changing or removing an owner is the owners' business.
func errOwnerOnly() error { return saasapi.Errorf(saasapi.EFORBIDDEN, saasapi.MsgInsufficientPerms) }

func errLastOwner() error { return saasapi.Errorf(saasapi.ECONFLICT, saasapi.MsgLastOwner) }

// AddMemberInput is the body of POST /orgs/{id}/members.
type AddMemberInput struct {
	UserID saasapi.ID
	Role   saasapi.Role
}

// decideAddMember applies the contract's order after RBAC: an admin may not
// grant owner (403), the user must exist (404) and not be a member yet (409).
func decideAddMember(actor saasapi.Role, role saasapi.Role, userExists, alreadyMember bool) error {
	switch {
	case actor != saasapi.RoleOwner && role == saasapi.RoleOwner:
		return errOwnerOnly()
	case !userExists:
		return saasapi.Errorf(saasapi.ENOTFOUND, saasapi.MsgUserNotFound)
	case alreadyMember:
		return saasapi.Errorf(saasapi.ECONFLICT, saasapi.MsgAlreadyMember)
	}
	return nil
}

// AddMember adds an existing user to an organisation.
func (s *Service) AddMember(ctx context.Context, meta Meta, orgID saasapi.ID, in AddMemberInput) (projections.Membership, error) {
	if in.Role == "" {
		in.Role = saasapi.RoleMember
	}
	var user projections.Lookup[projections.User]
	var existing, after projections.Lookup[projections.Membership]
	c := orgCommand(meta, orgID, saasapi.PermManageMembers)
	c.load = func(b *pgx.Batch, sc projections.Scope) error {
		if err := projections.QueueUserInOrg(b, sc, in.UserID, &user); err != nil {
			return err
		}
		return projections.QueueMembership(b, sc, in.UserID, &existing)
	}
	c.decide = func(a saasapi.Access, head eventstore.Head, _ *pgx.Batch) ([]saasapi.NewEvent, error) {
		if err := decideAddMember(a.Role, in.Role, user.Found, existing.Found); err != nil {
			return nil, err
		}
		return one(s.newEvent(meta, head, saasapi.StreamMembership, saasapi.NewID(), 1,
			saasapi.EventMemberAdded, saasapi.MemberAdded{UserID: in.UserID, Role: in.Role}))
	}
	c.result = readMembership(&after, in.UserID)
	if _, _, err := s.run(ctx, c); err != nil {
		return projections.Membership{}, err
	}
	return projections.MembershipOf(after)
}

// readMembership queues the read-back of userID's membership into m.
func readMembership(m *projections.Lookup[projections.Membership], userID saasapi.ID) func(*pgx.Batch, saasapi.Access) error {
	return func(b *pgx.Batch, a saasapi.Access) error {
		return projections.QueueMembership(b, projections.Within(a), userID, m)
	}
}

// decideChangeRole returns the member.role_changed payload, or nil when the
// role stays the same. An admin may neither change an owner's role nor
// make anyone an owner; the last owner cannot be demoted.
func decideChangeRole(actor saasapi.Role, current projections.Membership, newRole saasapi.Role, owners int) (*saasapi.MemberRoleChanged, error) {
	if actor != saasapi.RoleOwner && (current.Role == saasapi.RoleOwner || newRole == saasapi.RoleOwner) {
		return nil, errOwnerOnly()
	}
	if current.Role == newRole {
		return nil, nil
	}
	if current.Role == saasapi.RoleOwner && owners <= 1 {
		return nil, errLastOwner()
	}
	return &saasapi.MemberRoleChanged{UserID: current.UserID, OldRole: current.Role, NewRole: newRole}, nil
}

// decideRemoveMember returns the member.removed payload. An admin may not
// remove an owner; a member leaving (self) may, whatever their role, except
// the last owner, who no organisation may lose.
func decideRemoveMember(actor saasapi.Role, current projections.Membership, owners int, self bool) (saasapi.MemberRemoved, error) {
	if !self && actor != saasapi.RoleOwner && current.Role == saasapi.RoleOwner {
		return saasapi.MemberRemoved{}, errOwnerOnly()
	}
	if current.Role == saasapi.RoleOwner && owners <= 1 {
		return saasapi.MemberRemoved{}, errLastOwner()
	}
	return saasapi.MemberRemoved{UserID: current.UserID, Role: current.Role}, nil
}

// memberWrite loads the target membership (404 when missing), checks
// If-Match and the owner count, then lets decide pick the event; with
// after set, the membership is read back into it. perm is what the caller
// needs: managing members, or leaving for a member who removes themself.
func (s *Service) memberWrite(ctx context.Context, meta Meta, orgID, userID saasapi.ID, perm saasapi.Permission,
	decide func(a saasapi.Access, current projections.Membership, owners int) (eventType string, data any, err error),
	after *projections.Lookup[projections.Membership],
) error {
	var (
		current projections.Lookup[projections.Membership]
		owners  int
	)
	c := orgCommand(meta, orgID, perm)
	c.load = func(b *pgx.Batch, sc projections.Scope) error {
		if err := projections.QueueMembership(b, sc, userID, &current); err != nil {
			return err
		}
		return projections.QueueCountOwners(b, sc, &owners)
	}
	c.decide = func(a saasapi.Access, head eventstore.Head, _ *pgx.Batch) ([]saasapi.NewEvent, error) {
		m, err := projections.MembershipOf(current)
		if err != nil {
			return nil, err
		}
		eventType, data, err := decide(a, m, owners)
		if err != nil {
			return nil, err
		}
		// If-Match is checked after the permission rules so that a caller
		// who may not act learns nothing from a version mismatch, and
		// before the no-op case so that a stale precondition fails even
		// when the write would change nothing.
		if err := checkIfMatch(meta, m.Version); err != nil {
			return nil, err
		}
		if eventType == "" {
			return nil, nil
		}
		return one(s.newEvent(meta, head, saasapi.StreamMembership, m.ID, m.Version+1, eventType, data))
	}
	if after != nil {
		c.result = readMembership(after, userID)
	}
	_, _, err := s.run(ctx, c)
	return err
}

// ChangeMemberRole changes a member's role.
func (s *Service) ChangeMemberRole(ctx context.Context, meta Meta, orgID, userID saasapi.ID, role saasapi.Role) (projections.Membership, error) {
	var after projections.Lookup[projections.Membership]
	err := s.memberWrite(ctx, meta, orgID, userID, saasapi.PermManageMembers,
		func(a saasapi.Access, current projections.Membership, owners int) (string, any, error) {
			changed, err := decideChangeRole(a.Role, current, role, owners)
			if err != nil || changed == nil {
				return "", nil, err
			}
			return saasapi.EventMemberRoleChanged, *changed, nil
		}, &after)
	if err != nil {
		return projections.Membership{}, err
	}
	return projections.MembershipOf(after)
}

// RemoveMember removes a user from an organisation. Removing oneself is
// leaving, which every member may do; removing another needs the manage
// members permission.
func (s *Service) RemoveMember(ctx context.Context, meta Meta, orgID, userID saasapi.ID) error {
	self := meta.Principal.Type == saasapi.PrincipalUser && meta.Principal.UserID == userID
	perm := saasapi.PermManageMembers
	if self {
		perm = saasapi.PermLeaveOrganisation
	}
	return s.memberWrite(ctx, meta, orgID, userID, perm,
		func(a saasapi.Access, current projections.Membership, owners int) (string, any, error) {
			removed, err := decideRemoveMember(a.Role, current, owners, self)
			if err != nil {
				return "", nil, err
			}
			return saasapi.EventMemberRemoved, removed, nil
		}, nil)
}
