package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/eventstore"
	apihttp "github.com/saasapi/saasapi/http"
	"github.com/saasapi/saasapi/internal/dbpool"
	"github.com/saasapi/saasapi/internal/forge"
	"github.com/saasapi/saasapi/internal/testdb"
)

// ledgerWorld is the real service over HTTP on a fresh database, with an
// organisation that has some history, as an auditor meets it.
type ledgerWorld struct {
	t     *testing.T
	db    *testdb.DB
	srv   *httptest.Server
	org   saasapi.ID
	token string
	vkey  string
	dir   string
}

func newLedgerWorld(t *testing.T) *ledgerWorld {
	t.Helper()
	ctx := context.Background()
	db := testdb.New(t)
	pool, err := dbpool.Open(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	key, err := eventstore.GenerateSigningKey("saasapi.test")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := eventstore.NewLedgerSigner(key, "saasapi.test")
	if err != nil {
		t.Fatal(err)
	}
	tokens := auth.NewTokenIssuer([]byte(strings.Repeat("k", 32)), "test", 900e9)
	svc := commands.New(pool, commands.Config{Keys: testKeyring(t), Hasher: auth.NewHasher(auth.TestParams, 0), Tokens: tokens, PasswordMinLength: 12})
	// No sign-in throttle: the tests sign in in loops from one address.
	srv := httptest.NewServer(apihttp.NewServer(apihttp.Deps{Commands: svc, Pool: pool, Tokens: tokens, Ledger: signer,
		Throttle: &apihttp.Throttle{}}))
	t.Cleanup(srv.Close)
	w := &ledgerWorld{t: t, db: db, srv: srv, vkey: signer.VerifierKey(), dir: t.TempDir()}
	w.call("POST", "/auth/register", `{"email":"auditor@example.com","password":"correct horse battery","display_name":"A"}`, 201)
	var login struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(w.call("POST", "/auth/login", `{"email":"auditor@example.com","password":"correct horse battery"}`, 200), &login); err != nil || login.AccessToken == "" {
		t.Fatalf("login: %v", err)
	}
	w.token = login.AccessToken
	var org struct{ ID saasapi.ID }
	if err := json.Unmarshal(w.call("POST", "/orgs", `{"name":"Audited"}`, 201), &org); err != nil {
		t.Fatal(err)
	}
	w.org = org.ID
	w.projects(6)
	return w
}

// call sends a request with the world's token and checks the status.
func (w *ledgerWorld) call(method, path, body string, status int) []byte {
	w.t.Helper()
	got, b := w.try(method, path, body, w.token)
	if got != status {
		w.t.Fatalf("%s %s: %d, want %d: %s", method, path, got, status, b)
	}
	return []byte(b)
}

func (w *ledgerWorld) projects(n int) {
	w.t.Helper()
	for range n {
		w.call("POST", "/orgs/"+string(w.org)+"/projects", fmt.Sprintf(`{"name":"p %s"}`, saasapi.NewID()), 201)
	}
}

// file writes data to a file of the world's directory and returns its path.
func (w *ledgerWorld) file(name string, data []byte) string {
	w.t.Helper()
	p := filepath.Join(w.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		w.t.Fatal(err)
	}
	return p
}

func (w *ledgerWorld) checkpoint() []byte {
	return w.call("GET", "/orgs/"+string(w.org)+"/audit-events/checkpoint", "", 200)
}

func (w *ledgerWorld) export() []string {
	b := w.call("GET", "/orgs/"+string(w.org)+"/audit-events/export", "", 200)
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// cli runs the program with no SAAS_API_* configuration except vars.
func cli(t *testing.T, vars map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), args, environment(vars), &out, &errOut)
	return out.String(), errOut.String(), err
}

// exitCode is the exit status main gives err.
func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return exitUsage
	}
	return 1
}

// wantIntegrityFailure checks that err is an integrity failure (exit 1)
// whose message names the ledger and contains want.
func wantIntegrityFailure(t *testing.T, err error, ledger saasapi.ID, want string) {
	t.Helper()
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), string(ledger)) || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v (exit %d); want exit 1 naming ledger %s and %q", err, exitCode(err), ledger, want)
	}
}

