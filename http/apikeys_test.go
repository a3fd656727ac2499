package http_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/projections"
)

func apiKeysURL(org string) string         { return "/orgs/" + org + "/api-keys" }
func apiKeyURL(org, id string) string      { return apiKeysURL(org) + "/" + id }
func base62Char(c byte) bool               { return strings.IndexByte(base62, c) >= 0 }
func flipped(c byte) byte                  { return base62[(strings.IndexByte(base62, c)+1)%len(base62)] }
func replaceAt(s string, i int) string     { return s[:i] + string(flipped(s[i])) + s[i+1:] }
func secretPart(raw, prefix string) string { return strings.TrimPrefix(raw, prefix) }

const base62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// wantAPIKey fails the test unless k is exactly the public shape of a key
// of org with the name, created by createdBy, and returns its key_prefix.
func wantAPIKey(t *testing.T, k map[string]any, org, name, createdBy string) string {
	t.Helper()
	wantKeys(t, "api_key", k, "id", "organisation_id", "name", "key_prefix", "created_by_user_id",
		"revoked_at", "last_used_at", "created_at", "updated_at")
	wantULID(t, "api_key.id", k["id"])
	prefix, _ := k["key_prefix"].(string)
	if k["organisation_id"] != org || k["name"] != name || k["created_by_user_id"] != createdBy ||
		!strings.HasPrefix(prefix, auth.APIKeyPrefix) || len(prefix) > 16 {
		t.Fatalf("api_key = %v, want organisation_id %s, name %q, created_by_user_id %s and a key_prefix of at most 16 characters starting %q",
			k, org, name, createdBy, auth.APIKeyPrefix)
	}
	created := wantTimestamp(t, "api_key.created_at", k["created_at"])
	if updated := wantTimestamp(t, "api_key.updated_at", k["updated_at"]); updated.Before(created) {
		t.Fatalf("api_key.updated_at %v is before created_at %v", updated, created)
	}
	if k["revoked_at"] != nil {
		wantTimestamp(t, "api_key.revoked_at", k["revoked_at"])
	}
	if k["last_used_at"] != nil {
		wantTimestamp(t, "api_key.last_used_at", k["last_used_at"])
	}
	return prefix
}

// wantRawKey fails the test unless raw is a well-formed secret that starts
// with key_prefix and carries at least 256 bits of randomness.
func wantRawKey(t *testing.T, raw, keyPrefix string) {
	t.Helper()
	if !strings.HasPrefix(raw, auth.APIKeyPrefix) || len(raw) != auth.APIKeyLen || !strings.HasPrefix(raw, keyPrefix) || raw == keyPrefix {
		t.Fatalf("raw_key %q: want %d characters starting with %q and with the key_prefix %q", raw, auth.APIKeyLen, auth.APIKeyPrefix, keyPrefix)
	}
	body := strings.TrimPrefix(raw, auth.APIKeyPrefix)
	random, checksum, ok := strings.Cut(body, "_")
	if !ok || checksum == "" {
		t.Fatalf("raw_key %q has no <random>_<checksum> body", raw)
	}
	for i := range len(random) {
		if !base62Char(random[i]) {
			t.Fatalf("raw_key %q: random part has %q, want base62 only", raw, random[i])
		}
	}
	if bits := float64(len(random)) * math.Log2(62); bits < 256 {
		t.Fatalf("raw_key %q: random part of %d base62 digits holds %.1f bits, want at least 256", raw, len(random), bits)
	}
}

// hashForms are the ways a stored hash of raw could show up in JSON.
func hashForms(raw string) []string {
	h := auth.HashAPIKey(raw)
	return []string{hex.EncodeToString(h), strings.ToUpper(hex.EncodeToString(h)),
		base64.StdEncoding.EncodeToString(h), base64.URLEncoding.EncodeToString(h),
		base64.RawStdEncoding.EncodeToString(h), base64.RawURLEncoding.EncodeToString(h)}
}

