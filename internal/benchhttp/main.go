// Command benchhttp measures the service against PostgreSQL itself on one
// machine: it starts a private cluster with fsync on, seeds it through the
// API, starts `saasapi serve`, and runs wrk against the service and pgbench
// against the same cluster, interleaved in rounds, then prints the median
// of each workload and the ratios of the service to pgbench
// (docs/performance.md). `make bench-http` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi/internal/benchkit"
	"github.com/saasapi/saasapi/internal/pgcluster"
)

type options struct {
	bin      string
	rounds   int
	duration time.Duration
	orgs     int
	projects int
	fill     int
	logLevel string
	keep     bool
	profile  string
	compare  string
	binB     string
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/saasapi", "the saasapi binary to serve")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of every workload (the median is reported)")
	flag.DurationVar(&o.duration, "d", 5*time.Second, "duration of each workload in a round")
	flag.IntVar(&o.orgs, "orgs", 100, "organisations to seed")
	flag.IntVar(&o.projects, "projects", 1000, "projects to seed in the first organisation")
	flag.IntVar(&o.fill, "fill", 0, "after the rounds, append events to one ledger until it holds this many, "+
		"then time page 1 of the audit and project lists")
	flag.StringVar(&o.logLevel, "log-level", "warn", "SAAS_API_LOG_LEVEL of the served process")
	flag.BoolVar(&o.keep, "keep", false, "print the database URL and keep the cluster running until Ctrl-C")
	flag.StringVar(&o.profile, "cpuprofile", "", "write CPU profiles of the served process, one per service workload and "+
		"round, to files named after this prefix (served through SAAS_API_PPROF_ADDR)")
	flag.StringVar(&o.compare, "compare", "", "also serve a second process, B, with these space-separated settings "+
		"and run every GET workload against both in each round, A and B back to back: NAME=VALUE sets an "+
		"environment variable of B (GOGC=200), a lower-case name a parameter of B's database URL (pool_max_conns=4)")
	flag.StringVar(&o.binB, "compare-bin", "", "serve B (see -compare) with this saasapi binary, such as a build "+
		"of the code before a change")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "benchhttp:", err)
		os.Exit(1)
	}
}

var logf = benchkit.Logf

