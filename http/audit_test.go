package http_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/eventstore"
)

// tour drives every command once over HTTP and returns what it used: the
// organisation, its owner, a second user, the raw API key, and every raw
// secret that passed through the requests.
type tourResult struct {
	org     string
	owner   user
	other   user
	key     apiKey
	secrets []string
}

func (e *env) tour() tourResult {
	e.t.Helper()
	owner, other := e.register("Auditor"), e.register("Other")
	org := e.createOrg(owner, uniqueName("Audited"))
	want(e.t, e.do(req{method: "PATCH", path: "/orgs/" + org, token: owner.Token, body: map[string]any{"name": "Audited Ltd"},
		header: map[string]string{"X-Request-ID": "tour-rename"}}), http.StatusOK)
	e.addMember(owner, org, other, "member")
	want(e.t, e.do(req{method: "PATCH", path: "/orgs/" + org + "/members/" + other.ID, token: owner.Token,
		body: map[string]any{"role": "admin"}}), http.StatusOK)
	project := e.createProject(owner.Token, org, map[string]any{"name": "Apollo"})["id"].(string)
	want(e.t, e.do(req{method: "PATCH", path: "/orgs/" + org + "/projects/" + project, token: owner.Token,
		body: map[string]any{"status": "archived"}}), http.StatusOK)
	want(e.t, e.do(req{method: "DELETE", path: "/orgs/" + org + "/projects/" + project, token: owner.Token}), http.StatusNoContent)
	key := e.createAPIKey(owner, org)
	e.createProject(key.Raw, org, map[string]any{"name": "Made by key"})
	want(e.t, e.do(req{method: "DELETE", path: "/orgs/" + org + "/api-keys/" + key.ID, token: owner.Token}), http.StatusOK)
	want(e.t, e.do(req{method: "DELETE", path: "/orgs/" + org + "/members/" + other.ID, token: owner.Token}), http.StatusNoContent)
	// A failed login of a known account lands in that account's ledger.
	want(e.t, e.do(req{method: "POST", path: "/auth/login", body: map[string]any{"email": other.Email, "password": "wrong password 123"}}),
		http.StatusUnauthorized)
	hash := auth.HashAPIKey(key.Raw)
	return tourResult{org: org, owner: owner, other: other, key: key, secrets: []string{
		testPassword, "wrong password 123", owner.Token, other.Token, key.Raw,
		hex.EncodeToString(hash), string(hash),
	}}
}

// auditPage fetches one page of an organisation's audit events.
func (e *env) auditPage(token, org string, query url.Values) response {
	e.t.Helper()
	path := "/orgs/" + org + "/audit-events"
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	return e.do(req{method: "GET", path: path, token: token})
}

