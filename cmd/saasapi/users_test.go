package main

import (
	"context"
	"encoding/json"
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
	if _, _, err := cli(t, map[string]string{"SAAS_API_DATABASE_URL": w.url}, "users", "erase", "--user", string(member)); err == nil ||
		!strings.Contains(err.Error(), "SAAS_API_DATA_KEY is required") {
		t.Fatalf("users erase without a data key: %v, want a refusal naming SAAS_API_DATA_KEY", err)
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

// TestCheckpointsVerifyAfterAnErasure: a checkpoint signed before an
// erasure still verifies after it, against the database and against an
// export: the erasure appends, and what it deletes is outside the ledgers.
func TestCheckpointsVerifyAfterAnErasure(t *testing.T) {
	t.Parallel()
	w := newLedgerWorld(t)
	var reg struct {
		User struct{ ID saasapi.ID } `json:"user"`
	}
	if err := json.Unmarshal(w.call("POST", "/auth/register",
		`{"email":"leaver@example.com","password":"correct horse battery","display_name":"Leaver"}`, 201), &reg); err != nil {
		t.Fatal(err)
	}
	w.call("POST", "/orgs/"+string(w.org)+"/members", `{"user_id":"`+string(reg.User.ID)+`","role":"member"}`, 201)
	cp := w.file("checkpoint", w.checkpoint())
	vars := map[string]string{"SAAS_API_DATABASE_URL": w.db.URL, "SAAS_API_DATA_KEY": testDataKey}
	if _, _, err := cli(t, vars, "users", "erase", "--user", string(reg.User.ID)); err != nil {
		t.Fatalf("users erase: %v", err)
	}
	if out, _, err := cli(t, vars, "audit", "verify", "--checkpoint", cp, "--key", w.vkey); err != nil {
		t.Fatalf("audit verify --checkpoint after an erasure: %v\n%s", err, out)
	}
	export := w.file("export.ndjson", []byte(strings.Join(w.export(), "\n")+"\n"))
	if out, _, err := cli(t, nil, "audit", "verify-export", "--checkpoint", w.file("after", w.checkpoint()), "--key", w.vkey,
		"--file", export); err != nil {
		t.Fatalf("verify-export after an erasure: %v\n%s", err, out)
	}
	if !strings.Contains(strings.Join(w.export(), "\n"), `"member.removed"`) {
		t.Error("the organisation's export does not show the erased member's removal")
	}
}
