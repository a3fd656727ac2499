package http_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/saasapi/saasapi"
	apihttp "github.com/saasapi/saasapi/http"
)

// tenKB is a string far longer than any field, parameter or header allows.
var tenKB = strings.Repeat("x", 10<<10)

// badValue is one hostile value for a string input; mustFail says that
// no route may accept it (a 4xx, not a 2xx).
type badValue struct {
	name, value string
	mustFail    bool
}

// badStrings are tried in every path, query and header parameter. A NUL
// cannot be sent in a header with Go's client (net/http refuses it before
// any handler; TestUnparsableRequestsAreProblems sends one by hand).
var badStrings = []badValue{
	{"NUL", "a\x00b", true},
	{"invalid UTF-8", "a\xffb", true},
	{"10 KB", tenKB, true},
}

// badJSON are tried as the value of every body field, as raw JSON.
var badJSON = []badValue{
	{"NUL", `"a\u0000b"`, true},
	{"invalid UTF-8", "\"a\xffb\"", true},
	{"lone surrogate", `"a\ud800b"`, true},
	{"10 KB", `"` + tenKB + `"`, true},
	{"number", `1`, true},
	{"boolean", `true`, true},
	{"array", `["a"]`, true},
	{"object", `{"a":"b"}`, true},
	{"null", `null`, false}, // a nullable field may take it
}

// walkedOperation is one operation of the OpenAPI document.
type walkedOperation struct {
	method, path string
	op           *openapi3.Operation
	params       []*openapi3.Parameter
	public       bool
}

func documentedOperations(t *testing.T) []walkedOperation {
	t.Helper()
	c, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	var out []walkedOperation
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			w := walkedOperation{method: method, path: path, op: op,
				public: op.Security != nil && len(*op.Security) == 0}
			for _, p := range slices.Concat(item.Parameters, op.Parameters) {
				w.params = append(w.params, p.Value)
			}
			out = append(out, w)
		}
	}
	slices.SortFunc(out, func(a, b walkedOperation) int { return strings.Compare(a.op.OperationID, b.op.OperationID) })
	return out
}

// world is what one operation of the walk acts on: an organisation of the
// owner with a member, a project and an API key.
type world struct {
	owner, member     user
	org, project, key string
}

func (e *env) newWorld(owner user) world {
	e.t.Helper()
	w := world{owner: owner, member: e.register("Member"), org: e.createOrg(owner, uniqueName("Walk"))}
	e.addMember(owner, w.org, w.member, "member")
	w.project, _ = e.createProject(owner.Token, w.org, map[string]any{"name": "Walked"})["id"].(string)
	w.key = e.createAPIKey(owner, w.org).ID
	return w
}

// walkBodies are valid bodies of the operations that take one; the walk
// spoils one field at a time.
func walkBodies(w world, outsider user) map[string]func() map[string]any {
	return map[string]func() map[string]any{
		"register": func() map[string]any {
			return map[string]any{"email": "walk-" + strings.ToLower(saasapi.NewID().String()) + "@example.com",
				"password": testPassword, "display_name": "Walker"}
		},
		"login":              func() map[string]any { return map[string]any{"email": w.owner.Email, "password": testPassword} },
		"createOrganisation": func() map[string]any { return map[string]any{"name": uniqueName("Walk")} },
		"updateOrganisation": func() map[string]any { return map[string]any{"name": uniqueName("Walk")} },
		"addMember":          func() map[string]any { return map[string]any{"user_id": outsider.ID, "role": "viewer"} },
		"changeMemberRole":   func() map[string]any { return map[string]any{"role": "viewer"} },
		"createProject":      func() map[string]any { return map[string]any{"name": "P", "description": "d"} },
		"updateProject":      func() map[string]any { return map[string]any{"name": "Q"} },
		"createAPIKey":       func() map[string]any { return map[string]any{"name": "K"} },
		// The walk's caller owns its organisation alone: 409, nobody erased.
		"eraseMe": func() map[string]any { return map[string]any{"password": testPassword} },
	}
}