func TestAuditEventsListTheLedger(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tr := e.tour()
	r := e.auditPage(tr.owner.Token, tr.org, url.Values{"limit": {"100"}})
	want(t, r, http.StatusOK)
	items := r.items()
	// organisation.created, member.added (owner), organisation.updated,
	// member.added, member.role_changed, project.created, project.updated,
	// project.deleted, api_key.created, project.created (by key),
	// api_key.revoked, member.removed.
	wantActions := []string{"member.removed", "api_key.revoked", "project.created", "api_key.created", "project.deleted",
		"project.updated", "project.created", "member.role_changed", "member.added", "organisation.updated",
		"member.added", "organisation.created"}
	if len(items) != len(wantActions) {
		t.Fatalf("got %d audit events, want %d: %s", len(items), len(wantActions), r.Raw)
	}
	metadataKeys := map[string][]string{
		"organisation.created": {}, "organisation.updated": {"changed_fields"},
		"member.added": {"user_id", "role"}, "member.role_changed": {"user_id", "old_role", "new_role"},
		"member.removed": {"user_id", "role"}, "project.created": {"project_name", "status"},
		"project.updated": {"changed_fields"}, "project.deleted": {"project_name"},
		"api_key.created": {"api_key_name", "key_prefix"}, "api_key.revoked": {"api_key_name", "key_prefix"},
	}
	targetTypes := map[string]string{"organisation": "organisation", "member": "membership", "project": "project", "api_key": "api_key"}
	for i, item := range items {
		action := item["action"].(string)
		if action != wantActions[i] {
			t.Errorf("item %d is %q, want %q (newest first)", i, action, wantActions[i])
		}
		wantKeys(t, "audit item", item, "id", "organisation_id", "actor_user_id", "actor_api_key_id", "action",
			"target_type", "target_id", "metadata", "created_at", "sequence", "hash", "prev_hash", "request_id")
		if seq := int(item["sequence"].(float64)); seq != len(items)-i {
			t.Errorf("item %d has sequence %d, want %d", i, seq, len(items)-i)
		}
		if item["organisation_id"] != tr.org {
			t.Errorf("item %d: organisation_id %v, want %s", i, item["organisation_id"], tr.org)
		}
		meta, _ := item["metadata"].(map[string]any)
		for _, k := range metadataKeys[action] {
			if _, ok := meta[k]; !ok {
				t.Errorf("%s metadata lacks %q: %v", action, k, meta)
			}
		}
		prefix, _, _ := strings.Cut(action, ".")
		if item["target_type"] != targetTypes[prefix] {
			t.Errorf("%s has target_type %v, want %s", action, item["target_type"], targetTypes[prefix])
		}
		for _, h := range []string{"hash", "prev_hash"} {
			if s, _ := item[h].(string); len(s) != 64 {
				t.Errorf("%s %s is %q, want 64 hex digits", action, h, s)
			}
		}
		if i+1 < len(items) && item["prev_hash"] != items[i+1]["hash"] {
			t.Errorf("item %d prev_hash does not equal the hash of the event before it", i)
		}
		wantTimestamp(t, "created_at", item["created_at"])
	}
	// The event made with the API key names the key as its actor.
	if items[2]["actor_api_key_id"] != tr.key.ID || items[2]["actor_user_id"] != nil {
		t.Errorf("project created by key: actors %v / %v, want key %s and no user", items[2]["actor_user_id"], items[2]["actor_api_key_id"], tr.key.ID)
	}
	if items[len(items)-3]["request_id"] != "tour-rename" {
		t.Errorf("organisation.updated has request_id %v, want the caller's X-Request-ID", items[len(items)-3]["request_id"])
	}
	if got, _ := r.obj("pagination")["total"].(float64); int(got) != len(items) {
		t.Errorf("pagination.total %v, want %d", got, len(items))
	}
	if _, ok := r.obj("pagination")["next_cursor"]; ok {
		t.Errorf("the only page has a next_cursor")
	}
}

func TestAuditEventFilters(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tr := e.tour()
	all := e.auditPage(tr.owner.Token, tr.org, url.Values{"limit": {"100"}}).items()
	middle := all[len(all)/2]["created_at"].(string)
	tests := []struct {
		name  string
		query url.Values
		keep  func(item map[string]any) bool
	}{
		{"action", url.Values{"action": {"project.created"}}, func(i map[string]any) bool { return i["action"] == "project.created" }},
		{"target_type", url.Values{"target_type": {"membership"}}, func(i map[string]any) bool { return i["target_type"] == "membership" }},
		{"target_id", url.Values{"target_id": {tr.org}}, func(i map[string]any) bool { return i["target_id"] == tr.org }},
		{"actor_user_id", url.Values{"actor_user_id": {tr.owner.ID}}, func(i map[string]any) bool { return i["actor_user_id"] == tr.owner.ID }},
		{"actor_api_key_id", url.Values{"actor_api_key_id": {tr.key.ID}}, func(i map[string]any) bool { return i["actor_api_key_id"] == tr.key.ID }},
		{"since is inclusive", url.Values{"since": {middle}}, func(i map[string]any) bool { return i["created_at"].(string) >= middle }},
		{"until is exclusive", url.Values{"until": {middle}}, func(i map[string]any) bool { return i["created_at"].(string) < middle }},
		{"combined", url.Values{"action": {"project.created"}, "actor_user_id": {tr.owner.ID}},
			func(i map[string]any) bool {
				return i["action"] == "project.created" && i["actor_user_id"] == tr.owner.ID
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var wantSeqs []float64
			for _, item := range all {
				if tc.keep(item) {
					wantSeqs = append(wantSeqs, item["sequence"].(float64))
				}
			}
			tc.query.Set("limit", "100")
			r := e.forT(t).auditPage(tr.owner.Token, tr.org, tc.query)
			want(t, r, http.StatusOK)
			var got []float64
			for _, item := range r.items() {
				got = append(got, item["sequence"].(float64))
			}
			if fmt.Sprint(got) != fmt.Sprint(wantSeqs) || len(wantSeqs) == 0 {
				t.Fatalf("sequences %v, want %v (non-empty)", got, wantSeqs)
			}
			if total := r.obj("pagination")["total"].(float64); int(total) != len(wantSeqs) {
				t.Errorf("total %v, want %d", total, len(wantSeqs))
			}
		})
	}
	for name, bad := range map[string]url.Values{
		"target_type":      {"target_type": {"planet"}},
		"actor_user_id":    {"actor_user_id": {"not-a-ulid"}},
		"since":            {"since": {"yesterday"}},
		"before_sequence":  {"before_sequence": {"0"}},
		"limit":            {"limit": {"101"}},
		"actor_api_key_id": {"actor_api_key_id": {"x"}},
	} {
		t.Run("invalid "+name, func(t *testing.T) {
			t.Parallel()
			wantInvalid(t, e.forT(t).auditPage(tr.owner.Token, tr.org, bad), name)
		})
	}
}

