package http_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
)

// BenchmarkPostProjectThroughput measures POST /orgs/{id}/projects over a
// real HTTP server and database: one request at a time, and from several
// clients at once, each in an organisation of its own (so that the ledger
// lock does not serialise them), and from many clients of one
// organisation. It reports requests per second; the
// ledger's cost (docs/audit.md) is its figure with and without the tree.
func BenchmarkPostProjectThroughput(b *testing.B) {
	e := setup(b)
	owner := e.register("Bench")
	post := func(org string, i int64) error {
		body := fmt.Sprintf(`{"name":"bench %d"}`, i)
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, e.srv.URL+"/orgs/"+org+"/projects",
			bytes.NewReader([]byte(body)))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+owner.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	var seq atomic.Int64
	b.Run("serial", func(b *testing.B) {
		org := e.createOrg(owner, uniqueName("Bench Serial"))
		for b.Loop() {
			if err := post(org, seq.Add(1)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "posts/s")
	})
	b.Run("parallel", func(b *testing.B) {
		orgs := make(chan string, 64)
		for range cap(orgs) {
			orgs <- e.createOrg(owner, uniqueName("Bench Parallel"))
		}
		b.SetParallelism(2)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			org := <-orgs
			for pb.Next() {
				if err := post(org, seq.Add(1)); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "posts/s")
	})
	// Many clients of one organisation: serial on its ledger lock, but
	// grouped into shared transactions (group commit, ADR 0009).
	b.Run("one-organisation", func(b *testing.B) {
		org := e.createOrg(owner, uniqueName("Bench One"))
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := post(org, seq.Add(1)); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "posts/s")
	})
}

// BenchmarkProofOverHTTP measures an inclusion and a consistency proof
// request end to end (authentication, access check, the proof query,
// encoding) on a small ledger; BenchmarkProofsMillion in eventstore gives
// the proof query's cost on a million-event tree.
func BenchmarkProofOverHTTP(b *testing.B) {
	e := setup(b)
	owner := e.register("Bench")
	org := e.createOrg(owner, uniqueName("Bench Proofs"))
	for i := range 30 {
		e.createProject(owner.Token, org, map[string]any{"name": fmt.Sprintf("p %d", i)})
	}
	for name, path := range map[string]string{
		"inclusion": "/proof/inclusion?sequence=7&tree_size=31", "consistency": "/proof/consistency?from=7&to=31",
	} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet,
					e.srv.URL+"/orgs/"+org+"/audit-events"+path, nil)
				req.Header.Set("Authorization", "Bearer "+owner.Token)
				getOK(b, http.DefaultClient, req)
			}
		})
	}
}
