package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/saasapi/saasapi"
)

// TestUsersErase: the operator's erasure refuses the last owner, erases a
// member, and leaves a database that audit verify and projections verify
// accept, before and after a rebuild, which keeps the tombstone.
func TestUsersErase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newOpsWorld(t)
	owner, member := w.users[0], w.users[1]
	if _, _, err := w.run(t, "users", "erase", "--user", string(owner)); err == nil || !strings.Contains(err.Error(), saasapi.MsgLastOwner) {
		t.Fatalf("erasing the last owner: %v, want %q", err, saasapi.MsgLastOwner)
	}
	if out, _, err := w.run(t, "users", "erase", "--user", string(member)); err != nil || out != "erased user "+string(member)+"\n" {
		t.Fatalf("users erase: %q, %v", out, err)
	}
	if _, _, err := w.run(t, "users", "erase", "--user", string(member)); err == nil || !strings.Contains(err.Error(), saasapi.MsgUserNotFound) {
		t.Fatalf("erasing again: %v, want %q", err, saasapi.MsgUserNotFound)
	}
	if _, _, err := w.run(t, "users", "erase", "--user", "nonsense"); !errors.Is(err, errUsage) {
		t.Fatalf("a malformed ID: %v, want a usage error", err)
	}
	tombstone := func(when string) {
		t.Helper()
		var n int
		if err := w.pool.QueryRow(ctx, `SELECT count(*) FROM users WHERE id = $1 AND email IS NULL AND display_name IS NULL AND NOT is_active`,
			member).Scan(&n); err != nil || n != 1 {
			t.Fatalf("%s: the erased user's row is not a tombstone (%d, %v)", when, n, err)
		}
	}
	tombstone("after the erasure")
	for _, args := range [][]string{{"audit", "verify"}, {"projections", "verify"}, {"projections", "rebuild"}, {"projections", "verify"}, {"audit", "verify"}} {
		if out, _, err := w.run(t, args...); err != nil {
			t.Fatalf("%s after an erasure: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	tombstone("after a rebuild")
	var email string
	if err := w.pool.QueryRow(ctx, `SELECT email FROM users WHERE id = $1`, owner).Scan(&email); err != nil || email != "owner@example.com" {
		t.Fatalf("the rebuild lost a live user's email: %q, %v", email, err)
	}
}
