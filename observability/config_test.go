package observability_test

// Structure tests of the local stack's configuration files: the Compose
// file, example.env, the Prometheus configuration and Grafana's provisioning
// and dashboard. Docker cannot run in CI, so these tests check what can be
// checked without it: that the files parse, that they agree with each other
// (service names, ports, mounts, datasource uids, job names) and with the
// README's configuration table, and that the dashboard queries the families
// the service exports. http/dashboard_test.go proves the reverse against
// the live /metrics of the real router.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/saasapi/saasapi/observability"
)

// Paths from this package's directory, where go test runs.
const (
	composePath            = "../docker-compose.yml"
	exampleEnvPath         = "../example.env"
	readmePath             = "../README.md"
	prometheusConfigPath   = "prometheus/prometheus.yml"
	grafanaDatasourcesPath = "grafana/provisioning/datasources/prometheus.yml"
	grafanaProvidersPath   = "grafana/provisioning/dashboards/dashboards.yml"
	dashboardPath          = "grafana/dashboards/saas-api-overview.json"
)

// readFile returns a file's contents or fails the test.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// decodeYAML decodes a YAML file into v or fails the test.
func decodeYAML(t *testing.T, path string, v any) {
	t.Helper()
	if err := yaml.Unmarshal(readFile(t, path), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// compose is the part of the Compose file these tests look at.
type compose struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string         `yaml:"image"`
	Build       any            `yaml:"build"`
	Command     []string       `yaml:"command"`
	Environment composeEnv     `yaml:"environment"`
	DependsOn   composeDepends `yaml:"depends_on"`
	Ports       []string       `yaml:"ports"`
	Volumes     []string       `yaml:"volumes"`
	Restart     string         `yaml:"restart"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// composeEnv is a service's environment, written either as a mapping or as
// a list of NAME=value strings; values are kept as written, so that an
// unquoted true stays "true".
type composeEnv map[string]string

func (e *composeEnv) UnmarshalYAML(n *yaml.Node) error {
	*e = composeEnv{}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			(*e)[n.Content[i].Value] = n.Content[i+1].Value
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			name, value, _ := strings.Cut(item.Value, "=")
			(*e)[name] = value
		}
	default:
		return fmt.Errorf("line %d: environment is neither a mapping nor a list", n.Line)
	}
	return nil
}

// composeDepends maps each dependency to its condition; the short list form
// means service_started.
type composeDepends map[string]string

func (d *composeDepends) UnmarshalYAML(n *yaml.Node) error {
	*d = composeDepends{}
	switch n.Kind {
	case yaml.SequenceNode:
		for _, item := range n.Content {
			(*d)[item.Value] = "service_started"
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			var dep struct {
				Condition string `yaml:"condition"`
			}
			if err := n.Content[i+1].Decode(&dep); err != nil {
				return err
			}
			if dep.Condition == "" {
				dep.Condition = "service_started"
			}
			(*d)[n.Content[i].Value] = dep.Condition
		}
	default:
		return fmt.Errorf("line %d: depends_on is neither a mapping nor a list", n.Line)
	}
	return nil
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	var c compose
	decodeYAML(t, composePath, &c)
	for _, name := range []string{"postgres", "migrate", "api", "prometheus", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("%s has no %s service", composePath, name)
		}
	}
	return c
}

// publishedPort is one entry of a service's ports, written
// "[hostIP:]hostPort:containerPort".
type publishedPort struct{ hostIP, host, container string }

func parsePort(p string) (publishedPort, bool) {
	parts := strings.Split(p, ":")
	switch len(parts) {
	case 2:
		return publishedPort{host: parts[0], container: parts[1]}, true
	case 3:
		return publishedPort{hostIP: parts[0], host: parts[1], container: parts[2]}, true
	}
	return publishedPort{}, false
}

// containerPort returns the container port that a service publishes as
// hostPort ("[hostIP:]hostPort:containerPort"), or fails the test.
func (s composeService) containerPort(t *testing.T, name, hostPort string) string {
	t.Helper()
	for _, p := range s.Ports {
		if pp, ok := parsePort(p); ok && pp.host == hostPort {
			return pp.container
		}
	}
	t.Fatalf("service %s does not publish host port %s (ports %q)", name, hostPort, s.Ports)
	return ""
}

// mountTarget returns where a service mounts the repository path source
// (as written in the Compose file, such as ./observability/...), or fails.
func (s composeService) mountTarget(t *testing.T, name, source string) string {
	t.Helper()
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[0] == source {
			return parts[1]
		}
	}
	t.Fatalf("service %s does not mount %s (volumes %q)", name, source, s.Volumes)
	return ""
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)

	t.Run("PostgresHasAHealthcheck", func(t *testing.T) {
		t.Parallel()
		hc := c.Services["postgres"].Healthcheck
		if hc == nil || len(hc.Test) < 2 || !strings.Contains(strings.Join(hc.Test, " "), "pg_isready") {
			t.Fatalf("postgres healthcheck = %+v, want a pg_isready test", hc)
		}
	})

	t.Run("MigrateRunsOnceAfterPostgresIsHealthy", func(t *testing.T) {
		t.Parallel()
		m := c.Services["migrate"]
		if got := m.DependsOn["postgres"]; got != "service_healthy" {
			t.Errorf("migrate depends on postgres with condition %q, want service_healthy", got)
		}
		if !slices.Equal(m.Command, []string{"migrate"}) {
			t.Errorf("migrate command = %q, want [migrate]", m.Command)
		}
		if m.Restart != "no" {
			t.Errorf(`migrate restart = %q, want "no": it is a one-shot job`, m.Restart)
		}
		if m.Build == nil {
			t.Error("migrate has no build: it must run the image built from this repository")
		}
	})

	t.Run("APIStartsAfterMigrationSucceeded", func(t *testing.T) {
		t.Parallel()
		a := c.Services["api"]
		if got := a.DependsOn["migrate"]; got != "service_completed_successfully" {
			t.Errorf("api depends on migrate with condition %q, want service_completed_successfully", got)
		}
		if got := a.DependsOn["postgres"]; got != "service_healthy" {
			t.Errorf("api depends on postgres with condition %q, want service_healthy", got)
		}
		if !slices.Equal(a.Command, []string{"serve"}) {
			t.Errorf("api command = %q, want [serve]", a.Command)
		}
		if a.Build == nil {
			t.Error("api has no build: it must run the image built from this repository")
		}
	})

	t.Run("PublishesTheOriginalPorts", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct{ service, port string }{
			{"api", "8000"}, {"prometheus", "9090"}, {"grafana", "3000"},
		} {
			if got := c.Services[tt.service].containerPort(t, tt.service, tt.port); got != tt.port {
				t.Errorf("service %s publishes %s:%s, want %s:%s", tt.service, tt.port, got, tt.port, tt.port)
			}
		}
	})

	t.Run("PublishesOnLoopbackOnly", func(t *testing.T) {
		t.Parallel()
		// The stack's secrets are public placeholders: nothing may be
		// reachable from other machines unless an operator says so.
		for name, svc := range c.Services {
			for _, p := range svc.Ports {
				if pp, ok := parsePort(p); !ok || pp.hostIP != "127.0.0.1" {
					t.Errorf("service %s publishes %q, want 127.0.0.1:HOST:CONTAINER", name, p)
				}
			}
		}
	})

	t.Run("APIListensOnThePublishedPort", func(t *testing.T) {
		t.Parallel()
		a := c.Services["api"]
		_, port, err := net.SplitHostPort(a.Environment["SAAS_API_HTTP_ADDR"])
		if err != nil {
			t.Fatalf("api SAAS_API_HTTP_ADDR: %v", err)
		}
		if want := a.containerPort(t, "api", "8000"); port != want {
			t.Fatalf("api listens on port %s but publishes container port %s", port, want)
		}
	})

	t.Run("DatabaseURLsMatchPostgres", func(t *testing.T) {
		t.Parallel()
		pg := c.Services["postgres"].Environment
		for _, name := range []string{"migrate", "api"} {
			raw := c.Services[name].Environment["SAAS_API_DATABASE_URL"]
			u, err := url.Parse(raw)
			if err != nil || u.User == nil {
				t.Errorf("service %s SAAS_API_DATABASE_URL %q is not a URL with credentials (%v)", name, raw, err)
				continue
			}
			password, _ := u.User.Password()
			got := []string{u.Hostname(), u.Port(), u.User.Username(), password, strings.TrimPrefix(u.Path, "/")}
			want := []string{"postgres", "5432", pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]}
			if !slices.Equal(got, want) {
				t.Errorf("service %s connects to host, port, user, password, database %q; postgres service has %q",
					name, got, want)
			}
		}
	})

	t.Run("BindMountsExist", func(t *testing.T) {
		t.Parallel()
		for name, s := range c.Services {
			for _, v := range s.Volumes {
				source, _, _ := strings.Cut(v, ":")
				if !strings.HasPrefix(source, "./") {
					if _, ok := c.Volumes[source]; !ok {
						t.Errorf("service %s mounts volume %q, which the top-level volumes do not declare", name, source)
					}
					continue
				}
				if _, err := os.Stat(filepath.Join("..", source)); err != nil {
					t.Errorf("service %s mounts %s: %v", name, source, err)
				}
			}
		}
	})
}

// configVariables returns the variables of README.md's configuration table:
// the rows that start with "| `SAAS_API_".
func configVariables(t *testing.T) []string {
	t.Helper()
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, readmePath)))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "| `SAAS_API_")
		if !ok {
			continue
		}
		name, _, ok := strings.Cut(rest, "`")
		if !ok {
			t.Fatalf("%s: malformed configuration row %q", readmePath, sc.Text())
		}
		names = append(names, "SAAS_API_"+name)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(names) < 10 {
		t.Fatalf("%s's configuration table has %d SAAS_API_ rows (%q); the table or its format changed", readmePath, len(names), names)
	}
	return names
}