// TestEveryInputRefusesBadText walks every operation of the OpenAPI
// document and sends NUL, invalid UTF-8 and 10 KB strings in each path,
// query and header parameter, and those and values of the wrong JSON type
// in each body field: no answer is a 5xx, every 4xx is problem details,
// and no hostile value is accepted.
func TestEveryInputRefusesBadText(t *testing.T) {
	t.Parallel()
	// Every operation registers its own users, from one address: more than
	// a person's registration budget.
	e := setup(t, func(d *apihttp.Deps) {
		th := apihttp.DefaultThrottle
		th.RegisterAddress.Events, th.RegisterAddress.Burst = 1000, 1000
		d.Throttle = &th
	})
	owner := e.register("Owner")
	for _, wo := range documentedOperations(t) {
		t.Run(wo.op.OperationID, func(t *testing.T) {
			t.Parallel()
			e := e.forT(t)
			w := e.newWorld(owner)
			bodies := walkBodies(w, e.register("Outsider"))
			pathValues := map[string]string{"organisation_id": w.org, "user_id": w.member.ID,
				"project_id": w.project, "api_key_id": w.key}
			hasBody := wo.op.RequestBody != nil
			body := bodies[wo.op.OperationID]
			if hasBody && body == nil {
				t.Fatalf("%s takes a body: add a valid one to walkBodies", wo.op.OperationID)
			}
			// send sends the operation with path values, one query
			// parameter, headers and a raw body.
			send := func(path map[string]string, query string, header map[string]string, raw string) response {
				p := wo.path
				for name, v := range path {
					p = strings.ReplaceAll(p, "{"+name+"}", url.PathEscape(v))
				}
				if query != "" {
					p += "?" + query
				}
				r := req{method: strings.ToUpper(wo.method), path: p, token: owner.Token, header: header}
				if hasBody {
					r.body = raw
				}
				return e.do(r)
			}
			validBody := func() string {
				if !hasBody {
					return ""
				}
				b, _ := json.Marshal(body())
				return string(b)
			}
			check := func(what string, bad badValue, r response) {
				t.Helper()
				if r.Status >= 500 {
					t.Errorf("%s %s: %d, want no 5xx; body %.300s", what, bad.name, r.Status, r.Raw)
					return
				}
				if bad.mustFail && r.Status < 400 {
					t.Errorf("%s %s: %d, want it refused; body %.300s", what, bad.name, r.Status, r.Raw)
				}
				if ct := r.Header.Get("Content-Type"); r.Status >= 400 && ct != problemMediaType {
					t.Errorf("%s %s: %d with Content-Type %q, want %s", what, bad.name, r.Status, ct, problemMediaType)
				}
			}
			for _, param := range wo.params {
				for _, bad := range badStrings {
					what := param.In + " parameter " + param.Name
					switch param.In {
					case "path":
						path := maps.Clone(pathValues)
						path[param.Name] = bad.value
						check(what, bad, send(path, "", nil, validBody()))
					case "query":
						check(what, bad, send(pathValues, url.QueryEscape(param.Name)+"="+url.QueryEscape(bad.value), nil, validBody()))
					case "header":
						if bad.name == "NUL" {
							continue
						}
						r := send(pathValues, "", map[string]string{param.Name: bad.value}, validBody())
						if param.Name == "X-Request-ID" {
							// Not refused: replaced by a generated one.
							bad.mustFail = false
							if got := r.Header.Get("X-Request-ID"); !ulidPattern.MatchString(got) {
								t.Errorf("X-Request-ID %s came back as %.60q, want a generated ULID", bad.name, got)
							}
						}
						check(what, bad, r)
					}
				}
			}
			// The bearer token is compared too.
			for _, bad := range badStrings[1:] {
				r := send(pathValues, "", map[string]string{"Authorization": "Bearer " + bad.value}, validBody())
				bad.mustFail = !wo.public
				check("Authorization", bad, r)
			}
			if !hasBody {
				return
			}
			schema := wo.op.RequestBody.Value.Content.Get("application/json").Schema.Value
			fields := slices.Sorted(maps.Keys(schema.Properties))
			if len(fields) == 0 {
				t.Fatalf("the body of %s documents no field", wo.op.OperationID)
			}
			for _, field := range fields {
				for _, bad := range badJSON {
					b := body()
					b[field] = "\x01spoiled\x01"
					raw, _ := json.Marshal(b)
					spoiled := strings.Replace(string(raw), `"\u0001spoiled\u0001"`, bad.value, 1)
					check("body field "+field, bad, send(pathValues, "", nil, spoiled))
				}
			}
			for _, raw := range []string{`[]`, `"text"`, `1`, `null`, "{\"\xff\":1}", `{"\u0000":1}`} {
				check("body", badValue{name: raw, mustFail: true}, send(pathValues, "", nil, raw))
			}
		})
	}
}

// wantRefused sends r and fails unless it is a 422 naming field that
// changed no row of any table a command writes to.
func (e *env) wantRefused(r req, field string) {
	e.t.Helper()
	before := e.counts()
	wantInvalid(e.t, e.do(r), field)
	if after := e.counts(); !maps.Equal(after, before) {
		e.t.Fatalf("a refused request changed row counts from %v to %v", before, after)
	}
}