func run(ctx context.Context, o options) (err error) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return errors.New("wrk is not installed (Debian: apt-get install wrk)")
	}
	pgbench, err := findPgbench()
	if err != nil {
		return err
	}
	svc, err := benchkit.StartService(ctx, o.bin, "SAAS_API_LOG_LEVEL="+o.logLevel)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, svc.Stop(ctx)) }()
	cluster, bin, env := svc.Cluster, svc.Bin, svc.Env
	dbURL := cluster.URL(pgcluster.AppDatabase)
	addr, err := benchkit.FreeAddr()
	if err != nil {
		return err
	}
	// Served as the image serves it (Dockerfile: GOGC=400), unless this
	// environment sets GOGC; -compare 'GOGC=100' measures the default.
	serveEnv := append(env, "SAAS_API_HTTP_ADDR="+addr)
	if os.Getenv("GOGC") == "" {
		serveEnv = append(serveEnv, "GOGC=400")
	}
	pprofAddr := ""
	if o.profile != "" {
		if pprofAddr, err = benchkit.FreeAddr(); err != nil {
			return err
		}
		serveEnv = append(serveEnv, "SAAS_API_PPROF_ADDR="+pprofAddr)
	}
	srv, err := benchkit.StartServer(ctx, bin, serveEnv, cluster.Dir())
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.Stop()) }()
	base := "http://" + addr
	baseB := ""
	var srvB *benchkit.Server
	if o.compare != "" || o.binB != "" {
		binB := bin
		if o.binB != "" {
			if binB, err = filepath.Abs(o.binB); err != nil {
				return err
			}
		}
		envB, err := compareEnv(o.compare, dbURL)
		if err != nil {
			return err
		}
		addrB, err := benchkit.FreeAddr()
		if err != nil {
			return err
		}
		// No profiles of B: its pprof address would be A's.
		envB = append(append(slices.Clip(serveEnv), "SAAS_API_HTTP_ADDR="+addrB, "SAAS_API_PPROF_ADDR="), envB...)
		// B logs into a directory of its own (saasapi.log there).
		dirB := filepath.Join(cluster.Dir(), "b")
		if err := os.MkdirAll(dirB, 0o755); err != nil {
			return err
		}
		if srvB, err = benchkit.StartServer(ctx, binB, envB, dirB); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, srvB.Stop()) }()
		baseB = "http://" + addrB
		logf("B serves on %s: %s %s", addrB, binB, o.compare)
	}

	m, err := newMeter(ctx, cluster, srv, srvB)
	if err != nil {
		return err
	}
	defer func() { _ = m.conn.Close(context.WithoutCancel(ctx)) }()

	logf("seeding: 1 owner, %d organisations, %d projects in the first", o.orgs, o.projects)
	seed, err := seedAPI(ctx, base, o.orgs, o.projects)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	pgURL, err := pgbenchDB(ctx, cluster)
	if err != nil {
		return err
	}
	logf("pgbench -i -s 10")
	if out, err := benchkit.Command(ctx, nil, pgbench, "-i", "-q", "-s", "10", pgURL).CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %w: %s", err, out)
	}
	dir, err := os.MkdirTemp("", "benchhttp")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	scripts, err := writeScripts(dir, seed)
	if err != nil {
		return err
	}
	secs := strconv.Itoa(int(o.duration.Seconds()))
	tok := "Authorization: Bearer " + seed.token
	var workloads []workload
	for _, c := range []string{"8", "32"} {
		get := func(name, base string) workload {
			return workload{name: name + "GET project c" + c,
				cmd: []string{wrk, "-t2", "-c" + c, "-d" + secs, "-H", tok, "-s", scripts.get, base}}
		}
		workloads = append(workloads, get("", base))
		if baseB != "" {
			workloads = append(workloads, get(prefixB, baseB))
		}
	}
	post := func(name, c, script, base string) workload {
		return workload{name: name, cmd: []string{wrk, "-t2", "-c" + c, "-d" + secs, "-H", tok, "-s", script, base}}
	}
	for _, p := range []struct{ name, c, script string }{
		{"POST project c8", "8", scripts.postMany},
		{"POST project c32", "32", scripts.postMany},
		{"POST one org c16", "16", scripts.postOne},
	} {
		workloads = append(workloads, post(p.name, p.c, p.script, base))
		if baseB != "" {
			workloads = append(workloads, post(prefixB+p.name, p.c, p.script, baseB))
		}
	}
	workloads = append(workloads, []workload{
		{name: "pgbench -S c32", cmd: []string{pgbench, "-n", "-S", "-M", "prepared", "-c32", "-j2", "-T" + secs, pgURL}, pg: true},
		{name: "pgbench -N c32", cmd: []string{pgbench, "-n", "-N", "-M", "prepared", "-c32", "-j2", "-T" + secs, pgURL}, pg: true},
	}...)
	results := make(map[string][]result)
	for round := 1; round <= o.rounds; round++ {
		for _, w := range roundOrder(workloads, round) {
			if err := ctx.Err(); err != nil {
				return err
			}
			var profiled chan error
			// Profiles are of A's process: B serves without pprof.
			if pprofAddr != "" && !w.pg && !strings.HasPrefix(w.name, prefixB) {
				profiled = make(chan error, 1)
				name := fmt.Sprintf("%s%s-r%d.pprof", o.profile, strings.NewReplacer(" ", "-", "/", "-").Replace(w.name), round)
				go func() { profiled <- cpuProfile(ctx, pprofAddr, o.duration-time.Second, name) }()
			}
			res, err := w.measure(ctx, m)
			if profiled != nil {
				err = errors.Join(err, <-profiled)
			}
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round, w.name, err)
			}
			logf("round %d  %-18s %9.0f/s  p50 %6.2f ms  p99 %6.2f ms  %s", round, w.name, res.rate, res.p50, res.p99, res.cost)
			results[w.name] = append(results[w.name], res)
		}
	}
	report(os.Stdout, workloads, results, o.rounds, baseB != "")
	if o.fill > 0 {
		if err := fillAndTime(ctx, base, seed, o.fill); err != nil {
			return err
		}
	}
	logf("verifying the hash chains and the read tables")
	for _, args := range [][]string{{"audit", "verify"}, {"projections", "verify"}} {
		out, err := benchkit.Command(ctx, env, bin, args...).CombinedOutput()
		fmt.Fprintf(os.Stdout, "\n$ saasapi %s\n%s", strings.Join(args, " "), lastLines(string(out), 3))
		if err != nil {
			return fmt.Errorf("saasapi %s: %w", strings.Join(args, " "), err)
		}
	}
	if o.keep {
		fmt.Fprintf(os.Stdout, "\ncluster kept running: %s (Ctrl-C to stop)\n", dbURL)
		<-ctx.Done()
	}
	return nil
}