func TestVerifyExportCatchesAlteredExports(t *testing.T) {
	t.Parallel()
	w := newLedgerWorld(t)
	cp := w.file("checkpoint", w.checkpoint())
	lines := w.export()
	n := len(lines)
	if n < 8 {
		t.Fatalf("export of %d lines", n)
	}
	verify := func(name string, ls []string, checkpoint string) (string, error) {
		out, _, err := cli(t, nil, "audit", "verify-export", "--checkpoint", checkpoint, "--key", w.vkey,
			"--file", w.file(name, []byte(strings.Join(ls, "\n")+"\n")))
		return out, err
	}
	if out, err := verify("intact", lines, cp); err != nil || !strings.Contains(out, fmt.Sprintf("%d events verified", n)) {
		t.Fatalf("intact export: %q, %v", out, err)
	}
	// Standard input, and the key from a file.
	in := strings.NewReader(strings.Join(lines, "\n") + "\n")
	if err := runVerifyExport(cp, w.file("key", []byte(w.vkey+"\n")), "", in, io.Discard, io.Discard); err != nil {
		t.Fatalf("export on standard input: %v", err)
	}

	edit := func(i int, from, to string) []string {
		out := append([]string(nil), lines...)
		if !strings.Contains(out[i], from) {
			t.Fatalf("line %d has no %q: %s", i+1, from, out[i])
		}
		out[i] = strings.Replace(out[i], from, to, 1)
		return out
	}
	var line5 map[string]any
	if err := json.Unmarshal([]byte(lines[4]), &line5); err != nil {
		t.Fatal(err)
	}
	swapped := append([]string(nil), lines...)
	swapped[3], swapped[4] = swapped[4], swapped[3]
	cases := []struct {
		name  string
		lines []string
		want  string
	}{
		{"payload altered", edit(4, `"project_name":"p `, `"project_name":"q `), "first bad sequence 5: hash does not match"},
		{"actor altered", edit(4, `"actor_type":"user"`, `"actor_type":"system"`), "first bad sequence 5: hash does not match"},
		{"time altered", edit(4, `"created_at":"20`, `"created_at":"19`), "first bad sequence 5: hash does not match"},
		{"type altered", edit(4, `"action":"project.created"`, `"action":"project.deleted"`), "first bad sequence 5: hash does not match"},
		{"middle line missing", append(append([]string(nil), lines[:3]...), lines[4:]...), "first bad sequence 4: line 4 has sequence 5"},
		{"last line missing", lines[:n-1], fmt.Sprintf("first bad sequence %d: event is missing", n)},
		{"lines swapped", swapped, "first bad sequence 4: line 4 has sequence 5"},
		{"line copied past the end", append(append([]string(nil), lines...), lines[n-1]), fmt.Sprintf("first bad sequence %d", n+1)},
		{"first line missing", lines[1:], "first bad sequence 1"},
	}
	for _, c := range cases {
		_, err := verify(c.name, c.lines, cp)
		wantIntegrityFailure(t, err, w.org, c.want)
	}

	// A consistent rewrite of the export (every hash recomputed) has another
	// root: the database-side forgery, exported.
	ctx := context.Background()
	if err := forge.Rewrite(ctx, w.db.Pool, w.org, 4, func(evs []saasapi.NewEvent) []saasapi.NewEvent {
		evs[0].Data = json.RawMessage(`{"project_name":"forged","status":"active"}`)
		return evs
	}); err != nil {
		t.Fatal(err)
	}
	_, err := verify("rewritten", w.export(), cp)
	wantIntegrityFailure(t, err, w.org, "is not the signed checkpoint's root")

	// A checkpoint edited after signing, or checked with another key.
	signed, err := os.ReadFile(cp)
	if err != nil {
		t.Fatal(err)
	}
	body, sig, _ := strings.Cut(string(signed), "\n\n")
	parts := strings.SplitN(body, "\n", 3)
	edited := w.file("edited", []byte(parts[0]+"\n"+fmt.Sprint(n-1)+"\n"+parts[2]+"\n\n"+sig))
	_, err = verify("intact-again", lines, edited)
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "signature") {
		t.Errorf("a checkpoint edited after signing: %v", err)
	}
	other, _ := eventstore.GenerateSigningKey("saasapi.test")
	otherSigner, _ := eventstore.NewLedgerSigner(other, "saasapi.test")
	_, _, err = cli(t, nil, "audit", "verify-export", "--checkpoint", cp, "--key", otherSigner.VerifierKey(),
		"--file", w.file("intact2", []byte(strings.Join(lines, "\n")+"\n")))
	if err == nil || exitCode(err) != 1 {
		t.Errorf("a checkpoint checked with another key: %v", err)
	}

	// Usage.
	for _, args := range [][]string{{}, {"--checkpoint", cp}, {"--bogus"}, {"--checkpoint", cp, "--key", w.vkey, "extra"}} {
		if _, _, err := cli(t, nil, append([]string{"audit", "verify-export"}, args...)...); exitCode(err) != 2 {
			t.Errorf("verify-export %v: %v, want a usage error", args, err)
		}
	}
	if out, _, err := cli(t, nil, "audit", "verify-export", "--help"); err != nil || !strings.Contains(out, "Usage: saasapi audit verify-export") {
		t.Errorf("verify-export --help: %q, %v", out, err)
	}
}