// TestAuditCursorNeverSkipsOrRepeats pages newest-first through a ledger
// with before_sequence while another goroutine keeps appending to it.
func TestAuditCursorNeverSkipsOrRepeats(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner := e.register("Pager")
	org := e.createOrg(owner, uniqueName("Paged"))
	for i := range 30 {
		e.createProject(owner.Token, org, map[string]any{"name": fmt.Sprintf("seed %d", i)})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var written atomic.Int64
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r, err := e.send(req{method: "POST", path: "/orgs/" + org + "/projects", token: owner.Token,
				body: map[string]any{"name": fmt.Sprintf("concurrent %d", i)}})
			if err != nil || r.Status != http.StatusCreated {
				t.Errorf("concurrent write: %v %d", err, r.Status)
				return
			}
			written.Add(1)
		}
	})
	// Wait for at least one more write after every page, so that writes
	// really interleave with the walk.
	waitForWrite := func() {
		t.Helper()
		n := written.Load()
		for deadline := time.Now().Add(10 * time.Second); written.Load() == n; {
			if time.Now().After(deadline) {
				t.Fatal("the writer made no progress")
			}
			time.Sleep(time.Millisecond)
		}
	}
	var seen []int
	query := url.Values{"limit": {"7"}}
	for pages := 0; ; pages++ {
		r := e.auditPage(owner.Token, org, query)
		want(t, r, http.StatusOK)
		for _, item := range r.items() {
			seen = append(seen, int(item["sequence"].(float64)))
		}
		next, ok := r.obj("pagination")["next_cursor"].(float64)
		if !ok {
			break
		}
		query.Set("before_sequence", strconv.FormatFloat(next, 'f', 0, 64))
		if pages > 1000 {
			t.Fatal("paging did not end")
		}
		waitForWrite()
	}
	close(stop)
	wg.Wait()
	for i := range seen {
		if want := seen[0] - i; seen[i] != want {
			t.Fatalf("position %d holds sequence %d, want %d: the walk skipped or repeated (sequences %v)", i, seen[i], want, seen)
		}
	}
	if seen[len(seen)-1] != 1 {
		t.Fatalf("the walk ended at sequence %d, want 1", seen[len(seen)-1])
	}
	t.Logf("paged %d events while %d were appended", len(seen), written.Load())
}

