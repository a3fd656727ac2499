package http_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	apihttp "github.com/saasapi/saasapi/http"
)

// The OpenAPI document is a contract the tests enforce in two ways: its
// operations are exactly the router's routes (TestOpenAPIRoutesMatchRouter),
// and every response any test in this package receives through env.do or
// env.send is validated against it (checkResponse): the status must be
// documented for the operation, the documented headers must be present and
// valid, and the body must match the schema of its Content-Type.

// isDocsPath reports the paths served only with docs enabled, which are
// not part of the document they serve.
func isDocsPath(p string) bool {
	return p == "/openapi.json" || p == "/docs" || p == "/redoc" || strings.HasPrefix(p, "/docs/assets/")
}

// contract is the loaded document and its router, built once per test
// binary.
type contract struct {
	doc    *openapi3.T
	router routers.Router
}

var loadContract = sync.OnceValues(func() (*contract, error) {
	data, err := apihttp.OpenAPI()
	if err != nil {
		return nil, err
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("load the OpenAPI document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is invalid: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route the OpenAPI document: %w", err)
	}
	return &contract{doc: doc, router: router}, nil
})

// validatedResponses counts the responses checkResponse validated, and
// exercised counts them by documented operation and status, for the
// summary TestMain prints (reportOpenAPI).
var (
	validatedResponses atomic.Int64
	exercised          sync.Map // "METHOD /path STATUS" -> *atomic.Int64
)

// reportOpenAPI writes how many responses were validated and, with
// SAAS_API_OPENAPI_COVERAGE=1, every documented response of every
// operation with the number of times the tests received it (0: never).
func reportOpenAPI(w io.Writer) {
	fmt.Fprintf(w, "openapi: %d responses validated against http/openapi.yaml\n", validatedResponses.Load())
	c, err := loadContract()
	if os.Getenv("SAAS_API_OPENAPI_COVERAGE") == "" || err != nil {
		return
	}
	var lines []string
	for p, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				n := int64(0)
				if v, ok := exercised.Load(method + " " + p + " " + status); ok {
					n = v.(*atomic.Int64).Load()
				}
				lines = append(lines, fmt.Sprintf("%6d  %s %s %s", n, method, p, status))
			}
		}
	}
	slices.SortFunc(lines, func(a, b string) int { return strings.Compare(a[8:], b[8:]) })
	fmt.Fprintf(w, "openapi: responses received per documented operation and status:\n%s\n", strings.Join(lines, "\n"))
}

// schemaOptions are the options openapi3filter uses for a 3.1 document's
// response bodies.
var schemaOptions = []openapi3.SchemaValidationOption{
	openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse(), openapi3.MultiErrors(),
}

// checkResponse validates the response to hr against the OpenAPI document;
// it returns nil when it conforms (or is one of the docs pages, which the
// document does not describe).
func checkResponse(hr *http.Request, res response) error {
	c, err := loadContract()
	if err != nil {
		return err
	}
	route, params, err := c.router.FindRoute(hr)
	if err != nil {
		return checkUnrouted(c, hr, res, err)
	}
	what := fmt.Sprintf("%s %s (operation %s, %s %s) answered %d", hr.Method, hr.URL.Path,
		route.Operation.OperationID, route.Method, route.Path, res.Status)
	mediaType, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	ndjson := mediaType == "application/x-ndjson"
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: hr, PathParams: params, Route: route},
		Status:                 res.Status,
		Header:                 res.Header,
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true, // an undocumented status fails
			MultiError:            true,
			ExcludeResponseBody:   ndjson, // validated line by line below
		},
	}
	input.SetBodyBytes(res.Raw)
	if err := openapi3filter.ValidateResponse(context.Background(), input); err != nil {
		return fmt.Errorf("%s, which does not conform to the OpenAPI document: %w; body %.300s", what, err, res.Raw)
	}
	if ndjson {
		if err := checkNDJSON(route, res); err != nil {
			return fmt.Errorf("%s, which does not conform to the OpenAPI document: %w", what, err)
		}
	}
	validatedResponses.Add(1)
	v, _ := exercised.LoadOrStore(fmt.Sprintf("%s %s %d", route.Method, route.Path, res.Status), new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	return nil
}

// knownMethods are the methods the service routes; any other is 501.
var knownMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions}