func TestCreateAPIKey(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.teamOrg(tm)

	t.Run("ReturnsKeyAndRawSecretOnce", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		r := e.do(req{method: "POST", path: apiKeysURL(org), token: tm.owner.Token, body: map[string]any{"name": "CI deploys"}})
		want(t, r, http.StatusCreated)
		wantKeys(t, "response", r.Body, "api_key", "raw_key")
		k := r.obj("api_key")
		prefix := wantAPIKey(t, k, org, "CI deploys", tm.owner.ID)
		if k["revoked_at"] != nil || k["last_used_at"] != nil {
			t.Fatalf("a new key has revoked_at %v and last_used_at %v, want both null", k["revoked_at"], k["last_used_at"])
		}
		wantRawKey(t, r.str("raw_key"), prefix)
		if r.Header.Get("Idempotency-Replayed") != "" {
			t.Fatalf("Idempotency-Replayed = %q on a request without Idempotency-Key", r.Header.Get("Idempotency-Replayed"))
		}
	})

	t.Run("AdminCreatesDistinctKeys", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		seen := map[string]bool{}
		for range 3 {
			r := e.do(req{method: "POST", path: apiKeysURL(org), token: tm.admin.Token, body: map[string]any{"name": "Same name"}})
			want(t, r, http.StatusCreated)
			prefix := wantAPIKey(t, r.obj("api_key"), org, "Same name", tm.admin.ID)
			for _, v := range []string{r.str("raw_key"), prefix, r.obj("api_key")["id"].(string)} {
				if seen[v] {
					t.Fatalf("%q was handed out twice, want every key, prefix and id unique", v)
				}
				seen[v] = true
			}
		}
	})

	t.Run("StoresOnlyTheHash", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		key := e.createAPIKey(tm.owner, org)
		ctx := context.Background()
		var stored []byte
		if err := e.db.Pool.QueryRow(ctx, `SELECT key_hash FROM api_key_secrets WHERE api_key_id = $1`, key.ID).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if string(stored) != string(auth.HashAPIKey(key.Raw)) {
			t.Fatalf("api_key_secrets holds %x for the key, want its SHA-256 %x", stored, auth.HashAPIKey(key.Raw))
		}
		secret := secretPart(key.Raw, key.Raw[:auth.APIKeyDisplayLen])
		for _, table := range []string{"events", "api_keys", "api_key_secrets", "idempotency_records"} {
			var n int
			if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+table+` t WHERE strpos(t::text, $1) > 0`, secret).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("%s has %d rows holding the secret part of the raw key, want none", table, n)
			}
		}
	})

	t.Run("RejectsInvalidBodies", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name  string
			body  any
			field string
		}{
			{"EmptyName", map[string]any{"name": ""}, "name"},
			{"NameOf121", map[string]any{"name": strings.Repeat("k", 121)}, "name"},
			{"MissingName", map[string]any{}, "name"},
			{"NullName", map[string]any{"name": nil}, "name"},
			{"UnknownField", map[string]any{"name": "k", "scopes": []string{"all"}}, "scopes"},
			{"CaseVariantKey", `{"Name":"k"}`, "Name"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				wantInvalid(t, e.forT(t).do(req{method: "POST", path: apiKeysURL(org), token: tm.owner.Token, body: tt.body}), tt.field)
			})
		}
	})

	t.Run("LongestNameIsAccepted", func(t *testing.T) {
		t.Parallel()
		name := strings.Repeat("ß", 120)
		r := e.forT(t).do(req{method: "POST", path: apiKeysURL(org), token: tm.owner.Token, body: map[string]any{"name": name}})
		want(t, r, http.StatusCreated)
		wantAPIKey(t, r.obj("api_key"), org, name, tm.owner.ID)
	})
}

