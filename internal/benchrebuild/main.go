// Command benchrebuild measures the operator commands that read the whole
// event stream: on a private cluster with fsync on it builds a history
// through the API (organisations with projects created, updated and
// deleted, members added, re-roled and removed, API keys created and
// revoked, written by parallel clients), and at each of the given sizes
// runs `saasapi projections rebuild`, `projections verify`, `audit verify`
// and the HTTP export of every organisation's audit log, printing events/s
// and max RSS of each. At one size it also runs a closed loop of POSTs (one
// client, back to back) through a rebuild and prints the writer's worst
// and p99 latency. `make bench-rebuild` runs it (docs/performance.md).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi/internal/benchkit"
	"github.com/saasapi/saasapi/internal/pgcluster"
)

type options struct {
	bin      string
	sizes    []int
	orgs     int
	users    int
	workers  int
	writerAt int
}

func main() {
	var o options
	sizes := flag.String("sizes", "100000,500000,1000000", "comma-separated history sizes (events) to measure at, ascending")
	flag.StringVar(&o.bin, "bin", "bin/saasapi", "the saasapi binary")
	flag.IntVar(&o.orgs, "orgs", 100, "organisations")
	flag.IntVar(&o.users, "users", 200, "people who join and leave the organisations")
	flag.IntVar(&o.workers, "workers", 32, "parallel clients building the history")
	flag.IntVar(&o.writerAt, "writer-at", 500000, "the size at which a closed loop of POSTs runs through a rebuild "+
		"(the largest size if none is this one)")
	flag.Parse()
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "benchrebuild: bad size %q\n", f)
			os.Exit(2)
		}
		o.sizes = append(o.sizes, n)
	}
	slices.Sort(o.sizes)
	if !slices.Contains(o.sizes, o.writerAt) {
		o.writerAt = o.sizes[len(o.sizes)-1]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "benchrebuild:", err)
		os.Exit(1)
	}
}

var logf = benchkit.Logf

func run(ctx context.Context, o options) (err error) {
	svc, err := benchkit.StartService(ctx, o.bin, "SAAS_API_LOG_LEVEL=warn",
		"SAAS_API_REGISTER_ADDRESS_RATE=off", "SAAS_API_LOGIN_ADDRESS_RATE=off")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, svc.Stop(ctx)) }()
	addr, err := benchkit.FreeAddr()
	if err != nil {
		return err
	}
	srv, err := benchkit.StartServer(ctx, svc.Bin, append(slices.Clip(svc.Env), "SAAS_API_HTTP_ADDR="+addr), svc.Cluster.Dir())
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.Stop()) }()
	db, err := pgx.Connect(ctx, svc.Cluster.URL(pgcluster.AppDatabase))
	if err != nil {
		return err
	}
	defer func() { _ = db.Close(context.WithoutCancel(ctx)) }()

	h, err := seed(ctx, "http://"+addr, o)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	fmt.Fprintf(os.Stdout, "| events | command | s | events/s | max RSS MiB |\n|---:|---|---:|---:|---:|\n")
	var writer string
	for _, size := range o.sizes {
		if err := h.fill(ctx, db, size); err != nil {
			return fmt.Errorf("fill to %d events: %w", size, err)
		}
		var events int64
		if err := db.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&events); err != nil {
			return err
		}
		for _, args := range [][]string{{"projections", "rebuild"}, {"projections", "verify"}, {"audit", "verify"}} {
			d, rss, err := timed(ctx, svc, args...)
			if err != nil {
				return err
			}
			row(events, "saasapi "+strings.Join(args, " "), d, rss)
		}
		d, exported, rss, err := h.export(ctx, srv)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		row(exported, "GET audit-events/export, every organisation (server)", d, rss)
		if size == o.writerAt {
			if writer, err = h.writeThroughRebuild(ctx, svc, events); err != nil {
				return err
			}
			logf("%s", writer)
		}
	}
	fmt.Fprintf(os.Stdout, "\n%s\n", writer)
	return nil
}

func row(events int64, what string, d time.Duration, rssKiB int64) {
	rss := "-"
	if rssKiB > 0 {
		rss = fmt.Sprintf("%.1f", float64(rssKiB)/1024)
	}
	fmt.Fprintf(os.Stdout, "| %d | %s | %.2f | %.0f | %s |\n", events, what, d.Seconds(), float64(events)/d.Seconds(), rss)
}

