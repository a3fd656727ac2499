package http_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/saasapi/saasapi"
)

// seriesLabel matches one label of a saas_api_requests_total or
// request_duration_seconds series.
var requestSeries = regexp.MustCompile(`(?m)^saas_api_request(?:s_total|_duration_seconds_count)\{([^}]*)\}`)

// TestCallerCannotGrowMetricsOrLogs sends made-up methods, long methods and
// random unmatched paths, and checks that /metrics holds only the fixed
// method set and route templates, grows by a few series at most, and that
// every request-derived log field is bounded.
func TestCallerCannotGrowMetricsOrLogs(t *testing.T) {
	t.Parallel()
	e := setup(t)
	before := e.exposition()

	var sent []req
	for i := range 300 {
		sent = append(sent, req{method: "MADEUP" + strconv.Itoa(i), path: "/healthz"})
	}
	for i := range 10 {
		sent = append(sent, req{method: strings.Repeat("X", 50_000+i), path: "/orgs"})
	}
	for i := range 100 {
		sent = append(sent, req{method: "GET", path: "/no/such/" + saasapi.NewID().String() + "/" + strconv.Itoa(i)})
	}
	for _, r := range sent[:10] {
		r.method = strings.ToLower(r.method)
		sent = append(sent, r)
	}
	for _, r := range sent {
		got := e.do(r)
		if r.method == "GET" {
			wantProblem(t, got, http.StatusNotFound, "not found")
		} else {
			wantProblem(t, got, http.StatusNotImplemented, "method not implemented")
		}
	}

	after := e.exposition()
	routes := map[string]bool{"unmatched": true}
	for _, rt := range e.server.Routes() {
		_, path, _ := strings.Cut(rt, " ")
		routes[path] = true
	}
	methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
	for _, m := range requestSeries.FindAllStringSubmatch(after, -1) {
		labels := map[string]string{}
		for _, kv := range strings.Split(m[1], ",") {
			k, v, _ := strings.Cut(kv, "=")
			labels[k] = strings.Trim(v, `"`)
		}
		if !slices.Contains(methods, labels["method"]) {
			t.Errorf("series with method %.40q, want one of %v", labels["method"], methods)
		}
		if !routes[labels["path"]] {
			t.Errorf("series with path %.80q, want a route template or unmatched", labels["path"])
		}
	}
	// A handful of new series (other/unmatched and their statuses, the
	// scrape itself), never one per request.
	if grown := len(after) - len(before); grown > 8<<10 {
		t.Errorf("/metrics grew by %d bytes for %d requests, want a few series at most", grown, len(sent))
	}

	sc := bufio.NewScanner(strings.NewReader(e.logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if len(sc.Bytes()) > 2<<10 {
			t.Fatalf("log line of %d bytes, want every request-derived field capped: %.200s", len(sc.Bytes()), sc.Text())
		}
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		if m, ok := line["method"].(string); ok && !slices.Contains(methods, m) {
			t.Fatalf("log line with method %.40q, want one of %v", m, methods)
		}
	}
}

// TestRequestLogFieldsAreCapped sends a long path, user agent and request ID
// and checks what the log line keeps of them.
func TestRequestLogFieldsAreCapped(t *testing.T) {
	t.Parallel()
	e := setup(t)
	longPath := "/" + strings.Repeat("p", 5000)
	r := e.do(req{method: "GET", path: longPath, header: map[string]string{
		"User-Agent": strings.Repeat("agent ", 2000), "X-Request-ID": strings.Repeat("r", 500),
	}})
	wantProblem(t, r, http.StatusNotFound, "not found")
	var line map[string]any
	sc := bufio.NewScanner(strings.NewReader(e.logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err == nil && l["route"] == "unmatched" {
			line = l
		}
	}
	if line == nil {
		t.Fatal("no log line for the request")
	}
	for _, k := range []string{"path", "user_agent", "request_id"} {
		v, _ := line[k].(string)
		if v == "" || len(v) > 256 {
			t.Errorf("log field %s has %d bytes, want 1..256", k, len(v))
		}
	}
	if p, _ := line["path"].(string); !strings.HasPrefix(p, "/ppp") || !strings.HasSuffix(p, "...") {
		t.Errorf("log path = %.40q..., want the start of the path, marked as cut", p)
	}
	if line["request_id"] == strings.Repeat("r", 500) || line["request_id"] != line["server_request_id"] {
		t.Errorf("an overlong X-Request-ID was logged as %v, want the generated one", line["request_id"])
	}
}