func TestAuditVerifyPinAndCheckpoint(t *testing.T) {
	t.Parallel()
	cases := map[string]func([]saasapi.NewEvent) []saasapi.NewEvent{
		"consistent rewrite": func(evs []saasapi.NewEvent) []saasapi.NewEvent {
			evs[1].Data = json.RawMessage(`{"project_name":"forged","status":"active"}`)
			return evs
		},
		// Everything after the pinned event's third predecessor goes.
		"consistent truncation": func(evs []saasapi.NewEvent) []saasapi.NewEvent { return evs[:1] },
	}
	for name, attack := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w := newLedgerWorld(t)
			vars := map[string]string{"SAAS_API_DATABASE_URL": w.db.URL, "SAAS_API_DATA_KEY": testDataKey}
			cp := w.file("checkpoint", w.checkpoint())
			lines := w.export()
			var last struct {
				Sequence int64
				Hash     string
			}
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
				t.Fatal(err)
			}
			pin := fmt.Sprintf("%d:%s", last.Sequence, last.Hash)
			org := string(w.org)
			for _, args := range [][]string{
				{"--org", org, "--pin", pin},
				{"--checkpoint", cp, "--key", w.vkey},
				{"--org", org, "--checkpoint", cp, "--key", w.vkey, "--pin", pin},
			} {
				if out, _, err := cli(t, vars, append([]string{"audit", "verify"}, args...)...); err != nil {
					t.Fatalf("verify %v before the attack: %v\n%s", args, err, out)
				}
			}
			w.projects(2) // the checkpoint and pin stay valid as the ledger grows
			if _, _, err := cli(t, vars, "audit", "verify", "--checkpoint", cp, "--key", w.vkey); err != nil {
				t.Fatalf("verify --checkpoint after growth: %v", err)
			}
			_, _, err := cli(t, vars, "audit", "verify", "--org", org, "--pin", fmt.Sprintf("%d:%s", last.Sequence, strings.Repeat("0", 64)))
			wantIntegrityFailure(t, err, w.org, fmt.Sprintf("first bad sequence %d", last.Sequence))

			if err := forge.Rewrite(context.Background(), w.db.Pool, w.org, last.Sequence-4, attack); err != nil {
				t.Fatal(err)
			}
			// The database is consistent with itself ...
			if _, _, err := cli(t, vars, "audit", "verify", "--org", org); err != nil {
				t.Fatalf("plain verify after a consistent forgery: %v", err)
			}
			// ... but not with what was kept outside it.
			_, _, err = cli(t, vars, "audit", "verify", "--checkpoint", cp, "--key", w.vkey)
			wantIntegrityFailure(t, err, w.org, "first bad sequence")
			_, _, err = cli(t, vars, "audit", "verify", "--org", org, "--pin", pin)
			wantIntegrityFailure(t, err, w.org, "first bad sequence")
		})
	}
}

func TestLedgerCommandsUsage(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"SAAS_API_DATABASE_URL": "postgres://127.0.0.1:1/none"}
	for _, args := range [][]string{
		{"--pin", "3:" + strings.Repeat("a", 64)},        // no ledger named
		{"--org", string(saasapi.NewID()), "--pin", "x"}, // malformed pin
		{"--pin", "0:" + strings.Repeat("a", 64)},
		{"--pin", "3:abc"},
		{"--checkpoint", "cp"}, // no key
		{"--key", "k"},         // no checkpoint
		{"--frobnicate"},
	} {
		if _, _, err := cli(t, vars, append([]string{"audit", "verify"}, args...)...); !errors.Is(err, errUsage) || exitCode(err) != 2 {
			t.Errorf("audit verify %v: %v, want a usage error (exit 2)", args, err)
		}
	}
	for _, sub := range []string{"verify", "verify-export", "monitor", "keygen"} {
		out, _, err := cli(t, vars, "audit", sub, "-h")
		if err != nil || !strings.Contains(out, "Usage") {
			t.Errorf("audit %s -h: %q, %v", sub, out, err)
		}
	}
	out, errOut, err := cli(t, nil, "audit", "keygen", "--name", "example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eventstore.NewLedgerSigner(strings.TrimSpace(out), "example.com/log"); err != nil ||
		!strings.Contains(errOut, "verifier key: example.com/log+") {
		t.Errorf("keygen printed %q / %q: %v", out, errOut, err)
	}
}

