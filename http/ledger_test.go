package http_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/internal/forge"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// verifier fetches the service's verifier key, unauthenticated.
func (e *env) verifier() note.Verifier {
	e.t.Helper()
	r := e.do(req{method: "GET", path: "/ledger/verifier-key"})
	want(e.t, r, 200)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		e.t.Fatalf("verifier key Content-Type %q", ct)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(r.Raw)))
	if err != nil {
		e.t.Fatalf("verifier key %q: %v", r.Raw, err)
	}
	return v
}

// checkpoint fetches a checkpoint and parses it with the second
// implementation, transparency-dev/formats, which also checks the origin
// and the signature.
func (e *env) checkpoint(path, token, origin string, v note.Verifier) *log.Checkpoint {
	e.t.Helper()
	r := e.do(req{method: "GET", path: path, token: token})
	want(e.t, r, 200)
	if ct := r.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		e.t.Fatalf("checkpoint Content-Type %q", ct)
	}
	cp, _, _, err := log.ParseCheckpoint(r.Raw, origin, v)
	if err != nil {
		e.t.Fatalf("checkpoint %q does not parse and verify: %v", r.Raw, err)
	}
	return cp
}

// leaves returns the chain hashes of the organisation's events, from the
// export: its tree's leaf data.
func (e *env) leaves(org, token string) [][]byte {
	e.t.Helper()
	r := e.do(req{method: "GET", path: "/orgs/" + org + "/audit-events/export", token: token})
	want(e.t, r, 200)
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(r.Raw))
	for sc.Scan() {
		var line struct{ Hash string }
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			e.t.Fatal(err)
		}
		h, err := hex.DecodeString(line.Hash)
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, h)
	}
	return out
}