// checkUnrouted accepts a response to a request the document has no
// operation for only when it is the 404, 405 or 501 problem the router
// answers for unknown paths, methods not served there and unknown methods
// (or a docs page).
func checkUnrouted(c *contract, hr *http.Request, res response, routeErr error) error {
	if isDocsPath(hr.URL.Path) && res.Status != http.StatusNotFound {
		return nil
	}
	wantStatus := http.StatusNotFound
	switch {
	case !slices.Contains(knownMethods, hr.Method):
		wantStatus = http.StatusNotImplemented
	case errors.Is(routeErr, routers.ErrMethodNotAllowed):
		wantStatus = http.StatusMethodNotAllowed
	}
	what := fmt.Sprintf("%s %s (no operation in the OpenAPI document: %v) answered %d", hr.Method, hr.URL.Path, routeErr, res.Status)
	if res.Status != wantStatus {
		return fmt.Errorf("%s, want %d: an undocumented route?", what, wantStatus)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
		return fmt.Errorf("%s with Content-Type %q, want application/problem+json", what, ct)
	}
	var body any
	if err := json.Unmarshal(res.Raw, &body); err != nil {
		return fmt.Errorf("%s with a body that is not JSON: %w", what, err)
	}
	if err := c.doc.Components.Schemas["Problem"].Value.VisitJSON(body, schemaOptions...); err != nil {
		return fmt.Errorf("%s with a body that is not a Problem: %w", what, err)
	}
	validatedResponses.Add(1)
	return nil
}

// checkNDJSON validates each line of an NDJSON body against the schema of
// its media type, which describes one line.
func checkNDJSON(route *routers.Route, res response) error {
	ref := route.Operation.Responses.Status(res.Status)
	if ref == nil || ref.Value == nil {
		return fmt.Errorf("status %d is not documented", res.Status)
	}
	mt := ref.Value.Content.Get(res.Header.Get("Content-Type"))
	if mt == nil || mt.Schema == nil {
		return errors.New("no schema for application/x-ndjson")
	}
	if len(res.Raw) > 0 && !bytes.HasSuffix(res.Raw, []byte("\n")) {
		return errors.New("the NDJSON body does not end in a line feed")
	}
	sc := bufio.NewScanner(bytes.NewReader(res.Raw))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		var v any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return fmt.Errorf("NDJSON line %d is not JSON: %w", n, err)
		}
		if err := mt.Schema.Value.VisitJSON(v, schemaOptions...); err != nil {
			return fmt.Errorf("NDJSON line %d: %w", n, err)
		}
	}
	return sc.Err()
}

// docsRoutes are the routes that serve the document rather than appear in
// it.
var docsRoutes = []string{"GET /openapi.json", "GET /docs", "GET /redoc", "GET /docs/assets/*"}

func TestOpenAPIRoutesMatchRouter(t *testing.T) {
	t.Parallel()
	c, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for p, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+p)
		}
	}
	routed := apihttp.NewServer(apihttp.Deps{DocsEnabled: true}).Routes()
	for _, r := range docsRoutes {
		if !slices.Contains(routed, r) {
			t.Errorf("route %s is missing with docs enabled", r)
		}
	}
	routed = slices.DeleteFunc(routed, func(r string) bool { return slices.Contains(docsRoutes, r) })
	var undocumented, unrouted []string
	for _, r := range routed {
		if !slices.Contains(documented, r) {
			undocumented = append(undocumented, r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routed, d) {
			unrouted = append(unrouted, d)
		}
	}
	slices.Sort(undocumented)
	slices.Sort(unrouted)
	if len(undocumented) > 0 {
		t.Errorf("routes.go serves %d route(s) that http/openapi.yaml does not document; add them to the document:\n  %s",
			len(undocumented), strings.Join(undocumented, "\n  "))
	}
	if len(unrouted) > 0 {
		t.Errorf("http/openapi.yaml documents %d operation(s) that routes.go does not serve; route them or remove them from the document:\n  %s",
			len(unrouted), strings.Join(unrouted, "\n  "))
	}

	without := apihttp.NewServer(apihttp.Deps{}).Routes()
	for _, r := range docsRoutes {
		if slices.Contains(without, r) {
			t.Errorf("route %s exists with docs disabled", r)
		}
	}
}

// TestOpenAPIDocumentFromYAML checks that the JSON the service serves is
// the YAML source, key for key: kin-openapi reads both and must find the
// same document.
func TestOpenAPIDocumentFromYAML(t *testing.T) {
	t.Parallel()
	source, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fromYAML, err := openapi3.NewLoader().LoadFromData(source)
	if err != nil {
		t.Fatal(err)
	}
	c, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	a, err := json.Marshal(fromYAML)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c.doc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("the served JSON differs from openapi.yaml:\nYAML %.500s\nJSON %.500s", a, b)
	}
	if c.doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi = %q, want 3.1.0", c.doc.OpenAPI)
	}
	// Key order is kept, so the rendered docs follow the source.
	served, err := apihttp.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	if i, j := bytes.Index(served, []byte(`"/healthz"`)), bytes.Index(served, []byte(`"/auth/register"`)); i < 0 || j < i {
		t.Fatalf("paths are not in the order of openapi.yaml")
	}
}