func TestAuditHeadAndExport(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tr := e.tour()
	head := e.do(req{method: "GET", path: "/orgs/" + tr.org + "/audit-events/head", token: tr.owner.Token})
	want(t, head, http.StatusOK)
	wantKeys(t, "head", head.Body, "sequence", "hash", "recorded_at")
	newest := e.auditPage(tr.owner.Token, tr.org, url.Values{"limit": {"1"}}).items()[0]
	if head.Body["sequence"] != newest["sequence"] || head.Body["hash"] != newest["hash"] {
		t.Fatalf("head %v does not match the newest event (sequence %v, hash %v)", head.Body, newest["sequence"], newest["hash"])
	}
	wantTimestamp(t, "recorded_at", head.Body["recorded_at"])

	export := func(query string) []map[string]any {
		t.Helper()
		r := e.do(req{method: "GET", path: "/orgs/" + tr.org + "/audit-events/export" + query, token: tr.owner.Token})
		want(t, r, http.StatusOK)
		if ct := r.Header.Get("Content-Type"); ct != "application/x-ndjson" {
			t.Fatalf("export Content-Type %q, want application/x-ndjson", ct)
		}
		var out []map[string]any
		sc := bufio.NewScanner(bytes.NewReader(r.Raw))
		for sc.Scan() {
			var item map[string]any
			if err := json.Unmarshal(sc.Bytes(), &item); err != nil {
				t.Fatalf("export line %q: %v", sc.Text(), err)
			}
			out = append(out, item)
		}
		return out
	}
	all := export("")
	n := int(head.Body["sequence"].(float64))
	if len(all) != n {
		t.Fatalf("export has %d lines, want %d", len(all), n)
	}
	prev := strings.Repeat("0", 64)
	for i, item := range all {
		if int(item["sequence"].(float64)) != i+1 || item["prev_hash"] != prev {
			t.Fatalf("export line %d: sequence %v prev_hash %v; want %d and the previous line's hash", i, item["sequence"], item["prev_hash"], i+1)
		}
		prev = item["hash"].(string)
	}
	if prev != head.Body["hash"] {
		t.Fatalf("the export's last hash %s is not the head %v", prev, head.Body["hash"])
	}
	// Every hash can be recomputed from the export line alone.
	r := e.do(req{method: "GET", path: "/orgs/" + tr.org + "/audit-events/export", token: tr.owner.Token})
	sc := bufio.NewScanner(bytes.NewReader(r.Raw))
	for sc.Scan() {
		var line struct {
			ID             string          `json:"id"`
			OrganisationID string          `json:"organisation_id"`
			Action         string          `json:"action"`
			TargetType     string          `json:"target_type"`
			TargetID       string          `json:"target_id"`
			LedgerType     string          `json:"ledger_type"`
			ActorType      string          `json:"actor_type"`
			Hash           string          `json:"hash"`
			PrevHash       string          `json:"prev_hash"`
			ActorUserID    *string         `json:"actor_user_id"`
			ActorAPIKeyID  *string         `json:"actor_api_key_id"`
			RequestID      *string         `json:"request_id"`
			Sequence       int64           `json:"sequence"`
			StreamVersion  int64           `json:"stream_version"`
			SchemaVersion  int             `json:"schema_version"`
			CreatedAt      time.Time       `json:"created_at"`
			Metadata       json.RawMessage `json:"metadata"`
		}
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		if err := dec.Decode(&line); err != nil {
			t.Fatal(err)
		}
		ev := saasapi.Event{ID: saasapi.ID(line.ID), LedgerID: saasapi.ID(line.OrganisationID), LedgerType: line.LedgerType,
			Sequence: line.Sequence, StreamType: line.TargetType, StreamID: saasapi.ID(line.TargetID),
			StreamVersion: line.StreamVersion, Type: line.Action, SchemaVersion: line.SchemaVersion,
			Actor: saasapi.Actor{Type: saasapi.PrincipalType(line.ActorType), UserID: saasapi.ID(deref(line.ActorUserID)),
				APIKeyID: saasapi.ID(deref(line.ActorAPIKeyID))},
			RequestID: deref(line.RequestID), OccurredAt: line.CreatedAt, Payload: line.Metadata}
		prev, _ := hex.DecodeString(line.PrevHash)
		if got := hex.EncodeToString(eventstore.Hash(prev, eventstore.Canonical(ev))); got != line.Hash {
			t.Fatalf("sequence %d: hash recomputed from the export line is %s, the line says %s", line.Sequence, got, line.Hash)
		}
	}
	rest := export("?after_sequence=" + strconv.Itoa(n-3))
	if len(rest) != 3 || int(rest[0]["sequence"].(float64)) != n-2 {
		t.Fatalf("resuming after %d gave %d lines starting at %v, want 3 from %d", n-3, len(rest), rest[0]["sequence"], n-2)
	}
	if created := export("?action=project.created"); len(created) != 2 {
		t.Fatalf("filtered export has %d lines, want the 2 project.created events", len(created))
	}
	wantInvalid(t, e.do(req{method: "GET", path: "/orgs/" + tr.org + "/audit-events/export?after_sequence=-1", token: tr.owner.Token}), "after_sequence")
}

