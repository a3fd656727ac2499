package http_test

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/saasapi/saasapi/observability"
)

// dashboardFile is the Grafana dashboard of the Compose stack, from this
// package's directory.
const dashboardFile = "../observability/grafana/dashboards/saas-api-overview.json"

// promQL pulls apart the queries of the dashboard well enough to name the
// metrics and labels they use; it is no PromQL parser (promtool checks the
// syntax in observability/config_test.go), only as good as the dashboard's
// queries need.
var promQL = struct {
	quoted, grouping, matchers, ranges, identifier, labelName, counterFunction *regexp.Regexp
}{
	// String literals go first: a label value such as "/orgs/{id}" holds
	// braces and text that looks like a name.
	quoted: regexp.MustCompile(`"(?:[^"\\]|\\.)*"`),
	// by (le, path), without (...), on (...), group_left(...): label lists.
	grouping: regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`),
	// {status_code=~"5.."}: label matchers.
	matchers: regexp.MustCompile(`\{([^}]*)\}`),
	// [5m], [$__range]: range selectors.
	ranges: regexp.MustCompile(`\[[^\]]*\]`),
	// What is left: metric names, function names (followed by a
	// parenthesis), keywords and numbers (which never start a word).
	identifier: regexp.MustCompile(`\b([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?`),
	labelName:  regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)`),
	// rate(x[5m]): the metric a counter function is applied to.
	counterFunction: regexp.MustCompile(`\b(?:rate|irate|increase)\(\s*([A-Za-z_:][A-Za-z0-9_:]*)`),
}

// promQLKeywords are the identifiers of PromQL that are neither metric nor
// function names.
var promQLKeywords = []string{"and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN"}

// scrapeLabels are the labels Prometheus attaches to every scraped series.
var scrapeLabels = []string{"job", "instance"}

// syntheticSeries are the series Prometheus records about each scrape
// itself; the service does not serve them.
var syntheticSeries = []string{"up", "scrape_duration_seconds", "scrape_samples_scraped"}

// queryNames returns the metric names and the label names a query uses.
func queryNames(expr string) (metrics, labels []string) {
	bare := promQL.quoted.ReplaceAllString(expr, `""`)
	for _, m := range promQL.grouping.FindAllStringSubmatch(bare, -1) {
		for l := range strings.SplitSeq(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
	}
	bare = promQL.grouping.ReplaceAllString(bare, " ")
	for _, m := range promQL.matchers.FindAllStringSubmatch(bare, -1) {
		for _, l := range promQL.labelName.FindAllStringSubmatch(m[1], -1) {
			labels = append(labels, l[1])
		}
	}
	bare = promQL.ranges.ReplaceAllString(promQL.matchers.ReplaceAllString(bare, " "), " ")
	for _, m := range promQL.identifier.FindAllStringSubmatch(bare, -1) {
		if m[2] == "" && !slices.Contains(promQLKeywords, m[1]) {
			metrics = append(metrics, m[1])
		}
	}
	return metrics, labels
}

// dashboardQueries returns every PromQL expression of the dashboard: the
// string under each "expr" key anywhere in the JSON, so that nested rows or
// variables cannot hide one.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "expr" {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	if len(exprs) == 0 {
		t.Fatalf("%s has no queries", dashboardFile)
	}
	return exprs
}

// exposed describes a text exposition: the type of every family, and the
// label names of every sample name (such as a histogram's _bucket series).
type exposed struct {
	families map[string]string
	samples  map[string][]string
}

