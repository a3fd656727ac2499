package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
)

// User is the users read model.
type User struct {
	ID          saasapi.ID
	Email       string
	DisplayName string
	IsActive    bool
	Version     int64
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

func init() {
	register(saasapi.EventUserRegistered, func(b *pgx.Batch, e saasapi.Event, p any) {
		d := p.(*saasapi.UserRegistered)
		// A replay reads an erased person's fields as erased (their key
		// is gone): the row is the tombstone, never a resurrection.
		b.Queue(`INSERT INTO users (id, email, display_name, is_active, version, created_at, updated_at)
			VALUES ($1, NULLIF($2, $6), NULLIF($3, $6), true, $4, $5, $5)`,
			e.StreamID, d.Email, d.DisplayName, e.StreamVersion, e.OccurredAt, saasapi.ErasedValue)
	})
	// Sign-in events belong to the user's stream; they only move its version.
	bump := func(b *pgx.Batch, e saasapi.Event, _ any) {
		b.Queue(`UPDATE users SET version = $2 WHERE id = $1`, e.StreamID, e.StreamVersion)
	}
	// An erased user's row is a tombstone: the ID stays (projects keep
	// their created_by_user_id), the personal data and the access go.
	register(saasapi.EventUserErased, func(b *pgx.Batch, e saasapi.Event, _ any) {
		b.Queue(`UPDATE users SET email = NULL, display_name = NULL, is_active = false, version = $2, updated_at = $3
			WHERE id = $1`, e.StreamID, e.StreamVersion, e.OccurredAt)
	})
	register(saasapi.EventUserLoggedIn, bump)
	register(saasapi.EventUserLoginFailed, bump)
}

// userFold is a users row as the bulk path folds it.
type userFold struct {
	id                 string
	email, displayName *string
	active             bool
	version            int64
	createdAt          time.Time
	updatedAt          time.Time
}

func (r *userFold) table() string { return "users" }

func (r *userFold) values() []any {
	return []any{r.id, r.email, r.displayName, r.active, r.version, r.createdAt, r.updatedAt}
}

// unlessErased is NULLIF(v, ErasedValue).
func unlessErased(v string) *string {
	if v == saasapi.ErasedValue {
		return nil
	}
	return &v
}

func init() {
	copyColumns["users"] = []string{"id", "email", "display_name", "is_active", "version", "created_at", "updated_at"}
	registerFold(saasapi.EventUserRegistered, func(cur row, e saasapi.Event, p any) (row, error) {
		if cur != nil {
			return nil, errCreatedTwice(e)
		}
		d := p.(*saasapi.UserRegistered)
		return &userFold{id: string(e.StreamID), email: unlessErased(d.Email), displayName: unlessErased(d.DisplayName),
			active: true, version: e.StreamVersion, createdAt: e.OccurredAt, updatedAt: e.OccurredAt}, nil
	})
	bump := func(cur row, e saasapi.Event, _ any) (row, error) {
		if r, ok := cur.(*userFold); ok {
			r.version = e.StreamVersion
		}
		return cur, nil
	}
	registerFold(saasapi.EventUserLoggedIn, bump)
	registerFold(saasapi.EventUserLoginFailed, bump)
	registerFold(saasapi.EventUserErased, func(cur row, e saasapi.Event, _ any) (row, error) {
		if r, ok := cur.(*userFold); ok {
			r.email, r.displayName, r.active = nil, nil, false
			r.version, r.updatedAt = e.StreamVersion, e.OccurredAt
		}
		return cur, nil
	})
}

const userColumns = `id, coalesce(email, ''), coalesce(display_name, ''), is_active, version, created_at, updated_at`

func scanUser(row pgx.Row) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Email, &u.DisplayName, &u.IsActive, &u.Version, &u.CreatedAt, &u.UpdatedAt)
	return u, err
}

// GetUser returns a user by ID, or a not-found error.
func GetUser(ctx context.Context, q Querier, id saasapi.ID) (User, error) {
	u, err := scanUser(q.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, saasapi.Errorf(saasapi.ENOTFOUND, saasapi.MsgUserNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("get user: %w", err)
	}
	return u, nil
}

// QueueUserInOrg queues the read of a user for a command on the
// organisation of s (adding a member needs the user to exist and be
// active). The row stays share-locked until the command commits, so an
// erasure of the user (which updates it) either waits for the new
// membership, and then ends it, or commits first, and then the user is
// not found.
func QueueUserInOrg(b *pgx.Batch, s Scope, id saasapi.ID, dst *Lookup[User]) error {
	return queueRow(b, s, `SELECT `+userColumns+` FROM users
		WHERE id = $2 AND is_active AND EXISTS (SELECT 1 FROM organisations WHERE id = $1){scope} FOR SHARE OF users`, scanUser, dst, id)
}

// QueueUser queues the read of a user by ID.
func QueueUser(b *pgx.Batch, id saasapi.ID, dst *Lookup[User]) {
	b.Queue(`SELECT `+userColumns+` FROM users WHERE id = $1`, id).QueryRow(func(row pgx.Row) error {
		u, err := scanUser(row)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		dst.Value, dst.Found = u, err == nil
		return err
	})
}

// Credentials are what a login needs: the user and the password hash.
type Credentials struct {
	User         User
	PasswordHash string
}

// GetCredentials returns the user with the given (normalised) email and the
// password hash, or found=false.
func GetCredentials(ctx context.Context, q Querier, email string) (c Credentials, found bool, err error) {
	row := q.QueryRow(ctx, `SELECT u.id, u.email, u.display_name, u.is_active, u.version, u.created_at, u.updated_at,
			c.password_hash
		FROM users u JOIN user_credentials c ON c.user_id = u.id WHERE u.email = $1`, email)
	err = row.Scan(&c.User.ID, &c.User.Email, &c.User.DisplayName, &c.User.IsActive, &c.User.Version,
		&c.User.CreatedAt, &c.User.UpdatedAt, &c.PasswordHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return Credentials{}, false, nil
	}
	if err != nil {
		return Credentials{}, false, fmt.Errorf("get credentials: %w", err)
	}
	return c, true, nil
}

// QueueUserVersion queues the read of the current version of a user's
// stream, for appending to it under the user's ledger lock.
func QueueUserVersion(b *pgx.Batch, id saasapi.ID, dst *Lookup[int64]) {
	b.Queue(`SELECT version FROM users WHERE id = $1`, id).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&dst.Value)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		dst.Found = err == nil
		return err
	})
}

// QueueUserErased queues the read of whether a user was erased (their row
// is a tombstone, without an email); a missing user leaves erased false.
func QueueUserErased(b *pgx.Batch, id saasapi.ID, erased *bool) {
	b.Queue(`SELECT email IS NULL FROM users WHERE id = $1`, id).QueryRow(func(row pgx.Row) error {
		err := row.Scan(erased)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
}