// externalURL finds an absolute URL outside comments.
var (
	htmlComment = regexp.MustCompile(`(?s)<!--.*?-->`)
	jsComment   = regexp.MustCompile(`(?m)^\s*//.*$`)
	externalURL = regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|https?://`)
	localRef    = regexp.MustCompile(`(?:src|href|spec-url)="([^"]*)"`)
)

func docsEnv(t *testing.T) *env {
	t.Helper()
	return setup(t, func(d *apihttp.Deps) {
		d.DocsEnabled = true
		d.Info.Version = "9.8.7"
	})
}

func TestDocsEnabled(t *testing.T) {
	t.Parallel()
	e := docsEnv(t)

	t.Run("OpenAPIJSON", func(t *testing.T) {
		t.Parallel()
		r := e.forT(t).do(req{method: "GET", path: "/openapi.json"})
		want(t, r, http.StatusOK)
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type = %q, want application/json", ct)
		}
		if r.Header.Get("X-Request-ID") == "" || r.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("headers %v lack the service's X-Request-ID or nosniff", r.Header)
		}
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(r.Raw)
		if err != nil {
			t.Fatalf("the served document does not load: %v", err)
		}
		if err := doc.Validate(context.Background()); err != nil {
			t.Fatalf("the served document is invalid: %v", err)
		}
		if doc.Info.Version != "9.8.7" {
			t.Fatalf("info.version = %q, want the service's version 9.8.7", doc.Info.Version)
		}
		for _, p := range []string{"/orgs/{organisation_id}/audit-events", "/orgs/{organisation_id}/projects/{project_id}"} {
			if doc.Paths.Value(p) == nil {
				t.Fatalf("the served document has no path %s", p)
			}
		}
	})

	for _, page := range []struct{ path, asset string }{
		{"/docs", "docs/assets/swagger-ui-bundle.js"},
		{"/redoc", "docs/assets/redoc.standalone.js"},
	} {
		t.Run("Page"+page.path, func(t *testing.T) {
			t.Parallel()
			e := e.forT(t)
			r := e.do(req{method: "GET", path: page.path})
			want(t, r, http.StatusOK)
			if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Fatalf("Content-Type = %q, want text/html; charset=utf-8", ct)
			}
			csp := r.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "http") || strings.Contains(csp, "*") {
				t.Fatalf("Content-Security-Policy = %q, want one that allows this service only", csp)
			}
			html := string(r.Raw)
			if u := externalURL.FindString(htmlComment.ReplaceAllString(html, "")); u != "" {
				t.Fatalf("%s references %q outside a comment; it must work without internet access", page.path, u)
			}
			if !strings.Contains(html, `"`+page.asset+`"`) {
				t.Fatalf("%s does not load %s", page.path, page.asset)
			}
			// Every file the page references is served, and references
			// nothing external itself.
			refs := localRef.FindAllStringSubmatch(html, -1)
			if len(refs) == 0 {
				t.Fatalf("%s references no file", page.path)
			}
			for _, m := range refs {
				a := e.do(req{method: "GET", path: "/" + m[1]})
				want(t, a, http.StatusOK)
				if strings.HasSuffix(m[1], "swagger-initializer.js") {
					if u := externalURL.FindString(jsComment.ReplaceAllString(string(a.Raw), "")); u != "" {
						t.Fatalf("%s references %q", m[1], u)
					}
					if !strings.Contains(string(a.Raw), `"openapi.json"`) || !strings.Contains(string(a.Raw), "validatorUrl: null") {
						t.Fatalf("%s does not load the local document with the online validator off", m[1])
					}
				}
			}
		})
	}

	t.Run("Assets", func(t *testing.T) {
		t.Parallel()
		e := e.forT(t)
		for _, a := range []struct{ name, contentType string }{
			{"swagger-ui.css", "text/css; charset=utf-8"},
			{"swagger-ui-bundle.js", "text/javascript; charset=utf-8"},
			{"swagger-initializer.js", "text/javascript; charset=utf-8"},
			{"redoc.standalone.js", "text/javascript; charset=utf-8"},
			{"swagger-ui-dist.LICENSE", "text/plain; charset=utf-8"},
			{"swagger-ui-dist.NOTICE", "text/plain; charset=utf-8"},
			{"redoc.LICENSE", "text/plain; charset=utf-8"},
			{"redoc.standalone.js.LICENSE.txt", "text/plain; charset=utf-8"},
		} {
			r := e.do(req{method: "GET", path: "/docs/assets/" + a.name})
			want(t, r, http.StatusOK)
			if ct := r.Header.Get("Content-Type"); ct != a.contentType {
				t.Fatalf("%s: Content-Type = %q, want %q", a.name, ct, a.contentType)
			}
			etag := r.Header.Get("ETag")
			if etag == "" || len(r.Raw) == 0 {
				t.Fatalf("%s: ETag %q, %d bytes", a.name, etag, len(r.Raw))
			}
			again := e.do(req{method: "GET", path: "/docs/assets/" + a.name, header: map[string]string{"If-None-Match": etag}})
			want(t, again, http.StatusNotModified)
		}
		wantProblem(t, e.do(req{method: "GET", path: "/docs/assets/nope.js"}), http.StatusNotFound, "not found")
		wantProblem(t, e.do(req{method: "GET", path: "/docs/assets/../openapi.yaml"}), http.StatusNotFound, "not found")
	})

	t.Run("APIStillValidated", func(t *testing.T) {
		t.Parallel()
		// The docs routes change nothing else: the API answers as without.
		wantJSON(t, e.forT(t).do(req{method: "GET", path: "/healthz"}), http.StatusOK,
			`{"status":"ok","app_name":"multi-tenant-saas-api","version":"9.8.7","environment":"test"}`)
	})
}