func parseExposition(text string) exposed {
	x := exposed{families: map[string]string{}, samples: map[string][]string{}}
	for line := range strings.SplitSeq(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if name, typ, ok := strings.Cut(rest, " "); ok {
				x.families[name] = typ
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// name{label="value",...} value, or name value.
		line = promQL.quoted.ReplaceAllString(line, `""`)
		series, _, _ := strings.Cut(line, " ")
		name, labels, _ := strings.Cut(series, "{")
		labels = strings.TrimSuffix(labels, "}")
		known := x.samples[name]
		if known == nil {
			known = []string{}
		}
		for _, l := range promQL.labelName.FindAllStringSubmatch(labels, -1) {
			if !slices.Contains(known, l[1]) {
				known = append(known, l[1])
			}
		}
		x.samples[name] = known
	}
	return x
}

// familyOf returns the family of a sample name and its type: the name
// itself, or a histogram's or summary's name without its series suffix.
func (x exposed) familyOf(sample string) (string, string) {
	if typ, ok := x.families[sample]; ok {
		return sample, typ
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(sample, suffix); ok {
			if typ := x.families[base]; typ == "histogram" || (typ == "summary" && suffix != "_bucket") {
				return base, typ
			}
		}
	}
	return "", ""
}

// TestDashboardMetricsExist proves that every metric the Grafana dashboard
// queries is served by the real router's /metrics once every kind of
// traffic has happened, so that a renamed family breaks this test rather
// than a panel. observability/config_test.go proves the reverse: that every
// service family has a panel.
func TestDashboardMetricsExist(t *testing.T) {
	t.Parallel()
	e := setup(t)
	// setup does not wire the pool families (serve does); report the test
	// database's pool the way serve reports its own.
	e.metrics.RegisterPool(func() observability.PoolStat {
		s := e.db.Pool.Stat()
		return observability.PoolStat{
			TotalConns: s.TotalConns(), IdleConns: s.IdleConns(), AcquiredConns: s.AcquiredConns(),
			MaxConns: s.MaxConns(), AcquireCount: s.AcquireCount(), EmptyAcquireCount: s.EmptyAcquireCount(),
			AcquireDuration: s.AcquireDuration(),
		}
	})

	// Traffic that touches every family: registration and login (auth,
	// requests, latency, audit), a failed login, organisations, API keys
	// created, used and revoked, a project, an idempotent replay and
	// conflict, and an unknown route.
	u := e.register("Dashboard")
	want(t, e.do(req{method: "POST", path: "/auth/login", body: map[string]any{"email": u.Email, "password": "not the password"}}),
		http.StatusUnauthorized)
	org := e.createOrg(u, uniqueName("Dashboard"))
	key := e.createAPIKey(u, org)
	e.createProject(key.Raw, org, map[string]any{"name": "Dashboard project"})
	idem := map[string]string{"Idempotency-Key": "dashboard-" + org}
	orgBody := map[string]any{"name": uniqueName("Dashboard idempotent")}
	want(t, e.do(req{method: "POST", path: "/orgs", token: u.Token, body: orgBody, header: idem}), http.StatusCreated)
	want(t, e.do(req{method: "POST", path: "/orgs", token: u.Token, body: orgBody, header: idem}), http.StatusCreated)
	want(t, e.do(req{method: "POST", path: "/orgs", token: u.Token, body: map[string]any{"name": "Other body"}, header: idem}),
		http.StatusConflict)
	want(t, e.do(req{method: "DELETE", path: "/orgs/" + org + "/api-keys/" + key.ID, token: u.Token}), http.StatusOK)
	want(t, e.do(req{method: "GET", path: "/no/such/route"}), http.StatusNotFound)

	x := parseExposition(e.exposition())
	for _, expr := range dashboardQueries(t) {
		metrics, labels := queryNames(expr)
		if len(metrics) == 0 {
			t.Errorf("query %q names no metric", expr)
		}
		// The labels the query's metrics carry, and those Prometheus adds.
		carried := slices.Clone(scrapeLabels)
		missing := false
		for _, name := range metrics {
			if slices.Contains(syntheticSeries, name) {
				continue
			}
			seriesLabels, ok := x.samples[name]
			if !ok {
				t.Errorf("query %q uses %s, which /metrics does not serve", expr, name)
				missing = true
				continue
			}
			carried = append(carried, seriesLabels...)
			family, typ := x.familyOf(name)
			if strings.HasSuffix(name, "_bucket") && typ != "histogram" {
				t.Errorf("query %q uses %s, but %s is a %s, not a histogram", expr, name, family, typ)
			}
		}
		for _, l := range labels {
			if !missing && !slices.Contains(carried, l) {
				t.Errorf("query %q uses label %s, which none of its metrics %q carries", expr, l, metrics)
			}
		}
		// rate, irate and increase are for counters (a histogram's series
		// are counters too); on a gauge they answer nonsense.
		for _, m := range promQL.counterFunction.FindAllStringSubmatch(promQL.quoted.ReplaceAllString(expr, `""`), -1) {
			if _, ok := x.samples[m[1]]; !ok {
				continue // reported above, or synthetic
			}
			if family, typ := x.familyOf(m[1]); typ != "counter" && typ != "histogram" && typ != "summary" {
				t.Errorf("query %q applies a counter function to %s, whose family %s is a %s", expr, m[1], family, typ)
			}
		}
	}
}
