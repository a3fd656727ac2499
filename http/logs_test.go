package http_test

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"
)

// TestRequestLogs: every request leaves one JSON line with its request ID,
// method, route template, status, duration and principal; and a full tour
// of the API leaves no password, token, raw key or hash in the logs.
func TestRequestLogs(t *testing.T) {
	t.Parallel()
	e := setup(t)
	tr := e.tour()
	r := e.do(req{method: "GET", path: "/orgs/" + tr.org, token: tr.owner.Token, header: map[string]string{"X-Request-ID": "log-probe"}})
	want(t, r, 200)

	var probe map[string]any
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(e.logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		if line["msg"] != "request" {
			continue
		}
		lines++
		for _, k := range []string{"request_id", "method", "route", "status", "duration_ms"} {
			if _, ok := line[k]; !ok {
				t.Errorf("request log line lacks %q: %s", k, sc.Text())
			}
		}
		if line["request_id"] == "log-probe" {
			probe = line
		}
	}
	if lines < 15 {
		t.Fatalf("only %d request log lines for the whole tour", lines)
	}
	if probe == nil {
		t.Fatal("no log line for the probe request")
	}
	if probe["route"] != "/orgs/{organisation_id}" || probe["method"] != "GET" || probe["status"] != float64(200) ||
		probe["principal_type"] != "user" || probe["principal_id"] != tr.owner.ID {
		t.Errorf("probe log line %v: want route template, method, status 200 and the owner as principal", probe)
	}
	logs := e.logs.String()
	for _, s := range tr.secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the logs contain a raw secret (%d characters)", len(s))
		}
	}
	if strings.Contains(logs, "$argon2id$") {
		t.Error("the logs contain a password hash")
	}
}
