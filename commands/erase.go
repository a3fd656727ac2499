package commands

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/projections"
)

// EraseUser erases a person (docs/security.md, personal data): each of
// their memberships ends with member.removed in that organisation's ledger,
// then, in their own ledger, user.erased is appended, their data key and
// credentials are deleted and their users row becomes a tombstone, so that
// their tokens stop working and their email may register again. Every
// ledger is written in its own transaction through the write pipeline.
//
// With a password (DELETE /me) it must be the person's current one, or the
// erasure fails as a sign-in does; without one (the operator command) the
// caller vouched for the request. The last owner of an organisation is
// refused (409) before anything changes, and again under each
// organisation's lock. An erasure interrupted half-way leaves a consistent
// state (each step committed whole) and may simply be repeated.
func (s *Service) EraseUser(ctx context.Context, meta Meta, userID saasapi.ID, password *string) error {
	if password != nil {
		if err := s.checkPassword(ctx, userID, *password); err != nil {
			return err
		}
	}
	orgs, lastOwner, err := s.membershipsOf(ctx, userID)
	if err != nil {
		return err
	}
	if lastOwner {
		return errLastOwner()
	}
	for _, org := range orgs {
		if err := s.endMembership(ctx, meta, org, userID); err != nil {
			return err
		}
	}
	if err := s.eraseOwnLedger(ctx, meta, userID); err != nil {
		return err
	}
	// A membership added while the organisations were being left (the
	// tombstone refuses any later one) ends now too.
	if orgs, _, err = s.membershipsOf(ctx, userID); err != nil {
		return err
	}
	for _, org := range orgs {
		if err := s.endMembership(ctx, meta, org, userID); err != nil {
			return fmt.Errorf("erased, but a membership added meanwhile in %s remains: %w", org, err)
		}
	}
	return nil
}

// checkPassword checks a person's current password as a sign-in does: the
// same failure, whatever is wrong.
func (s *Service) checkPassword(ctx context.Context, userID saasapi.ID, password string) error {
	fail := saasapi.Errorf(saasapi.EUNAUTHENTICATED, saasapi.MsgInvalidCredentials)
	var hash string
	err := s.pool.QueryRow(ctx, `SELECT c.password_hash FROM user_credentials c JOIN users u ON u.id = c.user_id
		WHERE c.user_id = $1 AND u.is_active AND u.email IS NOT NULL`, userID).Scan(&hash)
	if errors.Is(err, pgx.ErrNoRows) || utf8.RuneCountInString(password) > maxPasswordLength {
		s.hasher.VerifyDummy(ctx, password)
		return fail
	}
	if err != nil {
		return fmt.Errorf("read credentials: %w", err)
	}
	ok, err := s.hasher.Verify(ctx, password, hash)
	if err != nil {
		return err
	}
	if !ok {
		return fail
	}
	return nil
}

// membershipsOf returns the organisations userID belongs to and whether
// they are the only owner of any.
func (s *Service) membershipsOf(ctx context.Context, userID saasapi.ID) (orgs []saasapi.ID, lastOwner bool, err error) {
	rows, err := s.pool.Query(ctx, `SELECT m.organisation_id,
			m.role = 'owner' AND (SELECT count(*) FROM memberships o
				WHERE o.organisation_id = m.organisation_id AND o.role = 'owner') = 1
		FROM memberships m WHERE m.user_id = $1 ORDER BY m.organisation_id`, userID)
	if err != nil {
		return nil, false, fmt.Errorf("read memberships: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			org  saasapi.ID
			last bool
		)
		if err := rows.Scan(&org, &last); err != nil {
			return nil, false, err
		}
		orgs, lastOwner = append(orgs, org), lastOwner || last
	}
	return orgs, lastOwner, rows.Err()
}

// endMembership appends member.removed for userID's membership in org, if
// it still exists, under the organisation's lock.
func (s *Service) endMembership(ctx context.Context, meta Meta, orgID, userID saasapi.ID) error {
	var (
		current projections.Lookup[projections.Membership]
		owners  int
	)
	access := saasapi.OperatorAccess(meta.Principal, orgID)
	c := command{meta: meta, ledger: orgID, operator: &access}
	c.load = func(b *pgx.Batch, sc projections.Scope) error {
		if err := projections.QueueMembership(b, sc, userID, &current); err != nil {
			return err
		}
		return projections.QueueCountOwners(b, sc, &owners)
	}
	c.decide = func(_ saasapi.Access, head eventstore.Head, _ *pgx.Batch) ([]saasapi.NewEvent, error) {
		if !current.Found {
			return nil, nil // ended meanwhile
		}
		m := current.Value
		removed, err := decideRemoveMember(saasapi.RoleOwner, m, owners, true)
		if err != nil {
			return nil, err
		}
		return one(s.newEvent(meta, head, saasapi.StreamMembership, m.ID, m.Version+1, saasapi.EventMemberRemoved, removed))
	}
	_, _, err := s.run(ctx, c)
	return err
}

// eraseOwnLedger appends user.erased to the user's ledger and, in the same
// transaction, deletes their data key and credentials.
func (s *Service) eraseOwnLedger(ctx context.Context, meta Meta, userID saasapi.ID) error {
	err := s.appendToUserWith(ctx, meta, userID, saasapi.EventUserErased, saasapi.UserErased{}, func(b *pgx.Batch) {
		b.Queue(`DELETE FROM person_keys WHERE user_id = $1`, userID)
		b.Queue(`DELETE FROM user_credentials WHERE user_id = $1`, userID)
	})
	if errors.Is(err, eventstore.ErrLedgerNotFound) {
		return saasapi.Errorf(saasapi.ENOTFOUND, saasapi.MsgUserNotFound)
	}
	return err
}