// TestBadTextNamesTheField: NUL and invalid UTF-8, which PostgreSQL
// refuses (a 500 before), are a 422 naming the field, parameter or header,
// and change nothing.
func TestBadTextNamesTheField(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner := e.register("Owner")
	org := e.createOrg(owner, uniqueName("Text"))
	project, _ := e.createProject(owner.Token, org, map[string]any{"name": "P"})["id"].(string)
	orgs, projects := "/orgs/"+org, "/orgs/"+org+"/projects"
	type textCase struct {
		name, method, path, field string
		body                      string
		header                    map[string]string
	}
	for _, bad := range []struct{ name, json, query string }{
		{"NUL", `"a\u0000b"`, "a%00b"},
		{"invalid UTF-8", "\"a\xffb\"", "a%FFb"},
	} {
		cases := []textCase{
			{"register display_name", "POST", "/auth/register", "display_name",
				`{"email":"text-` + strings.ToLower(saasapi.NewID().String()) + `@example.com","password":"` + testPassword + `","display_name":` + bad.json + `}`, nil},
			{"register email", "POST", "/auth/register", "email",
				`{"email":` + bad.json + `,"password":"` + testPassword + `","display_name":"D"}`, nil},
			{"login email", "POST", "/auth/login", "email", `{"email":` + bad.json + `,"password":"p"}`, nil},
			{"organisation name", "POST", "/orgs", "name", `{"name":` + bad.json + `}`, nil},
			{"organisation rename", "PATCH", orgs, "name", `{"name":` + bad.json + `}`, nil},
			{"project name", "POST", projects, "name", `{"name":` + bad.json + `}`, nil},
			{"project description", "POST", projects, "description", `{"name":"P","description":` + bad.json + `}`, nil},
			{"project update", "PATCH", projects + "/" + project, "description", `{"description":` + bad.json + `}`, nil},
			{"API key name", "POST", orgs + "/api-keys", "name", `{"name":` + bad.json + `}`, nil},
			{"project name filter", "GET", projects + "?name=" + bad.query, "name", "", nil},
			{"project cursor", "GET", projects + "?cursor=" + bad.query, "cursor", "", nil},
			{"audit action", "GET", orgs + "/audit-events?action=" + bad.query, "action", "", nil},
			{"audit target_id", "GET", orgs + "/audit-events?target_id=" + bad.query, "target_id", "", nil},
			{"export action", "GET", orgs + "/audit-events/export?action=" + bad.query, "action", "", nil},
			{"page limit", "GET", "/orgs?limit=" + bad.query, "limit", "", nil},
			{"path segment", "GET", "/orgs/" + bad.query, "organisation_id", "", nil},
		}
		if bad.name != "NUL" { // net/http refuses a NUL in a header itself
			cases = append(cases,
				textCase{"Idempotency-Key", "POST", "/orgs", "Idempotency-Key", `{"name":"N"}`, map[string]string{"Idempotency-Key": "k\xffk"}},
				textCase{"If-Match", "PATCH", orgs, "If-Match", `{"name":"N"}`, map[string]string{"If-Match": "\"1\xff\""}})
		}
		for _, tc := range cases {
			t.Run(bad.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				r := req{method: tc.method, path: tc.path, token: owner.Token, header: tc.header}
				if tc.body != "" {
					r.body = tc.body
				}
				e.forT(t).wantRefused(r, tc.field)
			})
		}
	}
}

// rawExchange sends raw bytes as one request on a fresh connection and
// returns the status, headers and body of the answer.
func rawExchange(t *testing.T, e *env, raw string) (int, http.Header, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%.80q: %v", raw, err)
	}
	defer func() { _ = res.Body.Close() }()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, body
}