func findPgbench() (string, error) {
	for _, p := range []string{"/usr/lib/postgresql/15/bin/pgbench", "/usr/bin/pgbench"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	return "", errors.New("pgbench is not installed (Debian: postgresql-contrib or postgresql-15)")
}

// pgbenchDB creates the database pgbench runs in, next to the service's.
func pgbenchDB(ctx context.Context, c *pgcluster.Cluster) (string, error) {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, "CREATE DATABASE pgbench"); err != nil {
		return "", fmt.Errorf("create database pgbench: %w", err)
	}
	return c.URL("pgbench"), nil
}

// seeded is what the workloads need from the seed.
type seeded struct {
	token    string
	orgs     []string
	projects []string // of orgs[0]
}

func seedAPI(ctx context.Context, base string, orgs, projects int) (seeded, error) {
	c := &benchkit.Client{Base: base, HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	creds := map[string]string{"email": "owner@bench.example", "password": "benchmark password 1"}
	if err := c.Call(ctx, "POST", "/auth/register", map[string]string{"email": creds["email"],
		"password": creds["password"], "display_name": "Owner"}, nil); err != nil {
		return seeded{}, err
	}
	var login struct {
		AccessToken string `json:"access_token"`
	}
	if err := c.Call(ctx, "POST", "/auth/login", creds, &login); err != nil {
		return seeded{}, err
	}
	c.Token = login.AccessToken
	s := seeded{token: login.AccessToken, orgs: make([]string, orgs), projects: make([]string, projects)}
	err := benchkit.Parallel(orgs, 8, func(i int) error {
		var org struct {
			ID string `json:"id"`
		}
		err := c.Call(ctx, "POST", "/orgs", map[string]string{"name": fmt.Sprintf("Bench organisation %d", i)}, &org)
		s.orgs[i] = org.ID
		return err
	})
	if err != nil {
		return seeded{}, err
	}
	err = benchkit.Parallel(projects, 8, func(i int) error {
		var p struct {
			ID string `json:"id"`
		}
		err := c.Call(ctx, "POST", "/orgs/"+s.orgs[0]+"/projects",
			map[string]string{"name": fmt.Sprintf("Seeded project %d", i)}, &p)
		s.projects[i] = p.ID
		return err
	})
	return s, err
}

// wrk's Lua: requests pick a path at random from a table; done prints
// the figures this program parses.
const luaDone = `
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), bad))
end
`

type scriptPaths struct{ get, postMany, postOne string }

func luaPaths(paths []string) string {
	var b strings.Builder
	b.WriteString("local paths = {")
	for i, p := range paths {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(strconv.Quote(p))
	}
	b.WriteString("}\nmath.randomseed(os.time())\n")
	return b.String()
}

func writeScripts(dir string, s seeded) (scriptPaths, error) {
	var gets, posts []string
	for _, p := range s.projects {
		gets = append(gets, "/orgs/"+s.orgs[0]+"/projects/"+p)
	}
	for _, o := range s.orgs {
		posts = append(posts, "/orgs/"+o+"/projects")
	}
	get := luaPaths(gets) + `
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
` + luaDone
	// wrk.format uses wrk.headers (which hold -H) only when given none.
	post := `
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", paths[math.random(#paths)], nil, '{"name":"Benchmark project ' .. n .. '"}')
end
` + luaDone
	files := map[string]string{
		"get.lua":       get,
		"post-many.lua": luaPaths(posts) + post,
		"post-one.lua":  luaPaths(posts[:1]) + post,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return scriptPaths{}, err
		}
	}
	return scriptPaths{get: filepath.Join(dir, "get.lua"), postMany: filepath.Join(dir, "post-many.lua"),
		postOne: filepath.Join(dir, "post-one.lua")}, nil
}