func TestDocsDisabledEverywhere(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, path := range []string{"/docs/assets/swagger-ui-bundle.js", "/docs/assets/redoc.standalone.js", "/docs/", "/redoc/"} {
		wantProblem(t, e.do(req{method: "GET", path: path}), http.StatusNotFound, "not found")
	}
}

// TestContractCatchesMismatches makes sure the response validation is not
// vacuous: responses that break the document are reported.
func TestContractCatchesMismatches(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.register("Checked")
	org := e.createOrg(u, uniqueName("Checked"))
	hr, err := http.NewRequestWithContext(context.Background(), "GET", e.srv.URL+"/orgs/"+org, nil)
	if err != nil {
		t.Fatal(err)
	}
	good := e.do(req{method: "GET", path: "/orgs/" + org, token: u.Token})
	if err := checkResponse(hr, good); err != nil {
		t.Fatalf("a real response fails: %v", err)
	}
	mutate := func(f func(m map[string]any, h http.Header) int) response {
		var m map[string]any
		if err := json.Unmarshal(good.Raw, &m); err != nil {
			t.Fatal(err)
		}
		h := good.Header.Clone()
		status := f(m, h)
		raw, _ := json.Marshal(m)
		return response{Status: status, Header: h, Raw: raw}
	}
	tests := map[string]func(m map[string]any, h http.Header) int{
		"ExtraField":         func(m map[string]any, _ http.Header) int { m["extra"] = 1; return 200 },
		"MissingField":       func(m map[string]any, _ http.Header) int { delete(m, "slug"); return 200 },
		"LowerCaseID":        func(m map[string]any, _ http.Header) int { m["id"] = strings.ToLower(org); return 200 },
		"OffsetTimestamp":    func(m map[string]any, _ http.Header) int { m["created_at"] = "2026-01-01T12:00:00+02:00"; return 200 },
		"UndocumentedStatus": func(_ map[string]any, _ http.Header) int { return http.StatusTeapot },
		"NoETag":             func(_ map[string]any, h http.Header) int { h.Del("ETag"); return 200 },
		"NoRequestID":        func(_ map[string]any, h http.Header) int { h.Del("X-Request-ID"); return 200 },
		"WrongContentType": func(_ map[string]any, h http.Header) int {
			h.Set("Content-Type", "text/html")
			return 200
		},
	}
	for name, f := range tests {
		if err := checkResponse(hr, mutate(f)); err == nil {
			t.Errorf("%s: the broken response passed validation", name)
		}
	}
	// NDJSON is validated line by line.
	exportReq, err := http.NewRequestWithContext(context.Background(), "GET", e.srv.URL+"/orgs/"+org+"/audit-events/export", nil)
	if err != nil {
		t.Fatal(err)
	}
	export := e.do(req{method: "GET", path: "/orgs/" + org + "/audit-events/export", token: u.Token})
	want(t, export, http.StatusOK)
	if bytes.Count(export.Raw, []byte("\n")) < 2 {
		t.Fatalf("the export of a new organisation has fewer than two events: %s", export.Raw)
	}
	for name, raw := range map[string]string{
		"BadLine":        string(export.Raw) + `{"id":"x"}` + "\n",
		"NotJSON":        string(export.Raw) + "nope\n",
		"NoFinalNewline": strings.TrimSuffix(string(export.Raw), "\n"),
	} {
		if err := checkResponse(exportReq, response{Status: 200, Header: export.Header, Raw: []byte(raw)}); err == nil {
			t.Errorf("%s: the broken export passed validation", name)
		}
	}

	unknown, _ := http.NewRequestWithContext(context.Background(), "GET", e.srv.URL+"/no-such-route", nil)
	if err := checkResponse(unknown, response{Status: 200, Header: good.Header, Raw: good.Raw}); err == nil {
		t.Errorf("a 200 of an undocumented route passed validation")
	}
}