func TestListAPIKeys(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.teamOrg(tm)
	keys := []apiKey{e.createAPIKey(tm.owner, org), e.createAPIKey(tm.admin, org), e.createAPIKey(tm.owner, org)}
	revoked := e.do(req{method: "DELETE", path: apiKeyURL(org, keys[1].ID), token: tm.owner.Token})
	want(t, revoked, http.StatusOK)

	t.Run("ListsRevokedKeysNewestFirst", func(t *testing.T) {
		t.Parallel()
		r := e.forT(t).do(req{method: "GET", path: apiKeysURL(org), token: tm.admin.Token})
		want(t, r, http.StatusOK)
		wantPagination(t, r, 50, 0, 3, 3)
		items := r.items()
		creators := []string{tm.owner.ID, tm.admin.ID, tm.owner.ID}
		for i, it := range items {
			k := keys[len(keys)-1-i]
			if it["id"] != k.ID {
				t.Fatalf("item %d is %v, want %s (newest first)", i, it["id"], k.ID)
			}
			prefix := wantAPIKey(t, it, org, it["name"].(string), creators[len(keys)-1-i])
			if !strings.HasPrefix(k.Raw, prefix) {
				t.Fatalf("key %s lists key_prefix %q, which does not start its raw key", k.ID, prefix)
			}
		}
		if items[1]["revoked_at"] != revoked.Body["revoked_at"] || items[0]["revoked_at"] != nil || items[2]["revoked_at"] != nil {
			t.Fatalf("revoked_at of the listed keys = %v, %v, %v; want null, %v, null",
				items[0]["revoked_at"], items[1]["revoked_at"], items[2]["revoked_at"], revoked.Body["revoked_at"])
		}
	})

	t.Run("NeverShowsSecrets", func(t *testing.T) {
		t.Parallel()
		r := e.forT(t).do(req{method: "GET", path: apiKeysURL(org), token: tm.owner.Token})
		want(t, r, http.StatusOK)
		body := string(r.Raw)
		for _, k := range keys {
			secrets := append([]string{k.Raw, secretPart(k.Raw, k.Raw[:auth.APIKeyDisplayLen])}, hashForms(k.Raw)...)
			for _, s := range secrets {
				if strings.Contains(body, s) {
					t.Fatalf("the key list contains %q (the raw key, its secret part or its hash): %s", s, body)
				}
			}
		}
		for _, it := range r.items() {
			for _, field := range []string{"raw_key", "key_hash", "hash", "secret"} {
				if _, ok := it[field]; ok {
					t.Fatalf("a listed key has a %q field: %v", field, it)
				}
			}
		}
	})

	t.Run("Paginates", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		r := e.do(req{method: "GET", path: apiKeysURL(org) + "?limit=1&offset=1", token: tm.owner.Token})
		want(t, r, http.StatusOK)
		wantPagination(t, r, 1, 1, 3, 1)
		if r.items()[0]["id"] != keys[1].ID {
			t.Fatalf("?limit=1&offset=1 lists %v, want %s", r.items()[0]["id"], keys[1].ID)
		}
		for _, q := range []string{"limit=0", "limit=101", "offset=-1", "limit=x"} {
			wantInvalid(t, e.do(req{method: "GET", path: apiKeysURL(org) + "?" + q, token: tm.owner.Token}), strings.Split(q, "=")[0])
		}
	})
}