type workload struct {
	name string
	cmd  []string
	pg   bool
}

// result is one run of a workload: the rate per second and latencies in
// milliseconds.
type result struct {
	rate, p50, p99 float64
	n              float64 // requests (transactions) completed
	cost           cost
}

var (
	wrkResult    = regexp.MustCompile(`RESULT (\d+) (\d+) (\d+) (\d+) (\d+)`)
	pgbenchTPS   = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	pgbenchFails = regexp.MustCompile(`number of failed transactions: ([1-9][0-9]*)`)
)

// pgbenchSampling is the share of pgbench's transactions it logs (-l
// --sampling-rate): enough for a p99 of tens of thousands of transactions,
// little enough that writing the log costs pgbench next to nothing.
const pgbenchSampling = "0.1"

// seconds is the duration the workload's command was given.
func (w workload) seconds() float64 {
	for i, a := range w.cmd {
		if v, ok := strings.CutPrefix(a, "-T"); ok && w.pg && i > 0 {
			s, _ := strconv.ParseFloat(v, 64)
			return s
		}
	}
	return 0
}

// measure runs the workload and adds its cost per request, read by m.
func (w workload) measure(ctx context.Context, m *meter) (result, error) {
	b := strings.HasPrefix(w.name, prefixB)
	before, err := m.read(ctx, b)
	if err != nil {
		return result{}, fmt.Errorf("read the counters: %w", err)
	}
	res, client, err := w.run(ctx)
	if err != nil {
		return result{}, err
	}
	after, err := m.read(ctx, b)
	if err != nil {
		return result{}, fmt.Errorf("read the counters: %w", err)
	}
	res.cost = costOf(before, after, client, res.n)
	return res, nil
}

