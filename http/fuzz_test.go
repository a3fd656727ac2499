package http

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/projections"
)

// The fuzz targets hold the parsers of caller input to one promise: an
// answer is a success whose strings are text, or a 4xx problem; never a
// panic, never a 5xx. CI runs each for a few seconds (.ci/run); the seeds
// below run with every `go test`.

// wantNilOr422 fails unless err is nil or a validation error, the only
// failure a parser of query input may report (422).
func wantNilOr422(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil && saasapi.ErrorCode(err) != saasapi.EINVALID {
		t.Fatalf("%s: %v, want a validation error (422)", what, err)
	}
	if err != nil {
		rec := httptest.NewRecorder()
		(&Server{}).writeError(rec, httptest.NewRequest("GET", "/", nil), err)
		if rec.Code != http.StatusUnprocessableEntity || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s: answered %d %s, want a 422 problem", what, rec.Code, rec.Header().Get("Content-Type"))
		}
	}
}

func wantText(t *testing.T, what string, values ...string) {
	t.Helper()
	for _, v := range values {
		if !saasapi.ValidText(v) {
			t.Fatalf("%s: %q is not text, yet it was accepted", what, v)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"name":"Acme"}`, `{"name":"Acme","slug":"acme","description":null,"status":"active"}`,
		`{"name":"a\u0000b"}`, "{\"name\":\"a\xffb\"}", `{"name":"\ud800"}`, `{"name":"\udc00x"}`,
		`{"name":"\ud83d\ude00"}`, `{"name":"\\u0000"}`, `{"NAME":"x"}`, `{"name":1}`, `{"name":["x"]}`,
		`{"name":"x","description":{"a":"\u0000"}}`, `{"name":"x","status":null}`, `{"name":"a","name":"b"}`,
		`{"name":"x","extra":"\ud800\ud800"}`, `[]`, `null`, ``, `{`, `{"name":"x"} trailing`,
	} {
		f.Add([]byte(seed), "application/json")
	}
	f.Add([]byte(`{"name":"x"}`), "text/plain")
	f.Add([]byte(`{"name":"x"}`), "application/merge-patch+json; charset=utf-8")
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		var dst struct {
			Name        string                 `json:"name"`
			Slug        *string                `json:"slug"`
			Description saasapi.OptionalString `json:"description"`
			Status      *string                `json:"status" null:"no"`
			Extra       Nullable[string]       `json:"extra"`
		}
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		_, err := decode(r, &dst, "name")
		if err != nil {
			var de *decodeError
			if !errors.As(err, &de) || de.status < 400 || de.status > 499 {
				t.Fatalf("decode(%q) = %v, want a 4xx decodeError", body, err)
			}
			return
		}
		wantText(t, "decoded name", dst.Name)
		wantText(t, "decoded extra", dst.Extra.Value)
		for _, p := range []*string{dst.Slug, dst.Description.Value, dst.Status} {
			if p != nil {
				wantText(t, "decoded field", *p)
			}
		}
	})
}

func FuzzQueryParsers(f *testing.F) {
	for _, seed := range []string{
		"", "limit=10&offset=5", "limit=0", "limit=%zz", "offset=-1", "name=a%00b", "name=%ff", "name=caf%C3%A9",
		"status=active&sort_by=name&sort_direction=asc", "status=%00", "sort_by=%zz", "cursor=%00", "cursor=!!bad",
		"action=member.role_changed", "action=!!bad", "action=a%00.b", "target_type=project&target_id=%ff",
		"actor_user_id=01JQ3R4S5T6V7W8X9Y0Z1A2B3C", "since=2026-01-01T00:00:00Z&until=x", "before_sequence=1",
		"before_sequence=0", "after_sequence=-1", "after_sequence=99999999999999999999", "a=1;b=2", "%zz=1", "&&=&",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.RawQuery = raw
		page, err := pageParams(r)
		wantNilOr422(t, "pageParams", err)
		if err == nil && (page.Limit < 1 || page.Limit > 100 || page.Offset < 0) {
			t.Fatalf("pageParams(%q) = %+v, out of range", raw, page)
		}
		pq, err := projectQuery(r)
		wantNilOr422(t, "projectQuery", err)
		if err == nil {
			wantText(t, "project name filter", pq.Name)
			if pq.After != nil {
				wantText(t, "cursor key", pq.After.Name)
			}
		}
		for _, cursor := range []struct {
			name     string
			positive bool
		}{{"before_sequence", true}, {"after_sequence", false}} {
			filter, seq, err := auditQuery(r, cursor.name, cursor.positive)
			wantNilOr422(t, "auditQuery", err)
			if err == nil {
				wantText(t, "audit action", filter.Action)
				if filter.Action != "" && !actionPattern.MatchString(filter.Action) {
					t.Fatalf("action %q was accepted against its pattern", filter.Action)
				}
				if seq != nil && *seq < 0 {
					t.Fatalf("%s = %d was accepted", cursor.name, *seq)
				}
			}
		}
	})
}

func FuzzProjectCursor(f *testing.F) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	for _, c := range []projectCursor{
		{Sort: projections.SortCreatedAt, Desc: true, ID: "01JQ3R4S5T6V7W8X9Y0Z1A2B3C", At: at},
		{Sort: projections.SortName, Name: "caf\u00e9", Key: "Zeta", ID: "01JQ3R4S5T6V7W8X9Y0Z1A2B3C", At: at},
		{Sort: projections.SortStatus, Status: "archived", Key: "archived", ID: "01jq3r4s5t6v7w8x9y0z1a2b3c", At: at},
		{Sort: projections.SortName, Name: "a\x00b", Key: "k", ID: "01JQ3R4S5T6V7W8X9Y0Z1A2B3C", At: at},
		{Sort: "id; DROP TABLE projects", ID: "01JQ3R4S5T6V7W8X9Y0Z1A2B3C", At: at},
	} {
		f.Add(encodeCursor(c))
	}
	for _, seed := range []string{"", "!!bad", "e30", "bnVsbA", "eyJpIjoiIn0"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := decodeCursor(raw)
		wantNilOr422(t, "decodeCursor", err)
		if err != nil {
			return
		}
		wantText(t, "cursor strings", c.Name, c.Key, c.Status)
		if _, err := saasapi.ParseID(c.ID.String()); err != nil {
			t.Fatalf("cursor id %q was accepted", c.ID)
		}
		// What the service encodes, it decodes again.
		again, err := decodeCursor(encodeCursor(c))
		if err != nil || again.Name != c.Name || again.Key != c.Key || again.ID != c.ID || !again.At.Equal(c.At) {
			t.Fatalf("cursor %+v does not survive a round trip: %+v, %v", c, again, err)
		}
	})
}

func FuzzIfMatch(f *testing.F) {
	for _, seed := range []string{"", "*", `"1"`, `"42"`, `W/"1"`, `1`, `"-1"`, `"1`, `" 1 "`, `"99999999999999999999"`,
		"\"1\x00\"", "\"\xff\"", `"1", "2"`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := parseIfMatch(raw)
		wantNilOr422(t, "parseIfMatch", err)
		if err != nil {
			if saasapi.ValidText(raw) {
				t.Fatalf("parseIfMatch(%q) refused text: %v", raw, err)
			}
			return
		}
		if !saasapi.ValidText(raw) {
			t.Fatalf("parseIfMatch(%q) accepted what is not text", raw)
		}
		if v == nil || *v < 0 {
			return
		}
		// A version the caller can expect is one of our ETags, which
		// parses back to itself.
		rec := httptest.NewRecorder()
		setETag(rec, *v)
		if back, err := parseIfMatch(rec.Header().Get("ETag")); err != nil || back == nil || *back != *v {
			t.Fatalf("ETag %s of version %d parses as %v, %v", rec.Header().Get("ETag"), *v, back, err)
		}
	})
}