// envAssignment is one NAME=value line of an env file.
type envAssignment struct {
	line                  int
	value                 string
	commented, duplicated bool
}

// parseEnvFile returns the assignments of an env file, each noting whether
// a comment line directly precedes it. Any other non-blank line fails the
// test.
func parseEnvFile(t *testing.T, path string) map[string]envAssignment {
	t.Helper()
	out := map[string]envAssignment{}
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, path)))
	prevComment := false
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			prevComment = false
		case strings.HasPrefix(line, "#"):
			prevComment = true
		default:
			name, value, ok := strings.Cut(line, "=")
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				t.Fatalf("%s:%d: %q is neither a comment nor NAME=value", path, n, line)
			}
			_, dup := out[name]
			out[name] = envAssignment{line: n, value: value, commented: prevComment, duplicated: dup}
			prevComment = false
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

var envNamePattern = regexp.MustCompile(`SAAS_API_[A-Z0-9_]+`)

func TestConfigVariables(t *testing.T) {
	t.Parallel()
	documented := configVariables(t)
	c := loadCompose(t)
	env := parseEnvFile(t, exampleEnvPath)

	t.Run("EveryNameUsedIsDocumented", func(t *testing.T) {
		t.Parallel()
		// Anywhere in the files, comments and interpolations included: a
		// misspelt name is silently ignored by the service.
		for _, path := range []string{composePath, exampleEnvPath} {
			for _, name := range envNamePattern.FindAllString(string(readFile(t, path)), -1) {
				if !slices.Contains(documented, name) {
					t.Errorf("%s uses %s, which is not in README.md's configuration table %q", path, name, documented)
				}
			}
		}
	})

	t.Run("ExampleEnvSetsEveryVariableOnceWithAComment", func(t *testing.T) {
		t.Parallel()
		for _, name := range documented {
			a, ok := env[name]
			switch {
			case !ok:
				t.Errorf("%s does not set %s", exampleEnvPath, name)
			case a.duplicated:
				t.Errorf("%s:%d sets %s a second time", exampleEnvPath, a.line, name)
			case !a.commented:
				t.Errorf("%s:%d: %s has no comment line above it", exampleEnvPath, a.line, name)
			}
		}
		for name, a := range env {
			if !slices.Contains(documented, name) {
				t.Errorf("%s:%d sets %s, which is not a configuration variable", exampleEnvPath, a.line, name)
			}
		}
	})

	t.Run("SecretsArePlaceholders", func(t *testing.T) {
		t.Parallel()
		api := c.Services["api"].Environment
		for where, secret := range map[string]string{
			composePath + " api":     api["SAAS_API_JWT_SECRET"],
			exampleEnvPath + " file": env["SAAS_API_JWT_SECRET"].value,
		} {
			lower := strings.ToLower(secret)
			if !strings.Contains(lower, "placeholder") && !strings.Contains(lower, "local") {
				t.Errorf("%s SAAS_API_JWT_SECRET = %q, want an obvious placeholder (containing placeholder or local)", where, secret)
			}
			if len(secret) < 32 {
				t.Errorf("%s SAAS_API_JWT_SECRET is %d bytes; serve refuses secrets under 32 bytes", where, len(secret))
			}
		}
		// serve refuses the placeholder secret outside local and test.
		for where, environment := range map[string]string{
			composePath + " api":     api["SAAS_API_ENVIRONMENT"],
			exampleEnvPath + " file": env["SAAS_API_ENVIRONMENT"].value,
		} {
			if environment != "local" && environment != "test" {
				t.Errorf("%s SAAS_API_ENVIRONMENT = %q, want local or test, or serve refuses the placeholder secret", where, environment)
			}
		}
		if pw := c.Services["grafana"].Environment["GF_SECURITY_ADMIN_PASSWORD"]; !strings.Contains(pw, "placeholder") {
			t.Errorf("grafana GF_SECURITY_ADMIN_PASSWORD = %q, want an obvious placeholder", pw)
		}
	})
}