func TestAPIKeyAuthentication(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.teamOrg(tm)
	other := e.createOrg(tm.owner, uniqueName("Other"))

	t.Run("WorksOnTheProjectsOfItsOrganisation", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		key := e.createAPIKey(tm.owner, org)
		want(t, e.do(req{method: "GET", path: projectsURL(org), token: key.Raw}), http.StatusOK)
		r := e.do(req{method: "POST", path: projectsURL(org), token: key.Raw, body: map[string]any{"name": "Via key"}})
		want(t, r, http.StatusCreated)
		wantProject(t, r.Body, projectWant{org: org, name: "Via key", status: "active"})
		id := r.str("id")
		want(t, e.do(req{method: "GET", path: projectURL(org, id), token: key.Raw}), http.StatusOK)
		want(t, e.do(req{method: "PATCH", path: projectURL(org, id), token: key.Raw, body: map[string]any{"status": "archived"}}), http.StatusOK)
		want(t, e.do(req{method: "DELETE", path: projectURL(org, id), token: key.Raw}), http.StatusNoContent)
		// The audit trail names the key as the actor.
		var actorType, actorKey string
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT actor_type, actor_api_key_id FROM events
			WHERE stream_id = $1 AND event_type = $2`, id, saasapi.EventProjectCreated).Scan(&actorType, &actorKey); err != nil {
			t.Fatal(err)
		}
		if actorType != "api_key" || actorKey != key.ID {
			t.Fatalf("project.created actor = %s %s, want api_key %s", actorType, actorKey, key.ID)
		}
	})

	t.Run("RecordsLastUse", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		key := e.createAPIKey(tm.owner, org)
		lastUsed := func() any {
			r := e.do(req{method: "GET", path: apiKeysURL(org) + "?limit=100", token: tm.owner.Token})
			want(t, r, http.StatusOK)
			for _, it := range r.items() {
				if it["id"] == key.ID {
					return it["last_used_at"]
				}
			}
			t.Fatalf("key %s is not in the list", key.ID)
			return nil
		}
		if v := lastUsed(); v != nil {
			t.Fatalf("last_used_at = %v before any use, want null", v)
		}
		want(t, e.do(req{method: "GET", path: projectsURL(org), token: key.Raw}), http.StatusOK)
		v := lastUsed()
		if v == nil {
			t.Fatal("last_used_at is null after the key was used, want the time of use")
		}
		wantTimestamp(t, "last_used_at", v)
	})

	t.Run("RejectsMistypedKeysWithoutTheDatabase", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		raw := e.createAPIKey(tm.owner, org).Raw
		p := len(auth.APIKeyPrefix)
		mistyped := map[string]string{
			"RandomCharChanged":   replaceAt(raw, p+10),
			"FirstRandomChanged":  replaceAt(raw, p),
			"ChecksumChanged":     replaceAt(raw, len(raw)-1),
			"Truncated":           raw[:len(raw)-1],
			"Extended":            raw + "0",
			"PrefixOnly":          auth.APIKeyPrefix,
			"UpperCased":          strings.ToUpper(raw),
			"SeparatorChanged":    raw[:len(raw)-7] + "-" + raw[len(raw)-6:],
			"PrefixTypo":          "sapj" + raw[p-1:],
			"HashInsteadOfKey":    hex.EncodeToString(auth.HashAPIKey(raw)),
			"KeyPrefixOfRealKey":  raw[:auth.APIKeyDisplayLen],
			"RealKeyWithSpaceMid": raw[:20] + " " + raw[20:],
		}
		down := downEnv(t, e)
		for name, bad := range mistyped {
			if bad == raw {
				t.Fatalf("%s: the mistyped key equals the real one", name)
			}
			wantProblem(t, e.do(req{method: "GET", path: projectsURL(org), token: bad}), http.StatusUnauthorized, saasapi.MsgInvalidTokenOrKey)
			// A server without a database rejects it the same way: no query
			// was needed to tell it is not a key.
			wantProblem(t, down.do(req{method: "GET", path: projectsURL(org), token: bad}), http.StatusUnauthorized, saasapi.MsgInvalidTokenOrKey)
		}
		// Whereas a well-formed key must be looked up: the server without a
		// database cannot answer it.
		unknown, _, _, err := auth.MintAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		wantProblem(t, e.do(req{method: "GET", path: projectsURL(org), token: unknown}), http.StatusUnauthorized, saasapi.MsgInvalidTokenOrKey)
		if r := down.do(req{method: "GET", path: projectsURL(org), token: unknown}); r.Status < 500 {
			t.Fatalf("a well-formed key on a server without database answered %d, want a 5xx (it must be looked up)", r.Status)
		}
	})

	t.Run("RevokedKeyIsRefused", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		key := e.createAPIKey(tm.owner, org)
		id := e.createProject(key.Raw, org, map[string]any{"name": "Before revoke"})["id"].(string)
		want(t, e.do(req{method: "DELETE", path: apiKeyURL(org, key.ID), token: tm.owner.Token}), http.StatusOK)
		for _, r := range []req{
			{method: "GET", path: projectsURL(org)},
			{method: "POST", path: projectsURL(org), body: map[string]any{"name": "After revoke"}},
			{method: "GET", path: projectURL(org, id)},
			{method: "PATCH", path: projectURL(org, id), body: map[string]any{"name": "After revoke"}},
			{method: "DELETE", path: projectURL(org, id)},
		} {
			r.token = key.Raw
			wantProblem(t, e.do(r), http.StatusUnauthorized, saasapi.MsgInvalidTokenOrKey)
		}
		if got := e.getProject(tm.owner.Token, org, id); got.str("name") != "Before revoke" {
			t.Fatalf("project is named %q after refused writes by a revoked key, want Before revoke", got.str("name"))
		}
	})

	t.Run("OtherOrganisationIsDenied", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		key := e.createAPIKey(tm.owner, org)
		foreign := e.createProject(tm.owner.Token, other, map[string]any{"name": "Foreign"})["id"].(string)
		for _, r := range []req{
			{method: "GET", path: projectsURL(other)},
			{method: "POST", path: projectsURL(other), body: map[string]any{"name": "Intruder"}},
			{method: "GET", path: projectURL(other, foreign)},
			{method: "PATCH", path: projectURL(other, foreign), body: map[string]any{"name": "Intruder"}},
			{method: "DELETE", path: projectURL(other, foreign)},
		} {
			r.token = key.Raw
			wantProblem(t, e.do(r), http.StatusForbidden, saasapi.MsgOrgAccessDenied)
		}
		wantProblem(t, e.do(req{method: "GET", path: projectsURL(saasapi.NewID().String()), token: key.Raw}),
			http.StatusNotFound, saasapi.MsgOrgNotFound)
	})

	t.Run("UserOnlyRoutesRefuseKeys", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		key := e.createAPIKey(tm.owner, org)
		for _, r := range []req{
			{method: "GET", path: "/me"},
			{method: "GET", path: "/orgs/" + org},
			{method: "GET", path: apiKeysURL(org)},
			{method: "POST", path: apiKeysURL(org), body: map[string]any{"name": "Self-minted"}},
			{method: "DELETE", path: apiKeyURL(org, key.ID)},
		} {
			r.token = key.Raw
			wantProblem(t, e.do(r), http.StatusUnauthorized, saasapi.MsgInvalidToken)
		}
	})
}

func TestRevokeAPIKey(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.teamOrg(tm)

	// revocations returns how many api_key.revoked events the key has.
	revocations := func(e *env, id string) int {
		var n int
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM events WHERE stream_id = $1 AND event_type = $2`,
			id, saasapi.EventAPIKeyRevoked).Scan(&n); err != nil {
			e.t.Fatal(err)
		}
		return n
	}

	t.Run("RevokesOnceAndKeepsFirstRevokedAt", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		key := e.createAPIKey(tm.owner, org)
		r := e.do(req{method: "DELETE", path: apiKeyURL(org, key.ID), token: tm.admin.Token})
		want(t, r, http.StatusOK)
		wantKeys(t, "revocation", r.Body, "id", "organisation_id", "status", "revoked_at")
		if r.Body["id"] != key.ID || r.Body["organisation_id"] != org || r.Body["status"] != "revoked" {
			t.Fatalf("revocation = %v, want id %s, organisation_id %s, status revoked", r.Body, key.ID, org)
		}
		wantTimestamp(t, "revoked_at", r.Body["revoked_at"])
		if n := revocations(e, key.ID); n != 1 {
			t.Fatalf("%d api_key.revoked events after one revocation, want 1", n)
		}
		again := e.do(req{method: "DELETE", path: apiKeyURL(org, key.ID), token: tm.owner.Token})
		want(t, again, http.StatusOK)
		if string(again.Raw) != string(r.Raw) {
			t.Fatalf("second revocation = %s, want the first one's %s (same revoked_at)", again.Raw, r.Raw)
		}
		if n := revocations(e, key.ID); n != 1 {
			t.Fatalf("%d api_key.revoked events after revoking twice, want 1", n)
		}
		list := e.do(req{method: "GET", path: apiKeysURL(org) + "?limit=100", token: tm.owner.Token})
		for _, it := range list.items() {
			if it["id"] == key.ID && it["revoked_at"] != r.Body["revoked_at"] {
				t.Fatalf("the list shows revoked_at %v, want the revocation's %v", it["revoked_at"], r.Body["revoked_at"])
			}
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		other := e.createOrg(tm.owner, uniqueName("Other"))
		foreign := e.createAPIKey(tm.owner, other)
		for _, id := range []string{saasapi.NewID().String(), foreign.ID} {
			wantProblem(t, e.do(req{method: "DELETE", path: apiKeyURL(org, id), token: tm.owner.Token}), http.StatusNotFound, saasapi.MsgAPIKeyNotFound)
		}
		if n := revocations(e, foreign.ID); n != 0 {
			t.Fatalf("the other organisation's key has %d revocations after a DELETE through this one, want 0", n)
		}
		want(t, e.do(req{method: "GET", path: projectsURL(other), token: foreign.Raw}), http.StatusOK)
		wantInvalid(t, e.do(req{method: "DELETE", path: apiKeyURL(org, "key-1"), token: tm.owner.Token}), "api_key_id")
	})

	t.Run("OnlyOwnersAndAdminsRevoke", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		key := e.createAPIKey(tm.owner, org)
		for _, u := range []user{tm.member, tm.viewer} {
			wantProblem(t, e.do(req{method: "DELETE", path: apiKeyURL(org, key.ID), token: u.Token}), http.StatusForbidden, saasapi.MsgInsufficientPerms)
		}
		wantProblem(t, e.do(req{method: "DELETE", path: apiKeyURL(org, key.ID), token: tm.outsider.Token}), http.StatusForbidden, saasapi.MsgOrgAccessDenied)
		if n := revocations(e, key.ID); n != 0 {
			t.Fatalf("%d revocations after refused DELETEs, want 0", n)
		}
		want(t, e.do(req{method: "GET", path: projectsURL(org), token: key.Raw}), http.StatusOK)
	})
}