func TestMyAuditEvents(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.register("Self") // registration and one login
	want(t, e.do(req{method: "POST", path: "/auth/login", body: map[string]any{"email": u.Email, "password": "not the password"}}),
		http.StatusUnauthorized)
	e.createOrg(u, uniqueName("Elsewhere")) // organisation events stay in the organisation's ledger
	r := e.do(req{method: "GET", path: "/me/audit-events", token: u.Token})
	want(t, r, http.StatusOK)
	var actions []string
	for _, item := range r.items() {
		actions = append(actions, item["action"].(string))
		if item["organisation_id"] != nil || item["target_id"] != u.ID {
			t.Errorf("%s: organisation_id %v target_id %v, want null and the user", item["action"], item["organisation_id"], item["target_id"])
		}
	}
	if got := strings.Join(actions, ","); got != "user.login_failed,user.logged_in,user.registered" {
		t.Fatalf("own events %s, want user.login_failed,user.logged_in,user.registered", got)
	}
	other := e.register("Stranger")
	r = e.do(req{method: "GET", path: "/me/audit-events", token: other.Token})
	for _, item := range r.items() {
		if item["target_id"] != other.ID {
			t.Fatalf("another user's event in the caller's log: %v", item)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// secretKeyNames are the metadata keys that may never appear (A.8),
// compared without case and separators.
var secretKeyNames = []string{"authorization", "bearertoken", "keyhash", "password", "passwordhash", "rawkey",
	"rawpassword", "refreshtoken", "secret", "token", "accesstoken"}

func normaliseKey(k string) string {
	return strings.NewReplacer("_", "", "-", "", ".", "", " ", "").Replace(strings.ToLower(k))
}

// findSecretKeys walks a JSON value and returns the paths of secret-named keys.
func findSecretKeys(v any, path string) []string {
	var found []string
	switch x := v.(type) {
	case map[string]any:
		for k, child := range x {
			for _, s := range secretKeyNames {
				if normaliseKey(k) == s {
					found = append(found, path+"."+k)
				}
			}
			found = append(found, findSecretKeys(child, path+"."+k)...)
		}
	case []any:
		for i, child := range x {
			found = append(found, findSecretKeys(child, fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	return found
}

// TestEventsHoldNoSecrets runs a full tour of every command and then scans
// every stored event, every column of it, for secret-named keys and for the
// raw secrets the tour used: passwords, access tokens, the raw API key and
// its hash, and the stored password hashes.
func TestEventsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tr := e.tour()
	secrets := tr.secrets
	rows, err := e.db.Pool.Query(context.Background(), `SELECT password_hash FROM user_credentials`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, h)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows, err = e.db.Pool.Query(context.Background(), `SELECT event_type, payload::text, e::text FROM events e`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var eventType, payload, whole string
		if err := rows.Scan(&eventType, &payload, &whole); err != nil {
			t.Fatal(err)
		}
		n++
		var v any
		if err := json.Unmarshal([]byte(payload), &v); err != nil {
			t.Fatalf("%s payload is not JSON: %v", eventType, err)
		}
		if keys := findSecretKeys(v, "payload"); len(keys) > 0 {
			t.Errorf("%s payload has secret-named keys %v", eventType, keys)
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(whole, s) {
				t.Errorf("%s event row contains a raw secret (%d characters)", eventType, len(s))
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 15 {
		t.Fatalf("scanned only %d events; the tour should have recorded every event type", n)
	}
	// The audit API shows the same payloads: scan what it serves too.
	for _, path := range []string{"/orgs/" + tr.org + "/audit-events?limit=100", "/orgs/" + tr.org + "/audit-events/export"} {
		r := e.do(req{method: "GET", path: path, token: tr.owner.Token})
		for _, s := range secrets {
			if strings.Contains(string(r.Raw), s) {
				t.Errorf("%s serves a raw secret", path)
			}
		}
	}
}

func TestAuditMetricCountsCommittedEvents(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner := e.register("Counter")
	org := e.createOrg(owner, uniqueName("Counted"))
	metric := func() string {
		for _, line := range strings.Split(e.exposition(), "\n") {
			if strings.HasPrefix(line, `saas_api_audit_events_recorded_total{action="project.created"} `) {
				return strings.TrimSpace(strings.TrimPrefix(line, `saas_api_audit_events_recorded_total{action="project.created"}`))
			}
		}
		return "absent"
	}
	before := metric()
	e.createProject(owner.Token, org, map[string]any{"name": "One"})
	e.createProject(owner.Token, org, map[string]any{"name": "Two"})
	// A rejected creation commits nothing and counts nothing.
	want(t, e.do(req{method: "POST", path: "/orgs/" + org + "/projects", token: owner.Token, body: map[string]any{"name": ""}}), 422)
	b, _ := strconv.ParseFloat(before, 64)
	if after, _ := strconv.ParseFloat(metric(), 64); after != b+2 {
		t.Fatalf("audit_events_recorded_total{action=project.created} went from %s to %v, want +2", before, after)
	}
}