// prometheusConfig is the part of prometheus.yml these tests look at.
type prometheusConfig struct {
	Global struct {
		ScrapeInterval string `yaml:"scrape_interval"`
	} `yaml:"global"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// jobTargets returns the static targets of every scrape job.
func (p prometheusConfig) jobTargets() map[string][]string {
	out := map[string][]string{}
	for _, sc := range p.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			out[sc.JobName] = append(out[sc.JobName], st.Targets...)
		}
	}
	return out
}

func loadPrometheusConfig(t *testing.T) prometheusConfig {
	t.Helper()
	var p prometheusConfig
	decodeYAML(t, prometheusConfigPath, &p)
	return p
}

func TestPrometheusConfig(t *testing.T) {
	t.Parallel()
	p := loadPrometheusConfig(t)
	c := loadCompose(t)

	if p.Global.ScrapeInterval != "15s" {
		t.Errorf("global scrape_interval = %q, want 15s", p.Global.ScrapeInterval)
	}
	apiPort := c.Services["api"].containerPort(t, "api", "8000")
	var apiJobs []string
	for _, sc := range p.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			if slices.Contains(st.Targets, "api:"+apiPort) {
				apiJobs = append(apiJobs, sc.JobName)
				if sc.MetricsPath != "/metrics" {
					t.Errorf("job %s scrapes the API at metrics_path %q, want /metrics", sc.JobName, sc.MetricsPath)
				}
			}
		}
	}
	if len(apiJobs) != 1 {
		t.Errorf("jobs %q scrape api:%s, want exactly one", apiJobs, apiPort)
	}
	if !slices.Contains(p.jobTargets()["prometheus"], "localhost:9090") {
		t.Errorf("no prometheus job scrapes localhost:9090 (jobs %v)", p.jobTargets())
	}
	mount := c.Services["prometheus"].mountTarget(t, "prometheus", "./observability/"+prometheusConfigPath)
	if mount != "/etc/prometheus/prometheus.yml" {
		t.Errorf("the prometheus service mounts its configuration at %s, want the image's default /etc/prometheus/prometheus.yml", mount)
	}
}

// promtool returns the path of promtool, or skips the test without it.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not on PATH (Debian: apt-get install prometheus); skipping the promtool check")
	}
	return path
}

func TestPrometheusConfigPassesPromtool(t *testing.T) {
	t.Parallel()
	out, err := exec.CommandContext(t.Context(), promtool(t), "check", "config", prometheusConfigPath).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config %s: %v\n%s", prometheusConfigPath, err, out)
	}
}

// grafanaDatasource is one datasource of Grafana's provisioning file.
type grafanaDatasource struct {
	Name      string `yaml:"name"`
	UID       string `yaml:"uid"`
	Type      string `yaml:"type"`
	Access    string `yaml:"access"`
	URL       string `yaml:"url"`
	IsDefault bool   `yaml:"isDefault"`
}

// grafanaProviders is Grafana's dashboard provisioning file.
type grafanaProviders struct {
	APIVersion int `yaml:"apiVersion"`
	Providers  []struct {
		Name    string `yaml:"name"`
		Type    string `yaml:"type"`
		Options struct {
			Path string `yaml:"path"`
		} `yaml:"options"`
	} `yaml:"providers"`
}

// prometheusDatasource returns the one provisioned datasource, or fails the
// test unless there is exactly one, of type prometheus, with a uid (which
// the dashboard's panels refer to).
func prometheusDatasource(t *testing.T) grafanaDatasource {
	t.Helper()
	var ds struct {
		APIVersion  int                 `yaml:"apiVersion"`
		Datasources []grafanaDatasource `yaml:"datasources"`
	}
	decodeYAML(t, grafanaDatasourcesPath, &ds)
	if ds.APIVersion != 1 {
		t.Fatalf("%s: apiVersion %d, want 1", grafanaDatasourcesPath, ds.APIVersion)
	}
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].UID == "" {
		t.Fatalf("%s provisions %+v, want one prometheus datasource with a uid", grafanaDatasourcesPath, ds.Datasources)
	}
	return ds.Datasources[0]
}

func TestGrafanaProvisioning(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	grafana := c.Services["grafana"]

	t.Run("ProvisioningIsMounted", func(t *testing.T) {
		t.Parallel()
		if got := grafana.mountTarget(t, "grafana", "./observability/grafana/provisioning"); got != "/etc/grafana/provisioning" {
			t.Fatalf("the grafana service mounts provisioning at %s, want /etc/grafana/provisioning", got)
		}
	})

	t.Run("DatasourceIsThePrometheusService", func(t *testing.T) {
		t.Parallel()
		d := prometheusDatasource(t)
		if d.Access != "proxy" || !d.IsDefault {
			t.Errorf("datasource access %q, isDefault %v; want proxy (the browser cannot resolve the prometheus host) and true",
				d.Access, d.IsDefault)
		}
		u, err := url.Parse(d.URL)
		if err != nil {
			t.Fatalf("datasource url %q: %v", d.URL, err)
		}
		if _, ok := c.Services[u.Hostname()]; !ok || u.Hostname() != "prometheus" {
			t.Errorf("datasource url %q does not name the prometheus Compose service", d.URL)
		}
		if want := c.Services["prometheus"].containerPort(t, "prometheus", "9090"); u.Port() != want {
			t.Errorf("datasource url %q, want port %s", d.URL, want)
		}
	})

	t.Run("DashboardsAreLoadedFromTheMountedDirectory", func(t *testing.T) {
		t.Parallel()
		var p grafanaProviders
		decodeYAML(t, grafanaProvidersPath, &p)
		if p.APIVersion != 1 || len(p.Providers) != 1 || p.Providers[0].Type != "file" {
			t.Fatalf("%s: apiVersion %d, providers %+v; want 1 and one file provider", grafanaProvidersPath, p.APIVersion, p.Providers)
		}
		mounted := grafana.mountTarget(t, "grafana", "./observability/"+filepath.Dir(dashboardPath))
		if got := p.Providers[0].Options.Path; got != mounted {
			t.Fatalf("the dashboard provider reads %s, but compose mounts the dashboards at %s", got, mounted)
		}
	})
}

// dashboard is the part of a Grafana dashboard these tests look at.
type dashboard struct {
	UID           string           `json:"uid"`
	Title         string           `json:"title"`
	SchemaVersion int              `json:"schemaVersion"`
	Panels        []dashboardPanel `json:"panels"`
}

type dashboardDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashboardPanel struct {
	ID         int                  `json:"id"`
	Type       string               `json:"type"`
	Title      string               `json:"title"`
	Datasource *dashboardDatasource `json:"datasource"`
	GridPos    struct {
		X int `json:"x"`
		Y int `json:"y"`
		W int `json:"w"`
		H int `json:"h"`
	} `json:"gridPos"`
	Targets []struct {
		RefID      string               `json:"refId"`
		Expr       string               `json:"expr"`
		Datasource *dashboardDatasource `json:"datasource"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, dashboardPath), &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	if len(d.Panels) == 0 {
		t.Fatalf("%s has no panels", dashboardPath)
	}
	return d
}