// run runs the workload and returns its result and the client's CPU time.
func (w workload) run(ctx context.Context) (result, time.Duration, error) {
	args := w.cmd[1:]
	var logDir string
	if w.pg {
		// pgbench prints a mean latency only; its per-transaction log
		// gives the percentiles that wrk prints for the service.
		var err error
		if logDir, err = os.MkdirTemp("", "saasapi-pgbench-"); err != nil {
			return result{}, 0, err
		}
		defer os.RemoveAll(logDir) //nolint:errcheck // a temporary directory
		args = append([]string{"-l", "--sampling-rate=" + pgbenchSampling, "--log-prefix=" + filepath.Join(logDir, "tx")}, args...)
	}
	cmd := benchkit.Command(ctx, nil, w.cmd[0], args...)
	cmd.Dir = logDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, 0, fmt.Errorf("%w: %s", err, out)
	}
	client := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	text := string(out)
	if w.pg {
		m := pgbenchTPS.FindStringSubmatch(text)
		if m == nil || pgbenchFails.MatchString(text) {
			return result{}, 0, fmt.Errorf("unexpected pgbench output: %s", text)
		}
		tps, _ := strconv.ParseFloat(m[1], 64)
		res := result{rate: tps, n: tps * w.seconds()}
		lat, err := pgbenchLatencies(logDir)
		if err != nil {
			return result{}, 0, err
		}
		res.p50, res.p99 = percentile(lat, 0.50), percentile(lat, 0.99)
		return res, client, nil
	}
	m := wrkResult.FindStringSubmatch(text)
	if m == nil {
		return result{}, 0, fmt.Errorf("unexpected wrk output: %s", text)
	}
	n := make([]float64, 5)
	for i := range n {
		n[i], _ = strconv.ParseFloat(m[i+1], 64)
	}
	if n[4] > 0 {
		return result{}, 0, fmt.Errorf("%.0f failed requests of %.0f: %s", n[4], n[0], text)
	}
	return result{rate: n[0] / (n[1] / 1e6), p50: n[2] / 1000, p99: n[3] / 1000, n: n[0]}, client, nil
}

// pgbenchLatencies reads the latencies, in milliseconds, of the
// transactions that pgbench logged in dir (one file per thread; a line is
// "client transaction latency_us script epoch_s epoch_us").
func pgbenchLatencies(dir string) ([]float64, error) {
	files, err := filepath.Glob(filepath.Join(dir, "tx.*"))
	if err != nil {
		return nil, err
	}
	var lat []float64
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 3 {
				continue
			}
			us, err := strconv.ParseFloat(fields[2], 64)
			if err != nil {
				return nil, fmt.Errorf("pgbench log %s: %q: %w", f, line, err)
			}
			lat = append(lat, us/1000)
		}
	}
	if len(lat) == 0 {
		return nil, fmt.Errorf("pgbench logged no transaction in %s", dir)
	}
	slices.Sort(lat)
	return lat, nil
}