// rootOf is RFC 6962's Merkle tree hash of leaves with the second
// implementation's hasher.
func rootOf(leaves [][]byte) []byte {
	h := rfc6962.DefaultHasher
	switch len(leaves) {
	case 0:
		return h.EmptyRoot()
	case 1:
		return h.HashLeaf(leaves[0])
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return h.HashChildren(rootOf(leaves[:k]), rootOf(leaves[k:]))
}

func decodeHashes(t *testing.T, raw any) [][]byte {
	t.Helper()
	list, _ := raw.([]any)
	out := make([][]byte, len(list))
	for i, x := range list {
		b, err := base64.StdEncoding.DecodeString(x.(string))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func TestLedgerCheckpointsAndProofs(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.teamOrg(tm)
	v := e.verifier()
	origin := "multi-tenant-saas-api/orgs/" + org
	path := "/orgs/" + org + "/audit-events"

	first := e.checkpoint(path+"/checkpoint", tm.admin.Token, origin, v)
	leaves := e.leaves(org, tm.owner.Token)
	if first.Size != uint64(len(leaves)) || !bytes.Equal(first.Hash, rootOf(leaves)) {
		t.Fatalf("checkpoint size %d root %x; the export gives %d events, root %x", first.Size, first.Hash, len(leaves), rootOf(leaves))
	}
	// The tree has not grown: the same note again.
	again := e.do(req{method: "GET", path: path + "/checkpoint", token: tm.owner.Token})
	if first2, _, _, err := log.ParseCheckpoint(again.Raw, origin, v); err != nil || first2.Size != first.Size {
		t.Fatalf("second checkpoint: %v", err)
	}

	for i := range 5 {
		e.createProject(tm.owner.Token, org, map[string]any{"name": fmt.Sprintf("Proof %d", i)})
	}
	second := e.checkpoint(path+"/checkpoint", tm.owner.Token, origin, v)
	leaves = e.leaves(org, tm.owner.Token)
	if second.Size != uint64(len(leaves)) || second.Size != first.Size+5 || !bytes.Equal(second.Hash, rootOf(leaves)) {
		t.Fatalf("checkpoint after 5 projects: size %d, want %d", second.Size, len(leaves))
	}

	hasher := rfc6962.DefaultHasher
	for seq := 1; seq <= len(leaves); seq++ {
		for _, size := range []uint64{uint64(seq), first.Size, second.Size} {
			if size < uint64(seq) {
				continue
			}
			root := rootOf(leaves[:size])
			r := e.do(req{method: "GET", path: fmt.Sprintf("%s/proof/inclusion?sequence=%d&tree_size=%d", path, seq, size), token: tm.owner.Token})
			want(t, r, 200)
			if r.Body["sequence"] != float64(seq) || r.Body["leaf_index"] != float64(seq-1) || r.Body["tree_size"] != float64(size) {
				t.Fatalf("inclusion proof body %s", r.Raw)
			}
			if err := proof.VerifyInclusion(hasher, uint64(seq-1), size, hasher.HashLeaf(leaves[seq-1]),
				decodeHashes(t, r.Body["hashes"]), root); err != nil {
				t.Errorf("inclusion of %d in %d: %v", seq, size, err)
			}
		}
	}
	r := e.do(req{method: "GET", path: fmt.Sprintf("%s/proof/consistency?from=%d&to=%d", path, first.Size, second.Size), token: tm.admin.Token})
	want(t, r, 200)
	if r.Body["from"] != float64(first.Size) || r.Body["to"] != float64(second.Size) {
		t.Fatalf("consistency proof body %s", r.Raw)
	}
	if err := proof.VerifyConsistency(hasher, first.Size, second.Size, decodeHashes(t, r.Body["hashes"]), first.Hash, second.Hash); err != nil {
		t.Errorf("consistency of the two checkpoints: %v", err)
	}

	// The caller's own ledger.
	me := e.checkpoint("/me/audit-events/checkpoint", tm.viewer.Token, "multi-tenant-saas-api/users/"+tm.viewer.ID, v)
	if me.Size < 2 { // registered and signed in
		t.Errorf("user ledger checkpoint size %d", me.Size)
	}
}

func TestLedgerProofsRefuseBadSizes(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.teamOrg(tm)
	size := len(e.leaves(org, tm.owner.Token))
	path := "/orgs/" + org + "/audit-events/proof/"
	for _, q := range []string{
		"inclusion", "inclusion?sequence=1", "inclusion?tree_size=1", "inclusion?sequence=0&tree_size=1",
		"inclusion?sequence=1&tree_size=0", "inclusion?sequence=x&tree_size=1", "inclusion?sequence=1&tree_size=1.5",
		"inclusion?sequence=2&tree_size=1", fmt.Sprintf("inclusion?sequence=1&tree_size=%d", size+1),
		"inclusion?sequence=-1&tree_size=1", "inclusion?sequence=99999999999999999999&tree_size=1",
		"consistency", "consistency?from=1", "consistency?from=0&to=1", "consistency?from=2&to=1",
		fmt.Sprintf("consistency?from=1&to=%d", size+1), "consistency?from=a&to=b",
	} {
		r := e.do(req{method: "GET", path: path + q, token: tm.owner.Token})
		wantProblem(t, r, 422, saasapi.MsgValidation)
	}
	want(t, e.do(req{method: "GET", path: fmt.Sprintf("%sconsistency?from=%d&to=%d", path, size, size), token: tm.owner.Token}), 200)
}

// TestCheckpointRefusesARewrittenLedger is the service watching its own
// database: a ledger rewritten consistently (chain, head and tree all
// recomputed) or truncated with a rewound head passes every check that
// reads only the database, but it no longer extends the checkpoint the
// service signed, so the service refuses to sign again.
func TestCheckpointRefusesARewrittenLedger(t *testing.T) {
	t.Parallel()
	cases := map[string]func([]saasapi.NewEvent) []saasapi.NewEvent{
		"consistent rewrite": func(evs []saasapi.NewEvent) []saasapi.NewEvent {
			for i := range evs {
				evs[i].Data = json.RawMessage(`{"changed_fields":["forged"]}`)
			}
			return evs
		},
		"consistent truncation": func(evs []saasapi.NewEvent) []saasapi.NewEvent { return evs[:len(evs)-2] },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			tm := e.newTeam()
			org := e.teamOrg(tm)
			for i := range 4 {
				e.createProject(tm.owner.Token, org, map[string]any{"name": fmt.Sprintf("Kept %d", i)})
			}
			path := "/orgs/" + org + "/audit-events/checkpoint"
			signed := e.checkpoint(path, tm.owner.Token, "multi-tenant-saas-api/orgs/"+org, e.verifier())
			if err := forge.Rewrite(context.Background(), e.db.Pool, saasapi.ID(org), int64(signed.Size)-4, edit); err != nil {
				t.Fatal(err)
			}
			// Everything that reads only the database is satisfied.
			if _, err := eventstore.VerifyLedger(context.Background(), e.db.Pool, saasapi.ID(org)); err != nil {
				t.Fatalf("the forged ledger does not verify: %v", err)
			}
			before := metricValue(t, string(e.do(req{method: "GET", path: "/metrics"}).Raw), "saas_api_ledger_integrity_failures_total")
			wantProblem(t, e.do(req{method: "GET", path: path, token: tm.owner.Token}), 500, "ledger integrity check failed")
			after := metricValue(t, string(e.do(req{method: "GET", path: "/metrics"}).Raw), "saas_api_ledger_integrity_failures_total")
			if after != before+1 {
				t.Errorf("ledger_integrity_failures_total went from %v to %v, want one more", before, after)
			}
			if logs := e.logs.String(); !strings.Contains(logs, `"msg":"ledger integrity check failed"`) ||
				!strings.Contains(logs, `"level":"ERROR"`) || !strings.Contains(logs, org) {
				t.Errorf("no error log names the ledger:\n%s", logs)
			}
			// It stays refused: the last signed checkpoint is not replaced.
			wantProblem(t, e.do(req{method: "GET", path: path, token: tm.owner.Token}), 500, "ledger integrity check failed")
		})
	}
}

// TestCheckpointRefusesAnEditedLastCheckpoint: the service's memory of its
// last checkpoint lives in the database too, so it trusts it only as far as
// its own signature goes.
func TestCheckpointRefusesAnEditedLastCheckpoint(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.teamOrg(tm)
	path := "/orgs/" + org + "/audit-events/checkpoint"
	cp := e.checkpoint(path, tm.owner.Token, "multi-tenant-saas-api/orgs/"+org, e.verifier())
	e.createProject(tm.owner.Token, org, map[string]any{"name": "After"})
	// The body claims one event fewer; the signature no longer covers it.
	if _, err := e.db.Pool.Exec(context.Background(), `UPDATE ledger_checkpoints
		SET note = replace(note, E'\n' || $2 || E'\n', E'\n' || $3 || E'\n') WHERE ledger_id = $1`,
		org, fmt.Sprint(cp.Size), fmt.Sprint(cp.Size-1)); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, e.do(req{method: "GET", path: path, token: tm.owner.Token}), 500, "ledger integrity check failed")
	if !strings.Contains(e.logs.String(), "does not verify with the signing key") {
		t.Errorf("the log does not say why:\n%s", e.logs.String())
	}
}