// timed runs `saasapi args...` and returns its wall time and max RSS
// (KiB). The peak is VmHWM of the child's own memory, read every 10 ms
// until it exits: its rusage would not do, because a child started from
// this (larger) process inherits this process's peak at exec.
func timed(ctx context.Context, svc *benchkit.Service, args ...string) (time.Duration, int64, error) {
	cmd := benchkit.Command(ctx, svc.Env, svc.Bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	done := make(chan struct{})
	peak := make(chan int64)
	go func() {
		var rss int64
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			rss = max(rss, peakRSS(cmd.Process.Pid))
			select {
			case <-done:
				peak <- rss
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	d := time.Since(start)
	close(done)
	rss := <-peak
	if err != nil {
		return d, 0, fmt.Errorf("saasapi %s: %w: %s", strings.Join(args, " "), err, out.String())
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "rebuild: ") { // the steps a rebuild reports
			logf("  %s", line)
		}
	}
	logf("saasapi %s: %s", strings.Join(args, " "), lastLine(out.String()))
	return d, rss, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// history is the seeded service and what the clients building the history
// know of each organisation.
type history struct {
	c     *benchkit.Client
	orgs  []*org
	users []string
	o     options
}

// org is one organisation's state as its (single) client sees it.
type org struct {
	id       string
	projects []string
	members  []string
	others   []string // users not members
	keys     []string
	r        *rand.Rand
}

func seed(ctx context.Context, base string, o options) (*history, error) {
	c := &benchkit.Client{Base: base, HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.workers + 2}}}
	creds := map[string]string{"email": "owner@bench.example", "password": "benchmark password 1"}
	if err := c.Call(ctx, "POST", "/auth/register", map[string]string{"email": creds["email"],
		"password": creds["password"], "display_name": "Owner"}, nil); err != nil {
		return nil, err
	}
	var login struct {
		AccessToken string `json:"access_token"`
	}
	if err := c.Call(ctx, "POST", "/auth/login", creds, &login); err != nil {
		return nil, err
	}
	c.Token = login.AccessToken
	h := &history{c: c, o: o, orgs: make([]*org, o.orgs), users: make([]string, o.users)}
	logf("seeding: %d organisations, %d people", o.orgs, o.users)
	err := benchkit.Parallel(o.users, 4, func(i int) error {
		anon := &benchkit.Client{Base: base, HTTP: c.HTTP}
		var u struct {
			User struct {
				ID string `json:"id"`
			} `json:"user"`
		}
		err := anon.Call(ctx, "POST", "/auth/register", map[string]string{"email": fmt.Sprintf("person%d@bench.example", i),
			"password": "benchmark password 1", "display_name": fmt.Sprintf("Person %d", i)}, &u)
		h.users[i] = u.User.ID
		return err
	})
	if err != nil {
		return nil, err
	}
	err = benchkit.Parallel(o.orgs, 8, func(i int) error {
		var res struct {
			ID string `json:"id"`
		}
		err := c.Call(ctx, "POST", "/orgs", map[string]string{"name": fmt.Sprintf("Bench organisation %d", i)}, &res)
		h.orgs[i] = &org{id: res.ID, others: slices.Clone(h.users), r: rand.New(rand.NewPCG(uint64(i), 7))}
		return err
	})
	return h, err
}

// fill appends events through the API until the store holds target: each
// client owns some organisations, so that its picture of them is exact.
func (h *history) fill(ctx context.Context, db *pgx.Conn, target int) (err error) {
	var have int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&have); err != nil {
		return err
	}
	missing := int64(target) - have
	if missing <= 0 {
		return nil
	}
	// Some steps append nothing (an update to the status a project has
	// already): fill again until the target is reached.
	defer func() {
		if err == nil {
			err = h.fill(ctx, db, target)
		}
	}()
	logf("building the history: %d more events", missing)
	var left atomic.Int64
	left.Store(missing)
	start := time.Now()
	var done atomic.Int64
	return benchkit.Parallel(h.o.workers, h.o.workers, func(w int) error {
		var mine []*org
		for k := w; k < len(h.orgs); k += h.o.workers {
			mine = append(mine, h.orgs[k])
		}
		if len(mine) == 0 {
			return nil
		}
		for i := 0; left.Add(-1) >= 0; i++ {
			o := mine[i%len(mine)]
			if err := h.step(ctx, o, i); err != nil {
				return err
			}
			if n := done.Add(1); n%50000 == 0 {
				logf("  %d of %d (%.0f/s)", n, missing, float64(n)/time.Since(start).Seconds())
			}
		}
		return nil
	})
}