// percentile is the q-quantile of sorted (nearest rank).
func percentile(sorted []float64, q float64) float64 {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func report(w io.Writer, workloads []workload, results map[string][]result, rounds int, compared bool) {
	med := func(name string) result {
		rs := results[name]
		return result{rate: median(rs, func(r result) float64 { return r.rate }),
			p50: median(rs, func(r result) float64 { return r.p50 }),
			p99: median(rs, func(r result) float64 { return r.p99 }),
			cost: cost{serviceUS: median(rs, func(r result) float64 { return r.cost.serviceUS }),
				postgresUS: median(rs, func(r result) float64 { return r.cost.postgresUS }),
				clientUS:   median(rs, func(r result) float64 { return r.cost.clientUS }),
				walBytes:   median(rs, func(r result) float64 { return r.cost.walBytes })}}
	}
	fmt.Fprintf(w, "\nmedian of %d rounds (CPU and WAL per request)\n\n"+
		"| workload | rate/s | p50 ms | p99 ms | service µs | postgres µs | client µs | WAL bytes |\n"+
		"|---|---:|---:|---:|---:|---:|---:|---:|\n", rounds)
	for _, wl := range workloads {
		r := med(wl.name)
		fmt.Fprintf(w, "| %s | %.0f | %.2f | %.2f | %.0f | %.0f | %.0f | %.0f |\n", wl.name, r.rate, r.p50, r.p99,
			r.cost.serviceUS, r.cost.postgresUS, r.cost.clientUS, r.cost.walBytes)
	}
	// A ratio is taken within each round, where the service and pgbench
	// shared the same background load, and the median of those is shown.
	ratio := func(service, pg string) float64 {
		rs := make([]result, rounds)
		for i := range rounds {
			rs[i].rate = results[service][i].rate / results[pg][i].rate
		}
		return median(rs, func(r result) float64 { return r.rate })
	}
	fmt.Fprintf(w, "\n| ratio (median of the rounds' ratios) | value | target |\n|---|---:|---:|\n")
	fmt.Fprintf(w, "| GET project c32 / pgbench -S | %.3f | 0.25 |\n", ratio("GET project c32", "pgbench -S c32"))
	fmt.Fprintf(w, "| POST project c32 / pgbench -N | %.3f | 0.40 |\n", ratio("POST project c32", "pgbench -N c32"))
	fmt.Fprintf(w, "| POST one org c16 / pgbench -N | %.3f | 0.30 |\n", ratio("POST one org c16", "pgbench -N c32"))
	if !compared {
		return
	}
	fmt.Fprintf(w, "| B GET project c32 / pgbench -S | %.3f | 0.25 |\n", ratio(prefixB+"GET project c32", "pgbench -S c32"))
	fmt.Fprintf(w, "| B POST project c32 / pgbench -N | %.3f | 0.40 |\n", ratio(prefixB+"POST project c32", "pgbench -N c32"))
	fmt.Fprintf(w, "| B POST one org c16 / pgbench -N | %.3f | 0.30 |\n", ratio(prefixB+"POST one org c16", "pgbench -N c32"))
	// B against A, round by round: the two ran back to back.
	compares := []string{"GET project c8", "GET project c32", "POST project c8", "POST project c32", "POST one org c16"}
	fmt.Fprintf(w, "\n| B / A, per round | %s |\n|---|", strings.Join(compares, " rate | p99 B / A | ")+" rate | p99 B / A")
	for range compares {
		fmt.Fprint(w, "---:|---:|")
	}
	fmt.Fprintln(w)
	for i := range rounds {
		fmt.Fprintf(w, "| round %d |", i+1)
		for _, name := range compares {
			a, b := results[name][i], results[prefixB+name][i]
			fmt.Fprintf(w, " %.3f | %.2f / %.2f ms |", b.rate/a.rate, b.p99, a.p99)
		}
		fmt.Fprintln(w)
	}
	// The median of B/A per workload, the figure an A/B is read by.
	fmt.Fprintf(w, "| median |")
	for _, name := range compares {
		rs := make([]result, rounds)
		for i := range rounds {
			rs[i].rate = results[prefixB+name][i].rate / results[name][i].rate
		}
		fmt.Fprintf(w, " %.3f | |", median(rs, func(r result) float64 { return r.rate }))
	}
	fmt.Fprintln(w)
}

// prefixB names the workloads run against the compared process.
const prefixB = "B "

// roundOrder is the order of the workloads in a round: as listed, except
// that each workload of B runs before its A in every second round, so that
// neither always follows the other.
func roundOrder(workloads []workload, round int) []workload {
	out := slices.Clone(workloads)
	if round%2 == 1 {
		return out
	}
	for i := 1; i < len(out); i++ {
		if strings.HasPrefix(out[i].name, prefixB) {
			out[i-1], out[i] = out[i], out[i-1]
		}
	}
	return out
}

// compareEnv turns -compare's settings into environment entries for B:
// NAME=VALUE as it is, and name=value (lower case) as a parameter of B's
// database URL.
func compareEnv(settings, dbURL string) ([]string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	var env []string
	for _, kv := range strings.Fields(settings) {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case !ok || k == "":
			return nil, fmt.Errorf("-compare: %q is not NAME=VALUE", kv)
		case strings.ToLower(k) == k:
			q.Set(k, v)
		default:
			env = append(env, kv)
		}
	}
	u.RawQuery = q.Encode()
	return append(env, "SAAS_API_DATABASE_URL="+u.String()), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// cpuProfile fetches a CPU profile of the served process covering d and
// writes it to path (go tool pprof reads it).
func cpuProfile(ctx context.Context, addr string, d time.Duration, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET",
		fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, max(1, int(d.Seconds()))), nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("cpu profile: %s", res.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		_ = f.Close()
		return err
	}
	logf("cpu profile written to %s", path)
	return f.Close()
}
