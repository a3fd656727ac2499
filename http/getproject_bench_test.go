package http_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"

	apihttp "github.com/saasapi/saasapi/http"
)

// BenchmarkGetProject measures GET /orgs/{id}/projects/{id}, the hottest
// read, against the real router and a real database, with the logger at
// warn as `saasapi serve` runs in the HTTP benchmark (docs/performance.md).
// "handler" calls the router in-process, so that ns/op and allocs/op are
// the service's own per-request cost (middleware, gate, the one statement,
// scanning, encoding) plus pgx's, without an HTTP client; "http" adds a
// loopback HTTP/1.1 connection, client included.
func BenchmarkGetProject(b *testing.B) {
	e := setup(b, func(d *apihttp.Deps) {
		d.Logger = slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	owner := e.register("Bench")
	org := e.createOrg(owner, uniqueName("Bench Get"))
	desc := "a project that the benchmark reads"
	project, _ := e.createProject(owner.Token, org, map[string]any{"name": "bench", "description": desc})["id"].(string)
	path := "/orgs/" + org + "/projects/" + project
	newRequest := func(url string) *http.Request {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+owner.Token)
		req.RemoteAddr = "127.0.0.1:40000" // as net/http sets it
		return req
	}

	b.Run("handler", func(b *testing.B) {
		req := newRequest(path)
		w := &discardResponse{header: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.header)
			w.status, w.n = 0, 0
			e.server.ServeHTTP(w, req)
			if w.status != http.StatusOK || w.n == 0 {
				b.Fatalf("GET project: status %d, %d bytes; want 200 with a body", w.status, w.n)
			}
		}
	})
	b.Run("http", func(b *testing.B) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		defer client.CloseIdleConnections()
		req := newRequest(e.srv.URL + path)
		b.ReportAllocs()
		for b.Loop() {
			getOK(b, client, req)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			req := newRequest(path)
			w := &discardResponse{header: http.Header{}}
			for pb.Next() {
				clear(w.header)
				w.status, w.n = 0, 0
				e.server.ServeHTTP(w, req)
				if w.status != http.StatusOK {
					b.Errorf("GET project: status %d; want 200", w.status)
					return
				}
			}
		})
	})
}

// getOK sends a GET that must answer 200 and drains its body.
func getOK(b *testing.B, client *http.Client, req *http.Request) {
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: status %d; want 200", req.URL.Path, resp.StatusCode)
	}
}

// discardResponse is a reusable http.ResponseWriter that keeps only the
// status and the body's length, so that a benchmark counts the handler's
// allocations and not a recorder's.
type discardResponse struct {
	header http.Header
	status int
	n      int
}

func (w *discardResponse) Header() http.Header { return w.header }

func (w *discardResponse) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *discardResponse) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

var _ http.ResponseWriter = (*discardResponse)(nil)