// step writes one event to o: mostly projects created, updated and
// deleted; members and API keys now and then.
func (h *history) step(ctx context.Context, o *org, i int) error {
	c, r, base := h.c, o.r, "/orgs/"+o.id
	var id struct {
		ID string `json:"id"`
	}
	switch p := r.IntN(100); {
	case p < 8 && len(o.others) > 0:
		k := r.IntN(len(o.others))
		u := o.others[k]
		roles := []string{"admin", "member", "viewer"}
		if err := c.Call(ctx, "POST", base+"/members", map[string]string{"user_id": u, "role": roles[r.IntN(3)]}, nil); err != nil {
			return err
		}
		o.others = slices.Delete(o.others, k, k+1)
		o.members = append(o.members, u)
	case p < 11 && len(o.members) > 0:
		roles := []string{"admin", "member", "viewer"}
		return c.Call(ctx, "PATCH", base+"/members/"+o.members[r.IntN(len(o.members))],
			map[string]string{"role": roles[r.IntN(3)]}, nil)
	case p < 14 && len(o.members) > 0:
		k := r.IntN(len(o.members))
		if err := c.Call(ctx, "DELETE", base+"/members/"+o.members[k], nil, nil); err != nil {
			return err
		}
		o.others = append(o.others, o.members[k])
		o.members = slices.Delete(o.members, k, k+1)
	case p < 17:
		var key struct {
			APIKey struct {
				ID string `json:"id"`
			} `json:"api_key"`
		}
		if err := c.Call(ctx, "POST", base+"/api-keys", map[string]string{"name": fmt.Sprintf("key %d", i)}, &key); err != nil {
			return err
		}
		o.keys = append(o.keys, key.APIKey.ID)
	case p < 19 && len(o.keys) > 0:
		k := r.IntN(len(o.keys))
		if err := c.Call(ctx, "DELETE", base+"/api-keys/"+o.keys[k], nil, nil); err != nil {
			return err
		}
		o.keys = slices.Delete(o.keys, k, k+1)
	case p < 40 && len(o.projects) > 0:
		body := map[string]any{}
		switch r.IntN(3) {
		case 0:
			body["name"] = fmt.Sprintf("Renamed %d", i)
		case 1:
			body["status"] = []string{"active", "archived"}[r.IntN(2)]
		default:
			body["description"] = fmt.Sprintf("Described %d", i)
		}
		return c.Call(ctx, "PATCH", base+"/projects/"+o.projects[r.IntN(len(o.projects))], body, nil)
	case p < 48 && len(o.projects) > 0:
		k := r.IntN(len(o.projects))
		if err := c.Call(ctx, "DELETE", base+"/projects/"+o.projects[k], nil, nil); err != nil {
			return err
		}
		o.projects = slices.Delete(o.projects, k, k+1)
	default:
		body := map[string]any{"name": fmt.Sprintf("Project %d", i)}
		if r.IntN(2) == 0 {
			body["description"] = "A project of the benchmark"
		}
		if err := c.Call(ctx, "POST", base+"/projects", body, &id); err != nil {
			return err
		}
		o.projects = append(o.projects, id.ID)
	}
	return nil
}

// export reads every organisation's audit export through the API, one
// after the other, and returns the time, the lines read and the server's
// peak RSS during it (KiB; 0 where the kernel does not reset the peak).
func (h *history) export(ctx context.Context, srv *benchkit.Server) (time.Duration, int64, int64, error) {
	pid := srv.Cmd.Process.Pid
	reset := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
	start := time.Now()
	var lines int64
	for _, o := range h.orgs {
		req, err := http.NewRequestWithContext(ctx, "GET", h.c.Base+"/orgs/"+o.id+"/audit-events/export", nil)
		if err != nil {
			return 0, 0, 0, err
		}
		req.Header.Set("Authorization", "Bearer "+h.c.Token)
		res, err := h.c.HTTP.Do(req)
		if err != nil {
			return 0, 0, 0, err
		}
		if res.StatusCode != http.StatusOK {
			_ = res.Body.Close()
			return 0, 0, 0, fmt.Errorf("export %s: %s", o.id, res.Status)
		}
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines++
		}
		_ = res.Body.Close()
		if err := sc.Err(); err != nil {
			return 0, 0, 0, err
		}
	}
	d := time.Since(start)
	if !reset {
		return d, lines, 0, nil
	}
	return d, lines, peakRSS(pid), nil
}

// peakRSS is VmHWM of a process, in KiB.
func peakRSS(pid int) int64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// writeThroughRebuild runs `projections rebuild` while one client posts
// projects back to back, and describes the writer's latencies.
func (h *history) writeThroughRebuild(ctx context.Context, svc *benchkit.Service, events int64) (string, error) {
	stop := make(chan struct{})
	var (
		lat     []time.Duration
		loopErr error
		wg      sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			o := h.orgs[i%len(h.orgs)]
			began := time.Now()
			if err := h.c.Call(ctx, "POST", "/orgs/"+o.id+"/projects", map[string]string{"name": fmt.Sprintf("During the rebuild %d", i)}, nil); err != nil {
				loopErr = err
				return
			}
			lat = append(lat, time.Since(began))
		}
	}()
	time.Sleep(time.Second) // the loop's steady state first
	d, rss, err := timed(ctx, svc, "projections", "rebuild")
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	if err != nil || loopErr != nil {
		return "", errors.Join(err, loopErr)
	}
	row(events, "saasapi projections rebuild, one client posting", d, rss)
	slices.Sort(lat)
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	return fmt.Sprintf("writer through a rebuild of %d events (%.1f s): %d POSTs back to back, p50 %.1f ms, p99 %.1f ms, worst %.1f ms",
		events, d.Seconds(), len(lat), p(0.5), p(0.99), float64(lat[len(lat)-1].Microseconds())/1000), nil
}
