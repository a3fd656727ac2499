package main

import (
	"context"
	"fmt"
	"github.com/saasapi/saasapi/internal/benchkit"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync/atomic"
	"time"
)

// fillAndTime appends events to the first organisation's ledger through
// the API until it holds target events (projects created, every tenth one
// archived), then times page 1 of the lists whose totals must not grow
// with the ledger.
func fillAndTime(ctx context.Context, base string, s seeded, target int) error {
	c := &benchkit.Client{Base: base, Token: s.token, HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}}
	org := s.orgs[0]
	var head struct {
		Sequence int `json:"sequence"`
	}
	if err := c.Call(ctx, "GET", "/orgs/"+org+"/audit-events/head", nil, &head); err != nil {
		return err
	}
	missing := target - head.Sequence
	logf("filling the ledger of %s with %d events", org, max(missing, 0))
	var done atomic.Int64
	start := time.Now()
	// Each item appends 1 event, every tenth 2 (created, then archived).
	items := max(0, missing*10/11)
	err := benchkit.Parallel(items, 32, func(i int) error {
		if n := done.Add(1); n%50000 == 0 {
			logf("  %d of %d (%.0f/s)", n, items, float64(n)/time.Since(start).Seconds())
		}
		var p struct {
			ID string `json:"id"`
		}
		if err := c.Call(ctx, "POST", "/orgs/"+org+"/projects", map[string]string{"name": fmt.Sprintf("Fill %d", i)}, &p); err != nil {
			return err
		}
		if i%10 == 0 {
			return c.Call(ctx, "PATCH", "/orgs/"+org+"/projects/"+p.ID, map[string]string{"status": "archived"}, nil)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := c.Call(ctx, "GET", "/orgs/"+org+"/audit-events/head", nil, &head); err != nil {
		return err
	}
	var me struct {
		ID string `json:"id"`
	}
	if err := c.Call(ctx, "GET", "/me", nil, &me); err != nil {
		return err
	}
	audit := "/orgs/" + org + "/audit-events?"
	queries := []struct{ name, path string }{
		{"audit, unfiltered", audit},
		{"audit, action", audit + "action=project.updated"},
		{"audit, actor", audit + "actor_user_id=" + me.ID},
		{"audit, target type", audit + "target_type=project"},
		{"audit, target id", audit + "target_id=" + s.projects[0]},
		{"projects, unfiltered", "/orgs/" + org + "/projects"},
		{"projects, status", "/orgs/" + org + "/projects?status=archived"},
		{"projects, name", "/orgs/" + org + "/projects?name=" + url.QueryEscape("Fill 12345")},
	}
	fmt.Fprintf(os.Stdout, "\npage 1 at %d events in one ledger (median of 21 requests, client-side)\n\n", head.Sequence)
	fmt.Fprintf(os.Stdout, "| list | total | ms |\n|---|---:|---:|\n")
	for _, q := range queries {
		var page struct {
			Pagination struct {
				Total int `json:"total"`
			} `json:"pagination"`
		}
		times := make([]float64, 21)
		for i := range times {
			t0 := time.Now()
			if err := c.Call(ctx, "GET", q.path, nil, &page); err != nil {
				return err
			}
			times[i] = float64(time.Since(t0).Microseconds()) / 1000
		}
		slices.Sort(times)
		fmt.Fprintf(os.Stdout, "| %s | %d | %.2f |\n", q.name, page.Pagination.Total, times[len(times)/2])
	}
	return nil
}
