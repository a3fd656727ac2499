package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/projections"
)

// registerLegacy registers a person as versions before sealing did: the
// user.registered event with the email and display name in plain text, the
// read row and the credentials, and no data key. It writes through the
// owner's pool, with the real append.
func registerLegacy(t testing.TB, owner *pgxpool.Pool, email, name string) saasapi.ID {
	t.Helper()
	ctx := context.Background()
	hash, err := auth.NewHasher(auth.TestParams, 0).Hash(ctx, legacyPassword)
	if err != nil {
		t.Fatal(err)
	}
	id := saasapi.NewID()
	b := &pgx.Batch{}
	head := eventstore.NewLedger(b, id, saasapi.LedgerUser)
	b.Queue(`INSERT INTO user_credentials (user_id, password_hash) VALUES ($1, $2)`, id, hash)
	evs, err := eventstore.Append(b, &head, []saasapi.NewEvent{{
		LedgerID: id, LedgerType: saasapi.LedgerUser, StreamType: saasapi.StreamUser, StreamID: id, StreamVersion: 1,
		Type: saasapi.EventUserRegistered, Actor: saasapi.ActorOf(saasapi.UserPrincipal(id)), RequestID: "legacy",
		OccurredAt: time.Now(), Data: saasapi.UserRegistered{Email: email, DisplayName: name},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := projections.Apply(b, evs[0]); err != nil {
		t.Fatal(err)
	}
	tx, err := owner.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return id
}

const legacyPassword = "correct horse battery"

// as runs call with another bearer token.
func (w *ledgerWorld) as(token, method, path, body string, status int) []byte {
	w.t.Helper()
	saved := w.token
	defer func() { w.token = saved }()
	w.token = token
	return w.call(method, path, body, status)
}

// signIn returns an access token of the person.
func (w *ledgerWorld) signIn(email string) string {
	w.t.Helper()
	var login struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(w.as("", "POST", "/auth/login", `{"email":"`+email+`","password":"`+legacyPassword+`"}`, 200), &login); err != nil {
		w.t.Fatal(err)
	}
	return login.AccessToken
}

// eventsDump is what a dump of the events table shows: every row as text,
// and a digest of them all.
func eventsDump(t *testing.T, pool *pgxpool.Pool) (string, [32]byte) {
	t.Helper()
	var dump string
	if err := pool.QueryRow(context.Background(),
		`SELECT coalesce(string_agg(e::text, E'\n' ORDER BY position), '') FROM events e`).Scan(&dump); err != nil {
		t.Fatal(err)
	}
	return dump, sha256.Sum256([]byte(dump))
}

// usersTable is the users read table as text.
func usersTable(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var s string
	if err := pool.QueryRow(context.Background(),
		`SELECT coalesce(string_agg(u::text, E'\n' ORDER BY id), '') FROM users u`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func countRows(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSealLegacy: plain-text personal data that an earlier version wrote is
// sealed ledger by ledger, in runs that stop (by --limit and by an
// interruption) and resume; afterwards no dump of the events shows it, the
// chains, trees and checkpoints verify, the read tables replay to the same
// state, the person sees their data and signs in, an erased person's old
// values stay unreadable, and a further run changes nothing.
func TestSealLegacy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newLedgerWorld(t)
	owner := w.db.Pool
	people := map[string]string{
		"ada.legacy@example.com":   "Ada Lovelace-Legacy",
		"bob.legacy@example.com":   "Bob Plaintext-Legacy",
		"carol.legacy@example.com": "Carol Erased-Legacy",
	}
	ids := map[string]saasapi.ID{}
	for email, name := range people {
		ids[email] = registerLegacy(t, owner, email, name)
	}
	ada, bob, carol := ids["ada.legacy@example.com"], ids["bob.legacy@example.com"], ids["carol.legacy@example.com"]
	adaToken := w.signIn("ada.legacy@example.com") // user.logged_in after the plain event
	w.call("POST", "/orgs/"+string(w.org)+"/members", `{"user_id":"`+string(bob)+`","role":"member"}`, 201)
	vars := map[string]string{"SAAS_API_DATABASE_URL": w.db.URL, "SAAS_API_DATA_KEY": testDataKey}
	if _, _, err := cli(t, vars, "users", "erase", "--user", string(carol)); err != nil {
		t.Fatalf("erasing a person registered in plain text: %v", err)
	}
	oldCheckpoint := w.as(adaToken, "GET", "/me/audit-events/checkpoint", "", 200)
	oldFile := w.file("old-checkpoint", oldCheckpoint)
	if out, _, err := cli(t, vars, "audit", "verify", "--checkpoint", oldFile, "--key", w.vkey); err != nil {
		t.Fatalf("the checkpoint before sealing: %v\n%s", err, out)
	}
	dump, _ := eventsDump(t, owner)
	if !strings.Contains(dump, "ada.legacy@example.com") || !strings.Contains(dump, "Carol Erased-Legacy") {
		t.Fatal("the legacy rows are not in plain text: the test does not set up what it means to")
	}
	usersBefore := usersTable(t, owner)

	// A first run that stops after one ledger, by --limit.
	out, _, err := cli(t, vars, "users", "seal-legacy", "--limit", "1")
	if err != nil || !strings.HasPrefix(out, "sealed 1 ledgers (1 events") || !strings.Contains(out, "run again") {
		t.Fatalf("seal-legacy --limit 1: %q, %v", out, err)
	}
	// A second one interrupted after its first ledger committed, as a kill
	// between two ledgers would.
	stop, cancel := context.WithCancel(ctx)
	err = sealLegacy(stop, owner, testKeyring(t), 0, &strings.Builder{}, &strings.Builder{},
		func(*eventstore.Reseal) { cancel() })
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("an interrupted run: %v, want it to stop with the context", err)
	}
	if n := countRows(t, owner, `SELECT count(*) FROM ledger_reseals`); n != 2 {
		t.Fatalf("after an interrupted run: %d ledgers resealed, want 2", n)
	}
	if out, _, err := cli(t, vars, "audit", "verify"); err != nil {
		t.Fatalf("audit verify between two runs: %v\n%s", err, out)
	}
	// The run that finishes.
	out, _, err = cli(t, vars, "users", "seal-legacy")
	if err != nil || out != "sealed 1 ledgers (1 events with personal data in plain text)\nno personal data is left in plain text\n" {
		t.Fatalf("seal-legacy: %q, %v", out, err)
	}

	dump, _ = eventsDump(t, owner)
	for email, name := range people {
		if strings.Contains(dump, email) || strings.Contains(dump, name) {
			t.Errorf("a dump of the events still shows %s or %s", email, name)
		}
	}
	if strings.Contains(dump, "auditor@example.com") {
		t.Error("a dump of the events shows the email of a person registered with sealing")
	}
	for _, args := range [][]string{{"audit", "verify"}, {"projections", "verify"}, {"projections", "rebuild"}, {"projections", "verify"}} {
		if out, _, err := cli(t, vars, args...); err != nil {
			t.Fatalf("%s after sealing: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if after := usersTable(t, owner); after != usersBefore {
		t.Errorf("the users table after sealing and a rebuild:\n%s\nwant it as before:\n%s", after, usersBefore)
	}

	// The person sees their data, in their profile and their own audit
	// events, and signs in.
	adaToken = w.signIn("ada.legacy@example.com")
	if me := string(w.as(adaToken, "GET", "/me", "", 200)); !strings.Contains(me, "ada.legacy@example.com") ||
		!strings.Contains(me, "Ada Lovelace-Legacy") {
		t.Errorf("GET /me after sealing: %s", me)
	}
	if mine := string(w.as(adaToken, "GET", "/me/audit-events", "", 200)); !strings.Contains(mine, "ada.legacy@example.com") {
		t.Errorf("GET /me/audit-events after sealing does not show the person their own email: %s", mine)
	}
	if n := countRows(t, owner, `SELECT count(*) FROM person_keys WHERE user_id = ANY($1)`, []string{string(ada), string(bob)}); n != 2 {
		t.Errorf("%d of the two live people have a data key, want both", n)
	}
	if n := countRows(t, owner, `SELECT count(*) FROM person_keys WHERE user_id = $1`, carol); n != 0 {
		t.Error("sealing gave an erased person a data key")
	}
	carolEvents, err := eventstore.ReadLedger(ctx, owner, carol, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if opened, err := saasapi.OpenPersonal(nil, carolEvents[0]); err != nil || !strings.Contains(string(opened.Payload), saasapi.ErasedValue) ||
		!strings.Contains(string(carolEvents[0].Payload), saasapi.SealedValuePrefix) {
		t.Errorf("the erased person's registration after sealing: %s (%v), want it sealed and read as erased", carolEvents[0].Payload, err)
	}

	// Checkpoints: the one signed before no longer matches, and says why; the
	// next one is signed, and verifies.
	var dropped string
	if err := owner.QueryRow(ctx, `SELECT dropped_checkpoint FROM ledger_reseals WHERE ledger_id = $1`, ada).Scan(&dropped); err != nil ||
		dropped != string(oldCheckpoint) {
		t.Errorf("the reseal record of the ledger keeps %q (%v), want the checkpoint it dropped", dropped, err)
	}
	if _, _, err := cli(t, vars, "audit", "verify", "--checkpoint", oldFile, "--key", w.vkey); err == nil ||
		!strings.Contains(err.Error(), "were resealed") {
		t.Errorf("audit verify of a checkpoint signed before sealing: %v, want a failure that names the reseal", err)
	}
	newFile := w.file("new-checkpoint", w.as(adaToken, "GET", "/me/audit-events/checkpoint", "", 200))
	if out, _, err := cli(t, vars, "audit", "verify", "--checkpoint", newFile, "--key", w.vkey); err != nil {
		t.Fatalf("audit verify of the checkpoint signed after sealing: %v\n%s", err, out)
	}
	// A signing that read the tree just before the reseal committed stores
	// the old checkpoint again: the next signing is not stopped by it.
	if _, err := owner.Exec(ctx, `UPDATE ledger_checkpoints SET note = $2, tree_size = 2, signed_at = now() WHERE ledger_id = $1`,
		ada, string(oldCheckpoint)); err != nil {
		t.Fatal(err)
	}
	w.signIn("ada.legacy@example.com")
	w.as(adaToken, "GET", "/me/audit-events/checkpoint", "", 200)

	// Nothing left to do: a further run changes nothing.
	_, digest := eventsDump(t, owner)
	out, _, err = cli(t, vars, "users", "seal-legacy")
	if err != nil || !strings.HasPrefix(out, "sealed 0 ledgers") {
		t.Fatalf("seal-legacy again: %q, %v", out, err)
	}
	if _, again := eventsDump(t, owner); again != digest {
		t.Error("a run with nothing to seal changed the events")
	}
	if n := countRows(t, owner, `SELECT count(*) FROM ledger_reseals`); n != 3 {
		t.Errorf("%d reseals recorded, want 3", n)
	}
}

// TestSealLegacyWhileTheServiceWrites: sealing a person's ledger while they
// sign in (appending to it) and ask for checkpoints of it loses no event,
// breaks no chain and never stops the signing of checkpoints.
func TestSealLegacyWhileTheServiceWrites(t *testing.T) {
	t.Parallel()
	w := newLedgerWorld(t)
	owner := w.db.Pool
	var emails []string
	for i := range 4 {
		email := fmt.Sprintf("busy%d.legacy@example.com", i)
		registerLegacy(t, owner, email, "Busy Legacy")
		emails = append(emails, email)
	}
	tokens := make([]string, len(emails))
	for i, e := range emails {
		tokens[i] = w.signIn(e)
	}
	before := countRows(t, owner, `SELECT count(*) FROM events`)
	var (
		wg, started sync.WaitGroup
		mu          sync.Mutex
		logins      int
		done        = make(chan struct{})
	)
	for i := range emails {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			under := sync.OnceFunc(started.Done)
			defer under() // also when it fails before its first round
			for {
				select {
				case <-done:
					return
				default:
				}
				status, body := w.try("POST", "/auth/login", `{"email":"`+emails[i]+`","password":"`+legacyPassword+`"}`, "")
				if status != 200 {
					t.Errorf("sign-in during sealing: %d %s", status, body)
					return
				}
				mu.Lock()
				logins++
				mu.Unlock()
				if status, body := w.try("GET", "/me/audit-events/checkpoint", "", tokens[i]); status != 200 {
					t.Errorf("checkpoint during sealing: %d %s", status, body)
					return
				}
				under()
			}
		}()
	}
	started.Wait() // every writer is under way before the sealing starts
	err := sealLegacy(t.Context(), owner, testKeyring(t), 0, &strings.Builder{}, &strings.Builder{}, nil)
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatalf("sealing while the service writes: %v", err)
	}
	if n := countRows(t, owner, `SELECT count(*) FROM events`); n != before+logins {
		t.Errorf("%d events after sealing, want the %d before and the %d sign-ins", n, before, logins)
	}
	vars := map[string]string{"SAAS_API_DATABASE_URL": w.db.URL, "SAAS_API_DATA_KEY": testDataKey}
	if out, _, err := cli(t, vars, "audit", "verify"); err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	for _, tok := range tokens {
		w.as(tok, "GET", "/me/audit-events/checkpoint", "", 200)
	}
	if dump, _ := eventsDump(t, owner); strings.Contains(dump, "legacy@example.com") {
		t.Error("plain text is left in the events")
	}
}

// try sends a request with token and returns the status and body; unlike
// call it may run on any goroutine.
func (w *ledgerWorld) try(method, path, body, token string) (int, string) {
	req, err := http.NewRequestWithContext(context.Background(), method, w.srv.URL+path, strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSealLegacyLeavesABrokenLedger: a ledger whose chain does not verify
// is not rewritten (a rewrite would hide the tampering); it is named, the
// other ledgers are sealed, and the command fails.
func TestSealLegacyLeavesABrokenLedger(t *testing.T) {
	t.Parallel()
	w := newOpsWorld(t)
	good := registerLegacy(t, w.pool, "good.legacy@example.com", "Good Legacy")
	bad := registerLegacy(t, w.pool, "bad.legacy@example.com", "Bad Legacy")
	ctx := context.Background()
	tx, err := w.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, sql := range []string{`ALTER TABLE events DISABLE TRIGGER events_append_only`,
		`UPDATE events SET payload = '{"display_name":"Bad Legacy","email":"forged.legacy@example.com"}' WHERE ledger_id = '` + string(bad) + `'`,
		`ALTER TABLE events ENABLE TRIGGER events_append_only`} {
		if _, err := tx.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := w.run(t, "users", "seal-legacy")
	if err == nil || !strings.Contains(err.Error(), "1 ledgers do not verify") || !strings.Contains(err.Error(), string(bad)) ||
		!strings.Contains(stderr, "first bad sequence 1") || !strings.HasPrefix(out, "sealed 1 ledgers") {
		t.Fatalf("seal-legacy with a tampered ledger: %q, %q, %v", out, stderr, err)
	}
	if n := countRows(t, w.pool, `SELECT count(*) FROM ledger_reseals WHERE ledger_id = $1`, good); n != 1 {
		t.Error("the intact ledger was not sealed")
	}
	if n := countRows(t, w.pool, `SELECT count(*) FROM ledger_reseals WHERE ledger_id = $1`, bad); n != 0 {
		t.Error("the tampered ledger was rewritten")
	}
	if _, _, err := w.run(t, "audit", "verify", "--org", string(bad)); err == nil {
		t.Error("the tampering no longer shows")
	}
}

// TestSealLegacyKilledInsideALedger: a run whose connection dies in the
// middle of a ledger's transaction (its events, tree and head already
// rewritten, the checkpoint not yet dropped) leaves that ledger exactly as
// it was; the next run seals it.
func TestSealLegacyKilledInsideALedger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newOpsWorld(t)
	ledger := registerLegacy(t, w.pool, "killed.legacy@example.com", "Killed Legacy")
	head, err := eventstore.ReadHead(ctx, w.pool, ledger)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := head.Tree.Root()
	if _, err := w.pool.Exec(ctx, `INSERT INTO ledger_checkpoints (ledger_id, tree_size, root_hash, note) VALUES ($1, 1, $2, 'kept')`,
		ledger, root[:]); err != nil {
		t.Fatal(err)
	}
	_, before := eventsDump(t, w.pool)
	// Hold the checkpoint row, so that the run stops at its last statements.
	blocker, err := w.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = blocker.Rollback(ctx) }()
	if _, err := blocker.Exec(ctx, `SELECT 1 FROM ledger_checkpoints WHERE ledger_id = $1 FOR UPDATE`, ledger); err != nil {
		t.Fatal(err)
	}
	result := make(chan error, 1)
	go func() { _, _, err := w.run(t, "users", "seal-legacy"); result <- err }()
	var pid int
	for deadline := time.Now().Add(20 * time.Second); pid == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the run never reached the checkpoint")
		}
		err := w.pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM ledger_checkpoints%'`).Scan(&pid)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
	}
	if _, err := w.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	if err := <-result; err == nil {
		t.Fatal("a run whose connection was killed succeeded")
	}
	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, after := eventsDump(t, w.pool); after != before {
		t.Fatal("the killed transaction left part of its rewrite behind")
	}
	if n := countRows(t, w.pool, `SELECT count(*) FROM ledger_checkpoints WHERE ledger_id = $1`, ledger) +
		countRows(t, w.pool, `SELECT count(*) FROM ledger_reseals`) +
		countRows(t, w.pool, `SELECT count(*) FROM person_keys WHERE user_id = $1`, ledger); n != 1 {
		t.Fatalf("after the kill: the checkpoint, reseal records and key of the ledger number %d, want the checkpoint alone", n)
	}
	if out, _, err := w.run(t, "audit", "verify"); err != nil {
		t.Fatalf("audit verify after the kill: %v\n%s", err, out)
	}
	if out, _, err := w.run(t, "users", "seal-legacy"); err != nil || !strings.HasPrefix(out, "sealed 1 ledgers") {
		t.Fatalf("the run after the kill: %q, %v", out, err)
	}
	if out, _, err := w.run(t, "audit", "verify"); err != nil {
		t.Fatalf("audit verify after sealing: %v\n%s", err, out)
	}
}