// TestCheckpointsUnderConcurrentWrites fetches checkpoints while projects
// are created: every checkpoint verifies, none is refused, and every one
// is a prefix of the final tree (a consistency proof to it verifies).
func TestCheckpointsUnderConcurrentWrites(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.teamOrg(tm)
	v := e.verifier()
	origin := "multi-tenant-saas-api/orgs/" + org
	get := func(path string, body *strings.Builder) (int, error) {
		req, err := http.NewRequestWithContext(context.Background(), "GET", e.srv.URL+path, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+tm.owner.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		defer func() { _ = resp.Body.Close() }()
		_, err = io.Copy(body, resp.Body)
		return resp.StatusCode, err
	}
	var (
		mu    sync.Mutex
		seen  []*log.Checkpoint
		wg    sync.WaitGroup
		errs  = make(chan error, 64)
		posts atomic.Int64
	)
	for w := range 3 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 8 {
				body := strings.NewReader(fmt.Sprintf(`{"name":"c %d %d"}`, w, i))
				req, _ := http.NewRequestWithContext(context.Background(), "POST", e.srv.URL+"/orgs/"+org+"/projects", body)
				req.Header.Set("Authorization", "Bearer "+tm.owner.Token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				_ = resp.Body.Close()
				if resp.StatusCode != 201 {
					errs <- fmt.Errorf("POST: %d", resp.StatusCode)
				}
				posts.Add(1)
			}
		}()
		go func() {
			defer wg.Done()
			for range 8 {
				var b strings.Builder
				status, err := get("/orgs/"+org+"/audit-events/checkpoint", &b)
				if err != nil || status != 200 {
					errs <- fmt.Errorf("checkpoint: %d %s: %w", status, b.String(), err)
					return
				}
				cp, _, _, err := log.ParseCheckpoint([]byte(b.String()), origin, v)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				seen = append(seen, cp)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	final := e.checkpoint("/orgs/"+org+"/audit-events/checkpoint", tm.owner.Token, origin, v)
	hasher := rfc6962.DefaultHasher
	for _, cp := range seen {
		r := e.do(req{method: "GET", token: tm.owner.Token,
			path: fmt.Sprintf("/orgs/%s/audit-events/proof/consistency?from=%d&to=%d", org, cp.Size, final.Size)})
		want(t, r, 200)
		if err := proof.VerifyConsistency(hasher, cp.Size, final.Size, decodeHashes(t, r.Body["hashes"]), cp.Hash, final.Hash); err != nil {
			t.Errorf("checkpoint of size %d is not a prefix of the final one of size %d: %v", cp.Size, final.Size, err)
		}
	}
	if n := len(e.leaves(org, tm.owner.Token)); final.Size != uint64(n) || posts.Load() != 24 {
		t.Errorf("final checkpoint size %d, %d events, %d posts", final.Size, n, posts.Load())
	}
}