func TestMonitorCatchesForksAndRewinds(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		attack func([]saasapi.NewEvent) []saasapi.NewEvent
		grow   int
		want   string
	}{
		"fork": {func(evs []saasapi.NewEvent) []saasapi.NewEvent {
			evs[0].Data = json.RawMessage(`{"project_name":"forged","status":"active"}`)
			return evs
		}, 1, "fork"},
		"rewind": {func(evs []saasapi.NewEvent) []saasapi.NewEvent { return evs[:1] }, 0, "rewound"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w := newLedgerWorld(t)
			state := filepath.Join(w.dir, "state")
			tokenFile := w.file("token", []byte(w.token+"\n"))
			monitor := func(extra ...string) (string, error) {
				out, _, err := cli(t, nil, append([]string{"audit", "monitor", "--url", w.srv.URL, "--org", string(w.org),
					"--token-file", tokenFile, "--state", state}, extra...)...)
				return out, err
			}
			if _, err := monitor(); err == nil {
				t.Fatal("the first run without --key pinned nothing and still passed")
			}
			if out, err := monitor("--key", w.vkey); err != nil || !strings.Contains(out, "first checkpoint") {
				t.Fatalf("first run: %q, %v", out, err)
			}
			w.projects(3)
			if out, err := monitor(); err != nil || !strings.Contains(out, "extends the kept one") {
				t.Fatalf("second run: %q, %v", out, err)
			}
			other, _ := eventstore.GenerateSigningKey("saasapi.test")
			otherSigner, _ := eventstore.NewLedgerSigner(other, "saasapi.test")
			if _, err := monitor("--key", otherSigner.VerifierKey()); err == nil || exitCode(err) != 1 {
				t.Errorf("a --key other than the pinned one: %v", err)
			}

			// The attacker rewrites the ledger consistently and also deletes
			// the service's memory of its last checkpoint, so the service
			// signs the forged tree. The witness, on another machine, did
			// not forget.
			ctx := context.Background()
			head, err := eventstore.ReadHead(ctx, w.db.Pool, w.org)
			if err != nil {
				t.Fatal(err)
			}
			if err := forge.Rewrite(ctx, w.db.Pool, w.org, head.Sequence-4, c.attack); err != nil {
				t.Fatal(err)
			}
			if _, err := w.db.Pool.Exec(ctx, `DELETE FROM ledger_checkpoints WHERE ledger_id = $1`, w.org); err != nil {
				t.Fatal(err)
			}
			w.projects(c.grow)
			_, err = monitor()
			wantIntegrityFailure(t, err, w.org, c.want)
		})
	}
}

// TestProjectionsLeaveTheTreeAlone: the tree is part of the ledger, not a
// projection; rebuilding and verifying the read tables neither read nor
// write it, and audit verify still checks it afterwards.
func TestProjectionsLeaveTheTreeAlone(t *testing.T) {
	t.Parallel()
	w := newOpsWorld(t)
	digest := func() string {
		t.Helper()
		var d string
		if err := w.pool.QueryRow(context.Background(), `SELECT md5(
			(SELECT string_agg(t::text, '|' ORDER BY t::text) FROM ledger_tree_hashes t) ||
			(SELECT string_agg(ledger_id || tree_size || encode(tree_frontier, 'hex'), '|' ORDER BY ledger_id) FROM ledgers))`).Scan(&d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	before := digest()
	for _, args := range [][]string{{"projections", "rebuild"}, {"projections", "verify"}, {"audit", "verify"}} {
		if _, _, err := w.run(t, args...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	if after := digest(); after != before {
		t.Errorf("the tree changed across projections rebuild and verify")
	}
	if _, err := w.pool.Exec(context.Background(), `UPDATE ledgers SET tree_size = tree_size + 1 WHERE ledger_id = $1`, w.org); err != nil {
		t.Fatal(err)
	}
	_, _, err := w.run(t, "audit", "verify")
	wantIntegrityFailure(t, err, w.org, "tree_size")
}