func TestAPIKeyMetrics(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tm := e.newTeam()
	org := e.teamOrg(tm)
	const created, revokedTotal = "saas_api_api_keys_created_total", "saas_api_api_keys_revoked_total"
	values := func() [2]float64 {
		m := e.exposition()
		return [2]float64{metricValue(t, m, created), metricValue(t, m, revokedTotal)}
	}
	if v := values(); v != [2]float64{0, 0} {
		t.Fatalf("created/revoked = %v before any key, want [0 0]", v)
	}
	a, b := e.createAPIKey(tm.owner, org), e.createAPIKey(tm.admin, org)
	// Refused attempts count nothing.
	wantProblem(t, e.do(req{method: "POST", path: apiKeysURL(org), token: tm.member.Token, body: map[string]any{"name": "x"}}),
		http.StatusForbidden, saasapi.MsgInsufficientPerms)
	wantInvalid(t, e.do(req{method: "POST", path: apiKeysURL(org), token: tm.owner.Token, body: map[string]any{"name": ""}}), "name")
	wantProblem(t, e.do(req{method: "DELETE", path: apiKeyURL(org, saasapi.NewID().String()), token: tm.owner.Token}),
		http.StatusNotFound, saasapi.MsgAPIKeyNotFound)
	if v := values(); v != [2]float64{2, 0} {
		t.Fatalf("created/revoked = %v after two creations and refused attempts, want [2 0]", v)
	}
	for range 3 {
		want(t, e.do(req{method: "DELETE", path: apiKeyURL(org, a.ID), token: tm.owner.Token}), http.StatusOK)
	}
	if v := values(); v != [2]float64{2, 1} {
		t.Fatalf("created/revoked = %v after revoking one key three times, want [2 1]", v)
	}
	want(t, e.do(req{method: "DELETE", path: apiKeyURL(org, b.ID), token: tm.owner.Token}), http.StatusOK)
	if v := values(); v != [2]float64{2, 2} {
		t.Fatalf("created/revoked = %v after revoking the second key, want [2 2]", v)
	}
}