// TestUnparsableRequestsAreProblems: requests net/http refuses before any
// handler runs are answered as problem details, not in plain text; a
// target that cannot be parsed cannot match a route and is a 404.
func TestUnparsableRequestsAreProblems(t *testing.T) {
	t.Parallel()
	e := setup(t)
	get := func(target, headers string) string {
		return "GET " + target + " HTTP/1.1\r\nHost: x\r\n" + headers + "Connection: close\r\n\r\n"
	}
	for _, tc := range []struct {
		name, raw string
		status    int
		detail    string
	}{
		{"bad escape in a path segment", get("/orgs/%zz", ""), http.StatusNotFound, "not found"},
		{"bad escape deeper", get("/orgs/%zz/projects/%", ""), http.StatusNotFound, "not found"},
		{"control character in the target", get("/orgs/\x01", ""), http.StatusNotFound, "not found"},
		{"NUL in X-Request-ID", get("/healthz", "X-Request-ID: a\x00b\r\n"), http.StatusBadRequest, "request could not be parsed"},
		{"NUL in If-Match", get("/healthz", "If-Match: \"1\x00\"\r\n"), http.StatusBadRequest, "request could not be parsed"},
		{"header name with a space", get("/healthz", "Bad Header: x\r\n"), http.StatusBadRequest, "request could not be parsed"},
		{"headers over 1 MiB", get("/healthz", "X-Big: "+strings.Repeat("b", 1<<20+8192)+"\r\n"),
			http.StatusRequestHeaderFieldsTooLarge, "request headers are too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, header, body := rawExchange(t, e, tc.raw)
			if status != tc.status || header.Get("Content-Type") != problemMediaType {
				t.Fatalf("answered %d %q, want %d %s; body %.200s", status, header.Get("Content-Type"), tc.status, problemMediaType, body)
			}
			var p map[string]any
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("body %.200q is not JSON: %v", body, err)
			}
			wantProblem(t, response{Status: status, Header: header, Raw: body, Body: p}, tc.status, tc.detail)
			if !ulidPattern.MatchString(header.Get("X-Request-ID")) || header.Get("Cache-Control") != "no-store" {
				t.Fatalf("headers %v lack a generated X-Request-ID or no-store", header)
			}
		})
	}
	// The connection-level rewrite leaves ordinary answers alone, text
	// bodies included.
	status, header, body := rawExchange(t, e, get("/metrics", ""))
	if status != http.StatusOK || !strings.HasPrefix(header.Get("Content-Type"), "text/plain") || !bytes.Contains(body, []byte("saas_api_")) {
		t.Fatalf("/metrics answered %d %q %.100s", status, header.Get("Content-Type"), body)
	}
	// Invalid UTF-8 reaches the service, which replaces the ID.
	status, header, _ = rawExchange(t, e, get("/healthz", "X-Request-ID: a\xffb\r\n"))
	if status != http.StatusOK || !ulidPattern.MatchString(header.Get("X-Request-ID")) {
		t.Fatalf("an X-Request-ID of invalid UTF-8: %d with X-Request-ID %q, want 200 with a generated one", status, header.Get("X-Request-ID"))
	}
}

// TestQueryPatternsAreEnforced reads every query parameter of the OpenAPI
// document and sends a value that breaks its schema (pattern, enum,
// format, type, bounds): each is a 422 that names the parameter.
func TestQueryPatternsAreEnforced(t *testing.T) {
	t.Parallel()
	e := setup(t)
	owner := e.register("Owner")
	org := e.createOrg(owner, uniqueName("Patterns"))
	checked := 0
	for _, wo := range documentedOperations(t) {
		for _, param := range wo.params {
			if param.In != "query" {
				continue
			}
			schema := param.Schema.Value
			var violations []string
			switch {
			case schema.Pattern != "":
				if regexp.MustCompile(schema.Pattern).MatchString("!!bad") {
					t.Fatalf("%s: the probe matches pattern %s", param.Name, schema.Pattern)
				}
				violations = append(violations, "!!bad")
			case len(schema.Enum) > 0, schema.Format == "date-time", schema.Type.Is("integer"):
				violations = append(violations, "!!bad")
			}
			if schema.MaxLength != nil {
				violations = append(violations, strings.Repeat("a", int(*schema.MaxLength)+1))
			}
			if schema.Min != nil {
				violations = append(violations, fmt.Sprint(int64(*schema.Min)-1))
			}
			if schema.Max != nil {
				violations = append(violations, fmt.Sprint(int64(*schema.Max)+1))
			}
			if len(violations) == 0 {
				t.Errorf("%s %s: query parameter %s documents no constraint to check", wo.method, wo.path, param.Name)
			}
			path := strings.ReplaceAll(wo.path, "{organisation_id}", org)
			for _, v := range violations {
				r := e.do(req{method: strings.ToUpper(wo.method), path: path + "?" + param.Name + "=" + url.QueryEscape(v), token: owner.Token})
				if r.Status != http.StatusUnprocessableEntity {
					t.Errorf("%s %s?%s=%.40s: %d, want 422", wo.method, wo.path, param.Name, v, r.Status)
					continue
				}
				wantInvalid(t, r, param.Name)
				checked++
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d violations checked; the document lost its query parameters?", checked)
	}
}