// grafanaMacros are the Grafana variables the dashboard may use in range
// selectors, with a duration to stand in for each where PromQL is parsed.
var grafanaMacros = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h")

func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	uid := prometheusDatasource(t).UID
	jobs := loadPrometheusConfig(t).jobTargets()

	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("dashboard uid %q, title %q, schemaVersion %d; want a uid, a title and schemaVersion >= 36", d.UID, d.Title, d.SchemaVersion)
	}
	jobMatcher := regexp.MustCompile(`\bjob\s*=~?\s*"([^"]*)"`)
	ids := map[int]string{}
	for i, p := range d.Panels {
		name := fmt.Sprintf("panel %d (%q)", p.ID, p.Title)
		if other, ok := ids[p.ID]; ok || p.ID == 0 {
			t.Errorf("%s: id is zero or shared with %q", name, other)
		}
		ids[p.ID] = p.Title
		if p.Type != "timeseries" && p.Type != "stat" {
			t.Errorf("%s has type %q, want timeseries or stat", name, p.Type)
		}
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != uid {
			t.Errorf("%s datasource = %+v, want the provisioned prometheus datasource uid %q", name, p.Datasource, uid)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s has no targets", name)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s target %q: want a non-empty expr and a refId unique in the panel", name, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource != nil && tg.Datasource.UID != uid {
				t.Errorf("%s target %s uses datasource %+v, want uid %q", name, tg.RefID, tg.Datasource, uid)
			}
			for _, m := range jobMatcher.FindAllStringSubmatch(tg.Expr, -1) {
				if _, ok := jobs[m[1]]; !ok {
					t.Errorf("%s target %s selects job %q, which prometheus.yml does not scrape", name, tg.RefID, m[1])
				}
			}
		}
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("%s gridPos %+v is outside the 24-column grid", name, g)
		}
		for _, q := range d.Panels[:i] {
			h := q.GridPos
			if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
				t.Errorf("%s overlaps panel %d (%q)", name, q.ID, q.Title)
			}
		}
	}
}