// TestRevokedKeyCannotWriteAfterAuthenticating: a key authenticated before
// its revocation committed is checked again under the ledger lock, so the
// write that raced the revocation is refused and records nothing.
func TestRevokedKeyCannotWriteAfterAuthenticating(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner := e.register("Owner")
	org := e.createOrg(owner, uniqueName("Race"))
	key := e.createAPIKey(owner, org)
	principal, err := e.svc.AuthenticateAPIKey(context.Background(), key.Raw)
	if err != nil {
		t.Fatal(err)
	}
	want(t, e.do(req{method: "DELETE", path: "/orgs/" + org + "/api-keys/" + key.ID, token: owner.Token}), http.StatusOK)
	events := e.count("events")
	_, err = e.svc.CreateProject(context.Background(), commands.Meta{Principal: principal, RequestID: "late"},
		saasapi.ID(org), commands.CreateProjectInput{Name: "too late"}, nil,
		func(projections.Project) (commands.Rendered, error) { return commands.Rendered{}, nil })
	if saasapi.ErrorCode(err) != saasapi.EUNAUTHENTICATED || saasapi.ErrorMessage(err) != saasapi.MsgInvalidTokenOrKey {
		t.Fatalf("write with a key revoked after authentication: got %v, want 401 %q", err, saasapi.MsgInvalidTokenOrKey)
	}
	if n := e.count("events"); n != events {
		t.Fatalf("the refused write recorded %d events", n-events)
	}
}