// serviceFamilies returns the saas_api_ families a fully wired service
// exports (the database pool's included), by name and type.
func serviceFamilies(t *testing.T) map[string]string {
	t.Helper()
	m := observability.NewMetrics()
	m.RegisterPool(func() observability.PoolStat { return observability.PoolStat{MaxConns: 4} })
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" && strings.HasPrefix(f[2], "saas_api_") {
			out[f[2]] = f[3]
		}
	}
	return out
}

func TestDashboardShowsEveryServiceFamily(t *testing.T) {
	t.Parallel()
	var exprs strings.Builder
	for _, p := range loadDashboard(t).Panels {
		for _, tg := range p.Targets {
			exprs.WriteString(tg.Expr + "\n")
		}
	}
	families := serviceFamilies(t)
	if len(families) < 17 {
		t.Fatalf("the service exports %d saas_api_ families (%v); expected the request, auth, domain, idempotency and pool families", len(families), families)
	}
	for name, typ := range families {
		// A histogram is queried through its series, such as _bucket.
		used := regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `(_bucket|_sum|_count)?\b`).MatchString(exprs.String())
		if !used {
			t.Errorf("no dashboard query uses the %s family %s", typ, name)
		}
	}
}

func TestDashboardQueriesPassPromtool(t *testing.T) {
	t.Parallel()
	bin := promtool(t)
	// Every query becomes a recording rule, which promtool parses as PromQL.
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for _, p := range loadDashboard(t).Panels {
		for _, tg := range p.Targets {
			rules = append(rules, rule{Record: fmt.Sprintf("dashboard:panel_%d:%s", p.ID, strings.ToLower(tg.RefID)), Expr: grafanaMacros.Replace(tg.Expr)})
		}
	}
	raw, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), bin, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules on the dashboard queries: %v\n%s\nrules:\n%s", err, out, raw)
	}
}
